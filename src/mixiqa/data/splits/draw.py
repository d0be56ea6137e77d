"""How the protocols draw a split: per-dataset seeded draws by image or content group,
official parts, validation carved from training, and the checks of their options."""

from __future__ import annotations

import difflib
import math
import zlib
from typing import Sequence

import numpy as np

from mixiqa.data.catalog import DATASETS
from mixiqa.data.manifest import Manifest, Record
from mixiqa.data.splits.split import PARTS, Split, record_key, unique_keys
from mixiqa.errors import ConfigError, DataError

SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val",
               "validation": "val", "test": "test", "testing": "test"}
ByGroup = bool | str | Sequence[str]  # True / False / "auto" / dataset names


def by_dataset(manifest: Manifest) -> dict[str, list[Record]]:
    """Records per dataset, datasets sorted, after checking keys are unique."""
    if not len(manifest):
        raise DataError("Cannot split an empty manifest; parse a dataset first.")
    unique_keys(manifest)
    return {d: [r for r in manifest.records if r.dataset == d] for d in sorted(manifest.datasets)}


def check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    r = tuple(float(x) for x in ratios)
    if len(r) != 3 or not all(math.isfinite(x) and x >= 0 for x in r) or r[0] <= 0:
        raise ConfigError(f"Split ratios {tuple(ratios)} must be three non-negative "
                          "(train, val, test) fractions with train > 0, e.g. (0.6, 0.2, 0.2).")
    if abs(sum(r) - 1.0) > 1e-6:
        raise ConfigError(f"Split ratios {tuple(ratios)} sum to {sum(r):g}, not 1. Give "
                          "fractions that add up to 1, e.g. (0.7, 0.1, 0.2).")
    return r  # type: ignore[return-value]


def check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"Split seed {seed!r} must be a non-negative integer.")
    return int(seed)


def check_names(names: str | Sequence[str], known: dict, option: str) -> list[str]:
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


def use_groups(name: str, records: list[Record], by_group: ByGroup) -> bool:
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


def draw(name: str, records: list[Record], ratios: tuple[float, float, float], seed: int,
         grouped: bool) -> list[list[str]]:
    """Keys of one dataset in each of the three parts, each part sorted."""
    unit_of = (lambda r: r.group) if grouped else record_key
    units = sorted({unit_of(r) for r in records})
    sizes = _part_sizes(len(units), ratios)
    what = "content groups" if grouped else "images"
    for part, size, ratio in zip(PARTS, sizes, ratios):
        if ratio > 0 and size == 0:
            raise DataError(
                f"Dataset '{name}' has {len(units)} {what}, too few for ratios "
                f"{fmt_ratios(ratios)}: its {part} part would be empty. Give it at least "
                f"{_min_units(ratios)} {what}, set that ratio to 0, or leave the dataset out.")
    # Per-dataset stream: a dataset's split ignores which other datasets are present.
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    order = [units[i] for i in rng.permutation(len(units))]
    bounds = np.cumsum(sizes)[:2]
    part_of = {u: int(np.searchsorted(bounds, i, side="right")) for i, u in enumerate(order)}
    parts: list[list[str]] = [[], [], []]
    for k, r in sorted((record_key(r), r) for r in records):
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


def carve(name: str, records: list[Record], val_ratio: float, seed: int,
          by_group: ByGroup) -> tuple[list[str], list[str]]:
    """(train, val) keys of one dataset, val a ``val_ratio`` fraction drawn by seed."""
    if not 0.0 <= float(val_ratio) < 1.0:
        raise ConfigError(f"val_ratio={val_ratio!r} must be in [0, 1): the fraction of the "
                          "training images kept for validation, e.g. 0.1.")
    ratios = (1.0 - float(val_ratio), float(val_ratio), 0.0)
    train, val, _ = draw(name, records, ratios, seed, use_groups(name, records, by_group))
    return train, val


def official_parts(name: str, records: list[Record]) -> dict[str, list[Record]]:
    out: dict[str, list[Record]] = {"train": [], "val": [], "test": []}
    for r in records:
        part = SPLIT_NAMES.get(str(r.split).strip().lower()) if r.split else None
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


def loo_unit(r: Record, by: str) -> str:
    value = getattr(r, by)
    if value is None:
        raise DataError(f"Image '{record_key(r)}' has no {by}; leave-one-out by {by} needs one on "
                        f"every record. Keep only datasets with {by}s (manifest.where(...)).")
    return f"{r.dataset}/{value}" if by == "group" else str(value)


def make_split(parts: tuple[list[str], ...], manifest: Manifest, protocol: str, seed: int,
               ratios: tuple[float, float, float] | None, notes: str, options: dict) -> Split:
    datasets = sorted({k.split("/", 1)[0] for keys in parts for k in keys})
    split = Split(*parts, protocol=protocol, seed=seed, ratios=ratios, datasets=datasets,
                  notes=notes, options=options)
    split.validate()  # internal invariant: protocols build disjoint parts
    return split


def jsonable(value: ByGroup) -> bool | str | list[str]:
    return value if isinstance(value, (bool, str)) else list(value)


def fmt_ratios(ratios: Sequence[float]) -> str:
    return "/".join(f"{r:g}" for r in ratios)
