"""Reading a bench YAML file into a :class:`~mixiqa.bench.config.BenchConfig`, checking
every part of the grid (methods, groups, protocols, overrides) before any work starts."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import yaml

from mixiqa.bench.config import (BenchConfig, MethodSpec, ProtocolSpec, dataset_name, hint,
                                 plain)
from mixiqa.config import config_from_dict, load_config, parse_key_value
from mixiqa.errors import ConfigError

_TOP_KEYS = ("name", "base", "experiment", "methods", "datasets", "protocols", "set")
_METHOD_KEYS = ("label", "set", "runner")
_PROTOCOL_KEYS = ("name", "protocol", "ratios", "seeds", "test_datasets")
_SAFE = re.compile(r"^[A-Za-z0-9._-]+$")   # labels become folder names


def load_bench_config(path: str | Path, overrides: list[str] = ()) -> BenchConfig:
    """Read a bench YAML file; ``overrides`` (``key.sub=value``) join its ``set``.

    Raises:
        ConfigError: A missing file, bad YAML, or any invalid part of the grid, named.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Bench file '{path}' not found. See configs/bench_example.yaml.")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e}).") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a bench file is a mapping with keys {', '.join(_TOP_KEYS)}.")
    data = dict(data)
    data.setdefault("name", path.stem)
    data["set"] = {**_mapping(data.get("set") or {}, "set"), **parse_overrides(overrides)}
    return bench_from_dict(data, path.parent)


def parse_overrides(overrides: list[str]) -> dict:
    """``["train.epochs=5"]`` -> ``{"train.epochs": 5}`` (values read as YAML)."""
    return dict(parse_key_value(o, "--set") for o in overrides)


def bench_from_dict(data: dict, folder: str | Path = ".") -> BenchConfig:
    """Build and check a bench; relative paths (``base``, dataset roots) are from ``folder``."""
    _known_keys(data, _TOP_KEYS, "bench")
    experiment = _base_experiment(data, Path(folder))
    names = [dataset_name(d) for d in experiment["datasets"]]
    bench = BenchConfig(
        name=str(data.get("name") or "bench"), experiment=experiment,
        methods=_methods(data.get("methods")), groups=_groups(data.get("datasets"), names),
        protocols=_protocols(data.get("protocols"), names),
        set=_overrides(data.get("set") or {}, "set"))
    check_bench(bench)
    return bench


def check_bench(bench: BenchConfig) -> None:
    """Build every cell's config and look up its method and runner, before any work."""
    from mixiqa.bench.runners import get_runner
    from mixiqa.methods import get_method

    cells = bench.cells()
    if not cells:
        raise ConfigError("The bench grid is empty: " + "; ".join(bench.skipped()) +
                          ". Add a group with a dataset to train on, or another protocol.")
    for cell in cells:
        cfg = bench.cell_config(cell)
        where = f"bench method '{cell.method.label}'"
        runner = get_runner(cell.method.runner)
        # a runner with its own method names (NIQE, BRISQUE, Re-IQA) checks them itself
        method_check = getattr(runner, "check_method", get_method)
        for check, name in ((method_check, cfg.method.name), (get_runner, cell.method.runner)):
            try:
                check(name)
            except ConfigError as e:
                raise ConfigError(f"{where}: {e}") from e


def _base_experiment(data: dict, folder: Path) -> dict:
    base, inline = data.get("base"), data.get("experiment")
    if (base is None) == (inline is None):
        raise ConfigError("bench: give exactly one of 'base' (an experiment config file, "
                          "relative to the bench file) or 'experiment' (the config inline).")
    if base is not None:
        return plain(load_config(folder / str(base)).to_dict())
    inline = copy.deepcopy(_mapping(inline, "experiment"))
    for d in inline.get("datasets") or []:
        root = Path(str(d.get("root", ""))).expanduser() if isinstance(d, dict) else None
        if root is not None and not root.is_absolute():
            d["root"] = str((folder / root).resolve())
    return plain(config_from_dict(inline).to_dict())


def _methods(items) -> list[MethodSpec]:
    out = []
    for i, m in enumerate(_nonempty_list(items, "methods", "{label: monotonic, set: "
                                                           "{method.name: monotonic}}")):
        m = _mapping(m, f"methods[{i}]")
        _known_keys(m, _METHOD_KEYS, f"methods[{i}]")
        sets = _overrides(m.get("set") or {}, f"methods[{i}].set")
        runner = str(m.get("runner") or "experiment")
        label = str(m.get("label") or sets.get("method.name") or runner)
        out.append(MethodSpec(_safe(label, f"methods[{i}].label"), sets, runner))
    _unique([m.label for m in out], "method label")
    return out


