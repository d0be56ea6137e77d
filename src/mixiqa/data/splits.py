"""Train/val/test splits for the IQA field's protocols, by seed, saved as readable JSON.

A :class:`Split` holds lists of manifest keys (``dataset/name``), never indices, so a
split file stays valid while a manifest is re-parsed, and fails loudly when it is not.
Every protocol splits each dataset separately (so each dataset appears in every part)
with a generator seeded by ``(seed, dataset name)``: a dataset's split does not depend
on record order nor on which other datasets share the manifest.

Protocols (see :func:`make_splits`): ``random``, ``content`` (by reference content),
``official``, ``cross`` (train on some datasets, test on others), ``loo-scene`` and
``loo-group`` (leave one scene or content group out).
"""

from __future__ import annotations

import difflib
import inspect
import json
import math
import os
import zlib
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from mixiqa.data.catalog import DATASETS
from mixiqa.data.manifest import Manifest, Record
from mixiqa.errors import ConfigError, DataError
from mixiqa.registry import Registry

PARTS = ("train", "val", "test")
_SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val",
                "validation": "val", "test": "test", "testing": "test"}
ByGroup = bool | str | Sequence[str]  # True / False / "auto" / dataset names


@dataclass
class Split:
    """One train/val/test partition of a manifest, as lists of ``dataset/name`` keys.

    Attributes:
        train: Keys of the training images.
        val: Keys of the validation images (checkpoint selection; may be empty).
        test: Keys of the test images.
        protocol: Name of the protocol that made it (``random``, ``cross``...).
        seed: The seed it was drawn with.
        ratios: Requested (train, val, test) fractions, for ratio protocols.
        datasets: Datasets the split covers, sorted.
        notes: A sentence for humans (what was held out, how val was carved).
        options: The protocol's other settings, JSON-ready, so the split can be traced.
        source: File it was loaded from, for error messages; not saved nor compared.
    """

    train: list[str]
    val: list[str]
    test: list[str]
    protocol: str = "random"
    seed: int | None = None
    ratios: tuple[float, float, float] | None = None
    datasets: list[str] = field(default_factory=list)
    notes: str = ""
    options: dict = field(default_factory=dict)
    source: str | None = field(default=None, compare=False, repr=False)

    def parts(self) -> dict[str, list[str]]:
        return {"train": self.train, "val": self.val, "test": self.test}

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per dataset in each part, e.g. ``{"train": {"live": 470}, ...}``."""
        out: dict[str, dict[str, int]] = {}
        for part, keys in self.parts().items():
            names = [k.split("/", 1)[0] for k in keys]
            out[part] = {d: names.count(d) for d in sorted(set(names))}
        return out

    def validate(self) -> None:
        """Raise DataError when a key is listed twice or in two parts."""
        seen: dict[str, str] = {}
        for part, keys in self.parts().items():
            for k in keys:
                if k in seen:
                    raise DataError(
                        f"{self._where()}: '{k}' is listed in both {seen[k]} and {part}. "
                        "A split must be disjoint; rebuild it with make_splits.")
                seen[k] = part

    def apply(self, manifest: Manifest) -> tuple[Manifest, Manifest, Manifest]:
        """The (train, val, test) manifests, in the split's order.

        Raises:
            DataError: Some keys of the split are not in the manifest (images dropped or
                renamed since the split was made).
        """
        self.validate()
        index = dict(zip(_unique_keys(manifest), manifest.records))
        missing = [k for keys in self.parts().values() for k in keys if k not in index]
        if missing:
            shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
            raise DataError(
                f"{self._where()} does not match the manifest: {len(missing)} key(s) are "
                f"missing from it ({shown}). Restore those images, or rebuild the split "
                "from this manifest with make_splits.")
        return tuple(Manifest([index[k] for k in keys]) for keys in self.parts().values())

    def save(self, path: str | os.PathLike) -> None:
        """Write a readable JSON file: settings and counts first, then one key a line."""
        doc = {"protocol": self.protocol, "seed": self.seed,
               "ratios": None if self.ratios is None else list(self.ratios),
               "datasets": self.datasets, "notes": self.notes, "options": self.options,
               "counts": self.counts(), **self.parts()}
        with open(path, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Split":
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise DataError(f"Split file {path} cannot be read ({e}). Check the path, or "
                            "write it again with Split.save.") from e
        if not isinstance(doc, dict) or any(not isinstance(doc.get(p), list) for p in PARTS):
            raise DataError(f"Split file {path} needs lists 'train', 'val' and 'test'. "
                            "Write it with Split.save.")
        ratios = doc.get("ratios")
        split = cls(*(list(map(str, doc[p])) for p in PARTS),
                    protocol=doc.get("protocol", "random"), seed=doc.get("seed"),
                    ratios=None if ratios is None else tuple(float(r) for r in ratios),
                    datasets=list(doc.get("datasets", [])), notes=doc.get("notes", ""),
                    options=dict(doc.get("options", {})), source=str(path))
        split.validate()
        return split

    def _where(self) -> str:
        return f"Split file {self.source}" if self.source else f"Split ({self.protocol})"


# ---- protocols ---------------------------------------------------------------------

def random_split(manifest: Manifest, ratios: Sequence[float] = (0.6, 0.2, 0.2),
                 seed: int = 0, by_group: ByGroup = False) -> Split:
    """Split each dataset at random into train/val/test by ``ratios``.

    Args:
        manifest: The records to split.
        ratios: (train, val, test) fractions summing to 1; val may be 0.
        seed: Seed of the generator (with the dataset name, per dataset).
        by_group: Split whole content groups, not images: True (every dataset), False,
            "auto" (datasets whose records all carry a group), or a list of datasets.

    Reference: Wang & Ma, "Learning from Mixed Datasets: A Monotonic Image Quality
    Assessment Model" (content-aware 60/20/20 splits of synthetic sets).
    """
    ratios, seed = _check_ratios(ratios), _check_seed(seed)
    by_dataset, parts = _by_dataset(manifest), ([], [], [])
    if not isinstance(by_group, (bool, str)):
        _check_names(by_group, by_dataset, "by_group")
    for name, records in by_dataset.items():
        grouped = _use_groups(name, records, by_group)
        for acc, keys in zip(parts, _draw(name, records, ratios, seed, grouped)):
            acc.extend(keys)
    content = "by content group where available" if by_group else "by image"
    return _make(parts, manifest, "content" if by_group else "random", seed, ratios,
                 f"random {_fmt(ratios)} split per dataset, {content}",
                 {"by_group": _jsonable(by_group)})


def official_split(manifest: Manifest, val_ratio: float = 0.1, seed: int = 0,
                   by_group: ByGroup = "auto",
                   unlabelled_ratios: Sequence[float] | None = None) -> Split:
    """Follow each record's official ``split``; carve val out of train where none exists.

    Args:
        unlabelled_ratios: For datasets whose release has no official split (CLIVE mixed
            with BIQ2021, say): split them at random with these ratios. By default such a
            dataset is an error.
    """
    seed, parts = _check_seed(seed), ([], [], [])
    for name, records in _by_dataset(manifest).items():
        if unlabelled_ratios is not None and not any(r.split for r in records):
            ratios = _check_ratios(unlabelled_ratios)
            for acc, keys in zip(parts, _draw(name, records, ratios, seed,
                                              _use_groups(name, records, by_group))):
                acc.extend(keys)
            continue
        labelled = _official_parts(name, records)
        train, val, test = labelled["train"], labelled["val"], labelled["test"]
        if not val:
            train, val = _carve(name, train, val_ratio, seed, by_group)
        else:
            train = sorted(_key(r) for r in train)
            val = sorted(_key(r) for r in val)
        for acc, keys in zip(parts, (train, val, sorted(_key(r) for r in test))):
            acc.extend(keys)
    return _make(parts, manifest, "official", seed, None,
                 f"official train/test; val from the release or {val_ratio:g} of train",
                 {"val_ratio": val_ratio, "by_group": _jsonable(by_group),
                  "unlabelled_ratios": None if unlabelled_ratios is None
                  else list(unlabelled_ratios)})


def cross_split(manifest: Manifest, train_datasets: str | Sequence[str],
                test_datasets: str | Sequence[str] | None = None, val_ratio: float = 0.1,
                seed: int = 0, by_group: ByGroup = "auto") -> Split:
    """Train (val carved from it) on some datasets, test on others without fine-tuning.

    Args:
        test_datasets: Datasets to test on; None tests on every other dataset.

    Reference: SIND cross-set protocol (train on SPAQ and/or KonIQ, test on others).
    """
    known = _by_dataset(manifest)
    train_names = _check_names(train_datasets, known, "train_datasets")
    test_names = ([d for d in known if d not in train_names] if test_datasets is None
                  else _check_names(test_datasets, known, "test_datasets"))
    overlap = sorted(set(train_names) & set(test_names))
    if overlap:
        raise ConfigError(f"Cross-set split: {overlap} are in both train_datasets and "
                          "test_datasets. Test on datasets not trained on, or use 'random'.")
    if not test_names:
        raise ConfigError("Cross-set split: no dataset left to test on. Name test_datasets "
                          "or add a dataset to the manifest.")
    seed, parts = _check_seed(seed), ([], [], [])
    for name in train_names:
        for acc, keys in zip(parts, _carve(name, known[name], val_ratio, seed, by_group)):
            acc.extend(keys)
    parts[2].extend(sorted(_key(r) for d in test_names for r in known[d]))
    return _make(parts, manifest, "cross", seed, None,
                 f"train on {', '.join(train_names)}; test on {', '.join(test_names)}",
                 {"train_datasets": train_names, "test_datasets": test_names,
                  "val_ratio": val_ratio, "by_group": _jsonable(by_group)})


def leave_one_out_splits(manifest: Manifest, by: str = "scene", val_ratio: float = 0.1,
                         seed: int = 0, by_group: ByGroup = "auto") -> list[Split]:
    """One split per value of ``by``: test on that value, train (and val) on all others.

    Args:
        by: ``scene`` (values shared across datasets) or ``group`` (content groups,
            held out as ``dataset/group`` since group names are per dataset).

    Reference: Liu et al., "Learning Scene-invariant Distribution" (SIND), cross-scene.
    """
    if by not in ("scene", "group"):
        raise ConfigError(f"Leave-one-out by '{by}' is not supported; use 'scene' or 'group'.")
    seed, records = _check_seed(seed), manifest.records
    _by_dataset(manifest)  # non-empty, unique keys
    units = [_loo_unit(r, by) for r in records]
    values = sorted(set(units))
    if len(values) < 2:
        raise DataError(f"Leave-one-out by {by} needs at least two {by} values; the "
                        f"manifest has {values}. Add datasets with more {by}s.")
    splits = []
    for held in values:
        rest = Manifest([r for r, u in zip(records, units) if u != held])
        parts: tuple[list[str], ...] = (
            [], [], sorted(_key(r) for r, u in zip(records, units) if u == held))
        for name, train_records in _by_dataset(rest).items():
            carved = _carve(name, train_records, val_ratio, seed, by_group)
            for acc, keys in zip(parts, carved):
                acc.extend(keys)
        splits.append(_make(parts, manifest, f"loo-{by}", seed, None,
                            f"{by} '{held}' held out for test",
                            {"by": by, "held_out": held, "val_ratio": val_ratio,
                             "by_group": _jsonable(by_group)}))
    return splits


# ---- factory -----------------------------------------------------------------------

PROTOCOLS: Registry[Callable[..., list[Split]]] = Registry("split protocol")
PROTOCOLS.register("random", lambda m, **kw: [random_split(m, **kw)])
PROTOCOLS.register("content", lambda m, by_group="auto", **kw:
                   [random_split(m, by_group=by_group, **kw)])
PROTOCOLS.register("official", lambda m, **kw: [official_split(m, **kw)])
PROTOCOLS.register("cross", lambda m, **kw: [cross_split(m, **kw)])
PROTOCOLS.register("loo-scene", lambda m, **kw: leave_one_out_splits(m, by="scene", **kw))
PROTOCOLS.register("loo-group", lambda m, **kw: leave_one_out_splits(m, by="group", **kw))
_TAKES = {"random": random_split, "content": random_split, "official": official_split,
          "cross": cross_split, "loo-scene": leave_one_out_splits,
          "loo-group": leave_one_out_splits}


def make_splits(manifest: Manifest, protocol: str, **options) -> list[Split]:
    """Splits of ``manifest`` by a protocol name, e.g. ``make_splits(m, "content", seed=3)``.

    Raises:
        ConfigError: Unknown protocol or option, with a "did you mean".
    """
    build = PROTOCOLS.get(protocol)
    allowed = [p for p in inspect.signature(_TAKES[protocol.lower()]).parameters
               if p not in ("manifest", "by")]
    for name in options:
        if name not in allowed:
            close = difflib.get_close_matches(name, allowed, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"Split protocol '{protocol}' has no option '{name}'.{hint} "
                              f"Options: {', '.join(allowed)}.")
    return build(manifest, **options)


def repeated_splits(manifest: Manifest, n: int | None = None,
                    seeds: Sequence[int] | None = None, protocol: str = "random",
                    **options) -> list[Split]:
    """The protocol's splits for seeds 0..n-1 (or ``seeds``); each split records its seed.

    The field reports the median over ten such repeats.

    Args:
        n: Number of repeats; 10 when neither ``n`` nor ``seeds`` is given.
        seeds: Explicit seeds, one repeat each.
        protocol: Any name :func:`make_splits` knows; ``options`` go to it.
    """
    if seeds is None:
        seeds = list(range(10 if n is None else n))
    elif n is not None and n != len(seeds):
        raise ConfigError(f"repeated_splits: n={n} but {len(seeds)} seeds were given. "
                          "Give only one of them.")
    if not seeds:
        raise ConfigError("repeated_splits needs at least one repeat (n >= 1).")
    return [s for seed in seeds for s in make_splits(manifest, protocol, seed=seed, **options)]


# ---- helpers -----------------------------------------------------------------------

def _key(r: Record) -> str:
    return f"{r.dataset}/{r.name}"


def _unique_keys(manifest: Manifest) -> list[str]:
    keys = manifest.keys()
    if len(set(keys)) != len(keys):
        dup = sorted({k for k in keys if keys.count(k) > 1})[:5]
        raise DataError(f"The manifest lists {dup} more than once; a split needs unique "
                        "dataset/name keys. Remove the duplicate rows.")
    return keys


def _by_dataset(manifest: Manifest) -> dict[str, list[Record]]:
    """Records per dataset, datasets sorted, after checking keys are unique."""
    if not len(manifest):
        raise DataError("Cannot split an empty manifest; parse a dataset first.")
    _unique_keys(manifest)
    return {d: [r for r in manifest.records if r.dataset == d] for d in sorted(manifest.datasets)}


def _check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    r = tuple(float(x) for x in ratios)
    if len(r) != 3 or not all(math.isfinite(x) and x >= 0 for x in r) or r[0] <= 0:
        raise ConfigError(f"Split ratios {tuple(ratios)} must be three non-negative "
                          "(train, val, test) fractions with train > 0, e.g. (0.6, 0.2, 0.2).")
    if abs(sum(r) - 1.0) > 1e-6:
        raise ConfigError(f"Split ratios {tuple(ratios)} sum to {sum(r):g}, not 1. Give "
                          "fractions that add up to 1, e.g. (0.7, 0.1, 0.2).")
    return r  # type: ignore[return-value]


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"Split seed {seed!r} must be a non-negative integer.")
    return int(seed)


def _check_names(names: str | Sequence[str], known: dict, option: str) -> list[str]:
    names = [names] if isinstance(names, str) else list(names)
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, list(known), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"{option}: dataset '{name}' is not in the manifest.{hint} "
                              f"Datasets in it: {', '.join(known)}.")
    if not names:
        raise ConfigError(f"{option} is empty; name at least one dataset.")
    return list(dict.fromkeys(names))


def _use_groups(name: str, records: list[Record], by_group: ByGroup) -> bool:
    """Whether this dataset is split by content group; raises on missing groups."""
    if isinstance(by_group, str) and by_group != "auto":
        raise ConfigError(f"by_group={by_group!r}: use True, False, 'auto' or dataset names.")
    wanted = (by_group is True or by_group == "auto"
              or (not isinstance(by_group, (bool, str)) and name in by_group))
    missing = sum(r.group is None for r in records)
    if not wanted or (by_group == "auto" and missing == len(records)
                      and not _synthetic(name)):
        return False
    if missing:
        raise DataError(
            f"Dataset '{name}': {missing} of {len(records)} records have no content group, "
            "so it cannot be split by content. Fill the 'group' column (the reference "
            "image) or split it by image with by_group=False.")
    return True


def _synthetic(name: str) -> bool:
    return name in DATASETS and DATASETS.get(name).kind == "synthetic"


def _draw(name: str, records: list[Record], ratios: tuple[float, float, float], seed: int,
          grouped: bool) -> list[list[str]]:
    """Keys of one dataset in each of the three parts, each part sorted."""
    unit_of = (lambda r: r.group) if grouped else _key
    units = sorted({unit_of(r) for r in records})
    sizes = _part_sizes(len(units), ratios)
    what = "content groups" if grouped else "images"
    for part, size, ratio in zip(PARTS, sizes, ratios):
        if ratio > 0 and size == 0:
            raise DataError(
                f"Dataset '{name}' has {len(units)} {what}, too few for ratios {_fmt(ratios)}: "
                f"its {part} part would be empty. Give it at least {_min_units(ratios)} "
                f"{what}, set that ratio to 0, or leave the dataset out.")
    # Per-dataset stream: a dataset's split ignores which other datasets are present.
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    order = [units[i] for i in rng.permutation(len(units))]
    bounds = np.cumsum(sizes)[:2]
    part_of = {u: int(np.searchsorted(bounds, i, side="right")) for i, u in enumerate(order)}
    parts: list[list[str]] = [[], [], []]
    for k, r in sorted((_key(r), r) for r in records):
        parts[part_of[unit_of(r)]].append(k)
    return parts


def _part_sizes(n: int, ratios: Sequence[float]) -> list[int]:
    """Largest-remainder rounding of ``n * ratios`` to integers summing to ``n``."""
    exact = np.asarray(ratios, dtype=float) * n
    sizes = np.floor(exact + 1e-9).astype(int)
    order = np.argsort(-(exact - sizes), kind="stable")
    sizes[order[: n - sizes.sum()]] += 1
    return sizes.tolist()


def _min_units(ratios: Sequence[float]) -> int:
    return next(m for m in range(1, 100_000) if all(
        s > 0 for s, r in zip(_part_sizes(m, ratios), ratios) if r > 0))


def _carve(name: str, records: list[Record], val_ratio: float, seed: int,
           by_group: ByGroup) -> tuple[list[str], list[str]]:
    """(train, val) keys of one dataset, val a ``val_ratio`` fraction drawn by seed."""
    if not 0.0 <= float(val_ratio) < 1.0:
        raise ConfigError(f"val_ratio={val_ratio!r} must be in [0, 1): the fraction of the "
                          "training images kept for validation, e.g. 0.1.")
    ratios = (1.0 - float(val_ratio), float(val_ratio), 0.0)
    train, val, _ = _draw(name, records, ratios, seed, _use_groups(name, records, by_group))
    return train, val


def _official_parts(name: str, records: list[Record]) -> dict[str, list[Record]]:
    out: dict[str, list[Record]] = {"train": [], "val": [], "test": []}
    for r in records:
        part = _SPLIT_NAMES.get(str(r.split).strip().lower()) if r.split else None
        if part is None:
            raise DataError(
                f"Dataset '{name}': image '{r.name}' has official split {r.split!r}; "
                "expected 'train', 'val' or 'test'. Use protocol 'random' for datasets "
                "without an official split, or leave the dataset out.")
        out[part].append(r)
    if not out["train"] or not out["test"]:
        raise DataError(f"Dataset '{name}' has no official "
                        f"{'train' if not out['train'] else 'test'} images; use protocol "
                        "'random' for it.")
    return out


def _loo_unit(r: Record, by: str) -> str:
    value = getattr(r, by)
    if value is None:
        raise DataError(f"Image '{_key(r)}' has no {by}; leave-one-out by {by} needs one on "
                        f"every record. Keep only datasets with {by}s (manifest.where(...)).")
    return f"{r.dataset}/{value}" if by == "group" else str(value)


def _make(parts: tuple[list[str], ...], manifest: Manifest, protocol: str, seed: int,
          ratios: tuple[float, float, float] | None, notes: str, options: dict) -> Split:
    datasets = sorted({k.split("/", 1)[0] for keys in parts for k in keys})
    split = Split(*parts, protocol=protocol, seed=seed, ratios=ratios, datasets=datasets,
                  notes=notes, options=options)
    split.validate()  # internal invariant: protocols build disjoint parts
    return split


def _jsonable(value: ByGroup) -> bool | str | list[str]:
    return value if isinstance(value, (bool, str)) else list(value)


def _fmt(ratios: Sequence[float]) -> str:
    return "/".join(f"{r:g}" for r in ratios)


__all__ = ["Split", "PROTOCOLS", "make_splits", "repeated_splits", "random_split",
           "official_split", "cross_split", "leave_one_out_splits"]
