"""Bench grids read from YAML: methods x dataset groups x protocols, checked before any work.

A bench file names a base experiment config and the grid over it::

    name: example
    base: quickstart.yaml            # or the experiment inline under `experiment:`
    methods:
      - {label: naive, set: {method.name: naive}}
      - {label: sind, set: {method.name: sind}, runner: experiment}
    datasets: [[clive, biq2021], [clive]]     # each group is one training set
    protocols:
      - {name: random5, protocol: random, ratios: [0.6, 0.2, 0.2], seeds: 5}
      - {name: cross, protocol: cross, test_datasets: [clive], seeds: [0]}
    set: {train.epochs: 20}          # overrides for every cell (a method's `set` wins)

A cell is (method label, dataset group, protocol name); its experiment config is the base
with the overrides applied and ``datasets``/``split`` taken from the grid, so every
method of a (group, protocol) runs on the same splits. Reading and checking a bench file
is :mod:`mixiqa.bench.load`.
"""

from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass, field

from mixiqa.config import ExperimentConfig, config_from_dict
from mixiqa.errors import ConfigError


@dataclass(frozen=True)
class MethodSpec:
    """One row family of the table: a label, its config overrides and its runner."""

    label: str
    set: dict = field(default_factory=dict, hash=False)    # dotted key -> value
    runner: str = "experiment"


@dataclass(frozen=True)
class ProtocolSpec:
    """One way to split every group; ``seeds`` are explicit (``seeds: 5`` means 0..4)."""

    name: str
    protocol: str
    ratios: tuple = (0.6, 0.2, 0.2)
    seeds: tuple = (0,)
    test_datasets: tuple = ()


@dataclass(frozen=True)
class Cell:
    """One (method, dataset group, protocol) of the grid."""

    method: MethodSpec
    group: tuple
    protocol: ProtocolSpec

    @property
    def group_name(self) -> str:
        return "+".join(self.group)

    @property
    def name(self) -> str:
        return f"{self.method.label}__{self.group_name}__{self.protocol.name}"

    @property
    def datasets(self) -> list[str]:
        """Datasets the cell loads: its group, plus a cross protocol's test sets."""
        return list(dict.fromkeys([*self.group, *self.protocol.test_datasets]))


@dataclass
class BenchConfig:
    """A resolved bench: the base experiment as a plain dict (absolute dataset roots)."""

    name: str
    experiment: dict
    methods: list
    groups: list
    protocols: list
    set: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The resolved bench as saved in ``bench.yaml`` (loadable by :func:`bench_from_dict`)."""
        return plain({
            "name": self.name, "experiment": self.experiment,
            "methods": [{"label": m.label, "set": m.set, "runner": m.runner}
                        for m in self.methods],
            "datasets": [list(g) for g in self.groups],
            "protocols": [{"name": p.name, "protocol": p.protocol, "ratios": p.ratios,
                           "seeds": p.seeds, "test_datasets": p.test_datasets}
                          for p in self.protocols],
            "set": self.set})

    def cells(self, only: list[str] | None = None) -> list[Cell]:
        """The grid, grouped by (dataset group, protocol) so splits and features are shared;
        cross protocols skip groups with nothing left to train on (see :meth:`skipped`)."""
        labels = [m.label for m in self.methods]
        for name in only or []:
            if name not in labels:
                raise ConfigError(f"--only '{name}' is not a method label of this bench."
                                  f"{hint(name, labels)} Labels: {', '.join(labels)}.")
        methods = [m for m in self.methods if not only or m.label in only]
        return [Cell(m, g, p) for g in self.groups for p in self.protocols
                if _trainable(g, p) for m in methods]

    def skipped(self) -> list[str]:
        """(group, protocol) pairs left out of the grid, with the reason."""
        return [f"{'+'.join(g)} x {p.name}: the cross protocol tests on every dataset of "
                "the group, none is left to train on" for g in self.groups
                for p in self.protocols if not _trainable(g, p)]

    def cell_config(self, cell: Cell) -> ExperimentConfig:
        """The experiment config of one cell: base, bench ``set``, method ``set``, grid."""
        data = copy.deepcopy(self.experiment)
        for key, value in {**self.set, **cell.method.set}.items():
            set_dotted(data, key, value)
        keep = cell.datasets
        data["datasets"] = [d for d in data["datasets"] if dataset_name(d) in keep]
        p = cell.protocol
        data["split"] = {"protocol": p.protocol, "ratios": list(p.ratios),
                         "seeds": list(p.seeds), "test_datasets": list(p.test_datasets),
                         "file": None}
        data["name"] = f"{self.name}/{cell.name}"
        try:
            return config_from_dict(data)
        except ConfigError as e:
            raise ConfigError(f"bench method '{cell.method.label}': {e}") from e


def _trainable(group: tuple, p: ProtocolSpec) -> bool:
    return p.protocol != "cross" or any(d not in p.test_datasets for d in group)


def dataset_name(d: dict) -> str:
    """The name a dataset's records carry (a generic ``csv`` dataset's ``name`` option)."""
    return (d.get("options") or {}).get("name") or d["name"]


def set_dotted(data: dict, key: str, value) -> None:
    """``set_dotted(d, "train.epochs", 5)``: d["train"]["epochs"] = 5."""
    node = data
    *parents, last = key.split(".")
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"bench override '{key}': '{p}' is not a section of the config.")
    node[last] = value


def plain(x):
    """Tuples to lists, recursively: the form YAML writes and reads back."""
    if isinstance(x, dict):
        return {k: plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    return x


def hint(name: str, known) -> str:
    """`` Did you mean 'x'?`` for the closest known name, or nothing."""
    close = difflib.get_close_matches(str(name), list(known), n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else ""


def config_differences(old: dict, new: dict, path: str = "") -> list[str]:
    """Human-readable differences between two plain configs, by dotted path."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for k in dict.fromkeys([*old, *new]) for d in config_differences(
            old.get(k, "<absent>"), new.get(k, "<absent>"), f"{path}.{k}" if path else str(k))]
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [d for i, (a, b) in enumerate(zip(old, new))
                for d in config_differences(a, b, f"{path}[{i}]")]
    return [] if old == new else [f"{path}: {old!r} before, {new!r} now"]
