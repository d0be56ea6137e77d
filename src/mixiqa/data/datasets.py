"""Load any catalogued dataset from its release folder into a checked Manifest.

One entry point for every dataset: :func:`load_manifest` (parse, check scores, find the
images on disk, apply the missing-image policy, optionally decode every image).
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

from mixiqa.data.catalog import DatasetInfo, dataset_info
from mixiqa.data.manifest import Manifest, Record, check_scores, resolve_case
from mixiqa.data.parsers import PARSERS
from mixiqa.errors import ConfigError, DataError
from mixiqa.progress import progress


@dataclass
class DatasetScan:
    """What a release folder holds: the listed rows, those present on disk, those missing."""

    info: DatasetInfo
    root: Path
    listed: list[Record]
    present: list[Record]
    missing: list[Record]
    unreadable: list[tuple[Record, str]] = field(default_factory=list)

    def summary(self) -> dict:
        """Counts, score range, direction, groups and splits, for ``datasets inspect``."""
        scores = [r.score for r in self.listed]
        groups = {r.group for r in self.listed if r.group is not None}
        splits: dict[str, list[int]] = {}
        for r in self.listed:
            if r.split:
                counts = splits.setdefault(r.split, [0, 0])
                counts[0] += 1
        for r in self.present:
            if r.split:
                splits[r.split][1] += 1
        return {
            "dataset": self.info.name,
            "root": str(self.root),
            "listed": len(self.listed),
            "present": len(self.present),
            "missing": len(self.missing),
            "unreadable": len(self.unreadable),
            "score_name": self.info.score_name,
            "observed_range": [min(scores), max(scores)] if scores else None,
            "theoretical_range": ([self.listed[0].score_min, self.listed[0].score_max]
                                  if self.listed else list(self.info.score_range)),
            "direction": self.info.direction,
            "groups": len(groups),
            "scenes": len({r.scene for r in self.listed if r.scene is not None}),
            "official_split": {k: {"listed": v[0], "present": v[1]} for k, v in splits.items()},
        }


def parse_release(name: str, root: str | Path, /, **options) -> list[Record]:
    """Every row the release's score files list, checked for NaN and duplicate names."""
    info = dataset_info(name)
    unknown = set(options) - set(info.options)
    if unknown:
        known = ", ".join(info.options) or "none"
        raise ConfigError(f"Dataset '{name}' has no option(s) {sorted(unknown)}; known: {known}.")
    if name not in PARSERS:
        raise ConfigError(f"No parser for dataset '{name}' yet.")
    kwargs = {**info.options, **options}
    records = PARSERS.get(name)(Path(root), info, **kwargs)
    if not records:
        raise DataError(f"The {info.title} score files in '{root}' list no images.")
    check_scores(records, f"{info.title} score files in '{root}'")
    return records


def scan_release(name: str, root: str | Path, /, verify_images: bool = False,
                 show_progress: bool = True, **options) -> DatasetScan:
    """Parse a release and look for every listed image on disk (case-insensitively)."""
    records = parse_release(name, root, **options)
    listing: dict = {}
    present, missing = [], []
    for r in records:
        found = resolve_case(Path(r.path), listing)
        if found is None:
            missing.append(r)
        else:
            present.append(r if str(found) == r.path else replace(r, path=str(found)))
    scan = DatasetScan(dataset_info(name), Path(root), records, present, missing)
    if verify_images:
        scan.unreadable = find_unreadable(present, show_progress=show_progress)
    return scan


def load_manifest(name: str, root: str | Path, /, allow_missing: bool = False,
                  verify_images: bool = False, show_progress: bool = True,
                  **options) -> Manifest:
    """Load a dataset as a Manifest of the images present on disk.

    Args:
        name: Catalog name (see ``mixiqa datasets``).
        root: The release folder (or its parent).
        allow_missing: Proceed with the images present when some listed ones are absent
            (a warning says how many were dropped). By default missing images are an error.
        verify_images: Decode every image and raise naming each one that fails.
        show_progress: Show a progress bar while verifying.
        **options: Dataset options from the catalog (e.g. ``column="MOS_zscore"`` for KonIQ).

    Raises:
        DataError: images missing (without ``allow_missing``), unreadable images, or a
            score file that does not match the release's format.
    """
    scan = scan_release(name, root, verify_images=verify_images,
                        show_progress=show_progress, **options)
    if scan.missing:
        few = ", ".join(f"'{Path(r.path).name}'" for r in scan.missing[:5])
        if not allow_missing:
            raise DataError(
                f"{len(scan.missing)} of {len(scan.listed)} images listed by the "
                f"{scan.info.title} score files are missing under '{root}' (e.g. {few}). "
                "Restore them, or pass --allow-missing (allow_missing=True) to proceed with "
                f"the {len(scan.present)} present.")
        warnings.warn(f"{scan.info.name}: dropped {len(scan.missing)} of {len(scan.listed)} "
                      f"listed images that are missing on disk; using {len(scan.present)}.",
                      stacklevel=2)
    if scan.unreadable:
        raise DataError(unreadable_message(scan.unreadable))
    return Manifest(scan.present)


def unreadable_message(bad: Sequence[tuple[Record, str]]) -> str:
    lines = [f"  {r.path}: {why}" for r, why in bad[:20]]
    more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
    return (f"{len(bad)} image file(s) cannot be decoded:\n" + "\n".join(lines) + more +
            "\nReplace them with intact copies from the official release, or delete them and "
            "pass --allow-missing.")


def check_image(path: str) -> str | None:
    """Fully decode one image; return None if it is fine, else the reason it is not."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            if im.width < 1 or im.height < 1:
                return "image has no pixels"
    except Exception as e:  # PIL raises many types: OSError, SyntaxError, ValueError...
        return f"{type(e).__name__}: {e}"
    return None


def find_unreadable(records: Sequence[Record], show_progress: bool = True,
                    workers: int = 4) -> list[tuple[Record, str]]:
    """Decode every image (threads: decoding releases the GIL) and list the failures."""
    bad = []
    with ThreadPoolExecutor(workers) as pool:
        results = pool.map(check_image, [r.path for r in records])
        for r, why in progress(zip(records, results), total=len(records),
                               desc="decoding images", enable=show_progress):
            if why is not None:
                bad.append((r, why))
    return bad
