"""Train/val/test splits for the IQA field's protocols, by seed, saved as readable JSON.

A :class:`Split` holds lists of manifest keys (``dataset/name``), never indices, so a
split file stays valid while a manifest is re-parsed, and fails loudly when it is not.
Every protocol splits each dataset separately (so each dataset appears in every part)
with a generator seeded by ``(seed, dataset name)``: a dataset's split does not depend
on record order nor on which other datasets share the manifest.

Protocols (see :func:`make_splits`): ``random``, ``content`` (by reference content),
``official``, ``cross`` (train on some datasets, test on others), ``loo-scene`` and
``loo-group`` (leave one scene or content group out).

Here: the protocols and their factory; ``split`` holds the :class:`Split` record, ``draw``
the per-dataset draws and option checks the protocols share.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Callable, Sequence

from mixiqa.data.manifest import Manifest
from mixiqa.data.splits.draw import (ByGroup, by_dataset, carve, check_names, check_ratios,
                                     check_seed, draw, fmt_ratios, jsonable, loo_unit,
                                     make_split, official_parts, use_groups)
from mixiqa.data.splits.split import PARTS, Split, record_key
from mixiqa.errors import ConfigError, DataError
from mixiqa.registry import Registry


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
    ratios, seed = check_ratios(ratios), check_seed(seed)
    per_dataset, parts = by_dataset(manifest), ([], [], [])
    if not isinstance(by_group, (bool, str)):
        check_names(by_group, per_dataset, "by_group")
    for name, records in per_dataset.items():
        grouped = use_groups(name, records, by_group)
        for acc, keys in zip(parts, draw(name, records, ratios, seed, grouped)):
            acc.extend(keys)
    content = "by content group where available" if by_group else "by image"
    return make_split(parts, manifest, "content" if by_group else "random", seed, ratios,
                      f"random {fmt_ratios(ratios)} split per dataset, {content}",
                      {"by_group": jsonable(by_group)})


def official_split(manifest: Manifest, val_ratio: float = 0.1, seed: int = 0,
                   by_group: ByGroup = "auto",
                   unlabelled_ratios: Sequence[float] | None = None) -> Split:
    """Follow each record's official ``split``; carve val out of train where none exists.

    Args:
        unlabelled_ratios: For datasets whose release has no official split (CLIVE mixed
            with BIQ2021, say): split them at random with these ratios. By default such a
            dataset is an error.
    """
    seed, parts = check_seed(seed), ([], [], [])
    for name, records in by_dataset(manifest).items():
        if unlabelled_ratios is not None and not any(r.split for r in records):
            ratios = check_ratios(unlabelled_ratios)
            for acc, keys in zip(parts, draw(name, records, ratios, seed,
                                             use_groups(name, records, by_group))):
                acc.extend(keys)
            continue
        labelled = official_parts(name, records)
        train, val, test = labelled["train"], labelled["val"], labelled["test"]
        if not val:
            train, val = carve(name, train, val_ratio, seed, by_group)
        else:
            train = sorted(record_key(r) for r in train)
            val = sorted(record_key(r) for r in val)
        for acc, keys in zip(parts, (train, val, sorted(record_key(r) for r in test))):
            acc.extend(keys)
    return make_split(parts, manifest, "official", seed, None,
                      f"official train/test; val from the release or {val_ratio:g} of train",
                      {"val_ratio": val_ratio, "by_group": jsonable(by_group),
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
    known = by_dataset(manifest)
    train_names = check_names(train_datasets, known, "train_datasets")
    test_names = ([d for d in known if d not in train_names] if test_datasets is None
                  else check_names(test_datasets, known, "test_datasets"))
    overlap = sorted(set(train_names) & set(test_names))
    if overlap:
        raise ConfigError(f"Cross-set split: {overlap} are in both train_datasets and "
                          "test_datasets. Test on datasets not trained on, or use 'random'.")
    if not test_names:
        raise ConfigError("Cross-set split: no dataset left to test on. Name test_datasets "
                          "or add a dataset to the manifest.")
    seed, parts = check_seed(seed), ([], [], [])
    for name in train_names:
        for acc, keys in zip(parts, carve(name, known[name], val_ratio, seed, by_group)):
            acc.extend(keys)
    parts[2].extend(sorted(record_key(r) for d in test_names for r in known[d]))
    return make_split(parts, manifest, "cross", seed, None,
                      f"train on {', '.join(train_names)}; test on {', '.join(test_names)}",
                      {"train_datasets": train_names, "test_datasets": test_names,
                       "val_ratio": val_ratio, "by_group": jsonable(by_group)})


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
    seed, records = check_seed(seed), manifest.records
    by_dataset(manifest)  # non-empty, unique keys
    units = [loo_unit(r, by) for r in records]
    values = sorted(set(units))
    if len(values) < 2:
        raise DataError(f"Leave-one-out by {by} needs at least two {by} values; the "
                        f"manifest has {values}. Add datasets with more {by}s.")
    splits = []
    for held in values:
        rest = Manifest([r for r, u in zip(records, units) if u != held])
        parts: tuple[list[str], ...] = (
            [], [], sorted(record_key(r) for r, u in zip(records, units) if u == held))
        for name, train_records in by_dataset(rest).items():
            carved = carve(name, train_records, val_ratio, seed, by_group)
            for acc, keys in zip(parts, carved):
                acc.extend(keys)
        splits.append(make_split(parts, manifest, f"loo-{by}", seed, None,
                                 f"{by} '{held}' held out for test",
                                 {"by": by, "held_out": held, "val_ratio": val_ratio,
                                  "by_group": jsonable(by_group)}))
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


__all__ = ["Split", "PARTS", "PROTOCOLS", "make_splits", "repeated_splits", "random_split",
           "official_split", "cross_split", "leave_one_out_splits"]
