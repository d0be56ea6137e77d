"""Official release files -> manifest rows, one small parser per release format.

Every parser has the signature ``parse(root, info, **options) -> list[Record]`` and
returns EVERY image its score file lists (present on disk or not); presence, duplicate
and NaN checks happen once, in :func:`mixiqa.data.datasets.load_manifest`.
Parsers raise :class:`~mixiqa.errors.DataError` naming the file, the row and the fix
when a file does not match the official format.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from mixiqa.data.catalog import DatasetInfo
from mixiqa.data.manifest import Record
from mixiqa.errors import ConfigError, DataError
from mixiqa.registry import Registry

Parser = Callable[..., list[Record]]
PARSERS: Registry[Parser] = Registry("dataset parser")


# ---- shared helpers ------------------------------------------------------------------

def locate_release(root: str | Path, info: DatasetInfo) -> Path:
    """The folder that holds the release's first score file: ``root`` or one level below.

    Users point at the folder they downloaded (``CLIVE/``) whose release sits one level
    down (``CLIVE/ChallengeDB_release/``); both work.
    """
    root = Path(root).expanduser().absolute()  # records carry absolute image paths
    if not root.is_dir():
        raise DataError(f"Dataset folder '{root}' does not exist. Pass --root with the folder "
                        f"of the {info.title} release.")
    first = info.score_files[0]
    candidates = [root] + sorted(p for p in root.iterdir() if p.is_dir())
    for folder in candidates:
        if list(folder.glob(first)):
            return folder
    raise DataError(
        f"No '{first}' in '{root}' or its sub-folders: this does not look like the "
        f"{info.title} release. Point --root at the folder that holds '{first}'.")


def require_file(release: Path, relpath: str) -> Path:
    path = release / relpath
    if not path.is_file():
        raise DataError(f"'{path}' is missing: the {release.name} release should contain "
                        f"'{relpath}'. Re-extract the official archive.")
    return path


def to_float(value, source: Path | str, row: int | str, column: str) -> float:
    """Parse a score cell; non-numeric or NaN values name the file, row and column."""
    try:
        x = float(str(value).strip()) if not isinstance(value, (int, float, np.number)) else float(value)
    except (TypeError, ValueError):
        raise DataError(f"{source}, row {row}: {column} '{value}' is not a number. "
                        "Fix that cell or remove the row.") from None
    if not math.isfinite(x):
        raise DataError(f"{source}, row {row}: {column} is {x}. Every image needs a finite "
                        "score: fix that cell or remove the row.")
    return x


def make_record(info: DatasetInfo, path: Path, name: str, score: float, **extra) -> Record:
    """A row with the dataset-level facts (direction, range) filled from the catalog."""
    lo, hi = extra.pop("score_range", info.score_range)
    return Record(path=str(path), name=name, score=score, dataset=info.name,
                  higher_better=extra.pop("higher_better", info.higher_better),
                  score_min=lo, score_max=hi, **extra)


def read_csv_rows(path: Path, required: list[str]) -> list[dict]:
    """Rows of a CSV file as dicts, after checking the header has ``required`` columns."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in required if c not in header]
        if missing:
            raise DataError(f"{path}: expected columns {required}, found {header}; missing "
                            f"{missing}. Is this the official file, unmodified?")
        return [{(k or "").strip(): v for k, v in row.items()} for row in reader]


def load_mat(path: Path) -> dict:
    """A MATLAB .mat file (v5, as the releases ship) as a dict of arrays."""
    from scipy.io import loadmat

    try:
        return loadmat(str(path))
    except Exception as e:  # scipy raises several types for a damaged file
        raise DataError(f"{path}: cannot read as a MATLAB .mat file ({e}). Re-extract the "
                        "official archive.") from e


def mat_field(mat: dict, key: str, path: Path) -> np.ndarray:
    if key not in mat:
        found = [k for k in mat if not k.startswith("__")]
        raise DataError(f"{path}: no variable '{key}' (found {found}). Is this the official file?")
    return mat[key]


def mat_strings(arr: np.ndarray) -> list[str]:
    """Flatten a MATLAB cell array of strings (as scipy loads it) to a list of str."""
    out = []
    for item in np.asarray(arr, dtype=object).ravel():
        while isinstance(item, np.ndarray):
            item = item.ravel()[0] if item.size else ""
        out.append(str(item))
    return out


# ---- CLIVE ---------------------------------------------------------------------------

@PARSERS.register("clive")
def parse_clive(root: Path, info: DatasetInfo) -> list[Record]:
    """LIVE Challenge: three .mat files; the first 7 entries (t1..t7 training images) dropped."""
    release = locate_release(root, info)
    paths = [require_file(release, f) for f in info.score_files]
    names = mat_strings(mat_field(load_mat(paths[0]), "AllImages_release", paths[0]))
    mos = np.asarray(mat_field(load_mat(paths[1]), "AllMOS_release", paths[1]), float).ravel()
    std = np.asarray(mat_field(load_mat(paths[2]), "AllStdDev_release", paths[2]), float).ravel()
    if not (len(names) == len(mos) == len(std)):
        raise DataError(f"{release / 'Data'}: {len(names)} names but {len(mos)} MOS and "
                        f"{len(std)} std values. The three .mat files must come from one release.")
    records = []
    for i, (name, m, s) in enumerate(zip(names, mos, std)):
        if i < 7:  # t1.bmp..t7.bmp: the release's own training examples, never rated for use
            continue
        score = to_float(m, paths[1], i + 1, "MOS")
        records.append(make_record(info, release / info.image_dir / name, name, score,
                                   std=float(s)))
    return records


# ---- BIQ2021 -------------------------------------------------------------------------

@PARSERS.register("biq2021")
def parse_biq2021(root: Path, info: DatasetInfo) -> list[Record]:
    """BIQ2021: official train and test CSVs ("Image Name", "MOS"); scene = subset ssNN.

    The subsets differ by kind of content (personal gallery, deliberate acquisition
    distortions, Unsplash), so they are scene-like labels, not reference-content groups.
    """
    release = locate_release(root, info)
    records = []
    for split, relpath in zip(("train", "test"), info.score_files):
        path = require_file(release, relpath)
        for i, row in enumerate(read_csv_rows(path, ["Image Name", "MOS"]), start=2):
            name = (row.get("Image Name") or "").strip()
            if not name:  # the release pads rows with empty trailing cells, never empty names
                raise DataError(f"{path}, row {i}: empty 'Image Name'. Remove the blank row.")
            score = to_float(row.get("MOS"), path, i, "MOS")
            records.append(make_record(info, release / info.image_dir / name, name, score,
                                       scene=name.split(" ")[0], split=split))
    return records