def _groups(items, names: list[str]) -> list[tuple]:
    out = []
    for i, g in enumerate(_nonempty_list(items, "datasets", f"[{', '.join(names)}]")):
        group = [g] if isinstance(g, str) else g
        if not isinstance(group, list) or not group:
            raise ConfigError(f"datasets[{i}] must be a non-empty list of dataset names.")
        for n in group:
            if n not in names:
                raise ConfigError(f"datasets[{i}]: '{n}' is not a dataset of the base config."
                                  f"{hint(n, names)} Base datasets: {', '.join(names)}.")
        out.append(tuple(dict.fromkeys(map(str, group))))
    _unique(["+".join(g) for g in out], "dataset group")
    return out


def _protocols(items, names: list[str]) -> list[ProtocolSpec]:
    from mixiqa.data.splits import PROTOCOLS

    out = []
    for i, p in enumerate(_nonempty_list(items, "protocols", "{protocol: random, seeds: 5}")):
        where = f"protocols[{i}]"
        p = _mapping(p, where)
        _known_keys(p, _PROTOCOL_KEYS, where)
        proto = str(p.get("protocol", "random"))
        if proto not in PROTOCOLS:
            raise ConfigError(f"{where}: {PROTOCOLS.unknown_message(proto)}")
        tests = tuple(p.get("test_datasets") or ())
        for n in tests:
            if n not in names:
                raise ConfigError(f"{where}.test_datasets: '{n}' is not a dataset of the base "
                                  f"config.{hint(n, names)} Base datasets: {', '.join(names)}.")
        if proto == "cross" and not tests:
            raise ConfigError(f"{where}: the cross protocol needs test_datasets, e.g. [clive].")
        out.append(ProtocolSpec(_safe(str(p.get("name") or proto), f"{where}.name"), proto,
                                _ratios(p.get("ratios", (0.6, 0.2, 0.2)), where),
                                _seeds(p.get("seeds", 1), where), tests))
    _unique([p.name for p in out], "protocol name")
    return out


def _seeds(seeds, where: str) -> tuple:
    if isinstance(seeds, int) and not isinstance(seeds, bool) and seeds > 0:
        return tuple(range(seeds))
    if (isinstance(seeds, list) and seeds
            and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)):
        return tuple(seeds)
    raise ConfigError(f"{where}.seeds must be a count (5 -> seeds 0..4) or a list of "
                      f"non-negative integers, got {seeds!r}.")


def _ratios(ratios, where: str) -> tuple:
    ok = isinstance(ratios, (list, tuple)) and len(ratios) == 3 and all(
        isinstance(r, (int, float)) and r >= 0 for r in ratios)
    if not ok or abs(sum(ratios) - 1) > 1e-6:
        raise ConfigError(f"{where}.ratios must be three fractions (train, val, test) summing "
                          f"to 1, e.g. [0.6, 0.2, 0.2]; got {ratios!r}.")
    return tuple(float(r) for r in ratios)


def _overrides(sets, where: str) -> dict:
    sets = _mapping(sets, where)
    for key in sets:
        if str(key).split(".")[0] in ("split", "datasets"):
            raise ConfigError(f"{where}: '{key}' cannot be overridden; splits and datasets "
                              "come from the bench's 'protocols' and 'datasets'.")
    return {str(k): v for k, v in sets.items()}


def _mapping(x, where: str) -> dict:
    if not isinstance(x, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(x).__name__}: {x!r}.")
    return x


def _nonempty_list(x, key: str, example: str) -> list:
    if not isinstance(x, list) or not x:
        raise ConfigError(f"bench: '{key}' must be a non-empty list, e.g. [{example}].")
    return x


def _known_keys(data: dict, known: tuple, where: str) -> None:
    for k in data:
        if k not in known:
            raise ConfigError(f"{where}: unknown key '{k}'.{hint(k, known)} "
                              f"Known: {', '.join(known)}.")


def _safe(label: str, where: str) -> str:
    if not _SAFE.match(label) or "__" in label:
        raise ConfigError(f"{where} '{label}' names a folder: use letters, digits, '.', "
                          "'-' and single '_' only.")
    return label


def _unique(names: list[str], what: str) -> None:
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"bench: {what} {', '.join(map(repr, dup))} is given twice; "
                          "labels must be unique.")
