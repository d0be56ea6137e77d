"""The canonical manifest: one row per rated image, whatever the release it came from.

Every parser turns an official release into a list of :class:`Record`; everything
downstream (splits, samplers, training, evaluation) reads only these rows.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from mixiqa.errors import DataError


@dataclass(frozen=True)
class Record:
    """One rated image.

    Attributes:
        path: Absolute path of the image file (may not exist when the release is partial).
        name: The image's name as the score file lists it; unique within a dataset.
        score: Raw human score on the dataset's own scale (MOS or DMOS).
        dataset: Catalog name of the dataset (``clive``, ``koniq``, ...).
        higher_better: True for MOS-like scores, False for DMOS-like scores.
        score_min: Lower end of the dataset's theoretical score range.
        score_max: Upper end of the dataset's theoretical score range.
        std: Standard deviation of the ratings, where the release gives it.
        group: Content group: the reference image for synthetic-distortion sets,
            so that content-aware splits keep each reference on one side.
        scene: Scene category, where the release provides one (SPAQ).
        distortion: Distortion type, where the release provides one.
        split: The official split this image belongs to ("train"/"test"), if any.
    """

    path: str
    name: str
    score: float
    dataset: str
    higher_better: bool
    score_min: float
    score_max: float
    std: float | None = None
    group: str | None = None
    scene: str | None = None
    distortion: str | None = None
    split: str | None = None

    def quality01(self) -> float:
        """The score rescaled to [0, 1] over the theoretical range, higher is better."""
        x = (self.score - self.score_min) / (self.score_max - self.score_min)
        return x if self.higher_better else 1.0 - x


FIELD_NAMES = [f.name for f in fields(Record)]
_FLOAT_FIELDS = {"score", "score_min", "score_max", "std"}


@dataclass
class Manifest:
    """An ordered list of records with the few table operations the pipeline needs."""

    records: list[Record] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def __getitem__(self, i: int) -> Record:
        return self.records[i]

    @property
    def datasets(self) -> list[str]:
        """Dataset names in order of first appearance."""
        return list(dict.fromkeys(r.dataset for r in self.records))

    def where(self, **conditions) -> "Manifest":
        """Rows whose fields equal the given values, e.g. ``where(dataset="clive")``."""
        return Manifest([r for r in self.records
                         if all(getattr(r, k) == v for k, v in conditions.items())])

    def subset(self, indices: Iterable[int]) -> "Manifest":
        return Manifest([self.records[i] for i in indices])

    def __add__(self, other: "Manifest") -> "Manifest":
        return Manifest(self.records + other.records)

    def scores(self) -> list[float]:
        return [r.score for r in self.records]

    def keys(self) -> list[str]:
        """Stable identifiers ``dataset/name`` used by split files."""
        return [f"{r.dataset}/{r.name}" for r in self.records]

    # ---- persistence: a readable CSV ------------------------------------------------
    def to_csv(self, path: str | os.PathLike) -> None:
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=FIELD_NAMES)
            writer.writeheader()
            for r in self.records:
                writer.writerow({k: ("" if v is None else v) for k, v in asdict(r).items()})

    @classmethod
    def from_csv(cls, path: str | os.PathLike) -> "Manifest":
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        return cls([_record_from_strings(row, path, i + 2) for i, row in enumerate(rows)])


def _record_from_strings(row: dict, source, line: int) -> Record:
    values: dict = {}
    for name in FIELD_NAMES:
        raw = row.get(name, "")
        raw = "" if raw is None else str(raw).strip()
        if name in _FLOAT_FIELDS:
            values[name] = None if raw == "" else float(raw)
        elif name == "higher_better":
            values[name] = raw.lower() in {"1", "true", "yes"}
        else:
            values[name] = raw or None
    if values["path"] is None or values["name"] is None or values["score"] is None:
        raise DataError(f"{source}, line {line}: a manifest row needs path, name and score.")
    return Record(**values)


def check_scores(records: Sequence[Record], source: str | os.PathLike) -> None:
    """Reject NaN/infinite scores and duplicate names, naming the file and the row."""
    seen: dict[str, int] = {}
    for i, r in enumerate(records):
        if not math.isfinite(r.score):
            raise DataError(
                f"{source}: score of '{r.name}' (entry {i + 1}) is {r.score!r}; every image "
                "needs a finite number. Fix or remove that row.")
        if r.name in seen:
            raise DataError(
                f"{source}: image '{r.name}' is listed twice (entries {seen[r.name] + 1} and "
                f"{i + 1}). Remove the duplicate row.")
        seen[r.name] = i


def resolve_case(path: Path, _listing_cache: dict | None = None) -> Path | None:
    """Return ``path`` if it exists, else a case-insensitive match in its folder, else None.

    Releases list names whose case differs from the file on disk (BIQ2021 lists
    ``ss02 (1014).jpg`` for ``ss02 (1014).JPG``).
    """
    if path.exists():
        return path
    cache = {} if _listing_cache is None else _listing_cache
    folder = path.parent
    if folder not in cache:
        try:
            cache[folder] = {p.lower(): p for p in os.listdir(folder)}
        except OSError:
            cache[folder] = {}
    match = cache[folder].get(path.name.lower())
    return folder / match if match else None


def to_json(records: Sequence[Record]) -> str:
    return json.dumps([asdict(r) for r in records], indent=1)


__all__ = ["Record", "Manifest", "check_scores", "resolve_case", "replace", "FIELD_NAMES"]
