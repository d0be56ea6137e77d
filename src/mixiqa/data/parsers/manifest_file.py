"""The ``csv`` parser: any dataset given as a CSV file or a JSON list, one row per image.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

from mixiqa.data.catalog import DatasetInfo
from mixiqa.data.manifest import Record
from mixiqa.data.parsers import PARSERS
from mixiqa.data.parsers.readers import (cell_text, make_record, optional_float, read_csv_rows,
                                         require_text, to_float)
from mixiqa.errors import ConfigError, DataError

# ---- generic CSV / JSON manifest -----------------------------------------------------

MANIFEST_SPLITS = {"train": "train", "training": "train", "val": "val", "valid": "val",
                   "validation": "val", "test": "test", "testing": "test"}


@PARSERS.register("csv")
def parse_csv(root: Path, info: DatasetInfo, file: str | None = None, name: str | None = None,
              score_range=None, higher_better: bool | str = True) -> list[Record]:
    """Any other dataset: a CSV file, or a JSON list of objects, with one row per image.

    Columns (keys): ``image`` (relative to ``root``, or absolute) and ``score`` required;
    ``std``, ``group``, ``scene``, ``distortion``, ``split`` (train/val/test) optional.

    Args:
        root: The folder the image paths are relative to.
        info: The catalog entry.
        file: The .csv or .json file, relative to ``root`` or absolute.
        name: Dataset name the records carry (default ``csv``).
        score_range: (min, max) of the rating scale, or "min,max"; default the observed
            minimum and maximum.
        higher_better: False for DMOS-like scores.
    """
    base = Path(root).expanduser().absolute()
    path = _manifest_path(base, file)
    rows = _manifest_rows(path)
    scores = [to_float(row.get("score"), path, i, "score") for i, row in rows]
    info = replace(info, name=_manifest_name(name), higher_better=_as_bool(higher_better),
                   score_range=_manifest_range(score_range, scores))
    records = []
    for (i, row), score in zip(rows, scores):
        image = require_text(row.get("image"), path, i, "image")
        records.append(make_record(
            info, base / image, image, score, std=optional_float(row.get("std"), path, i, "std"),
            group=cell_text(row.get("group")) or None, scene=cell_text(row.get("scene")) or None,
            distortion=cell_text(row.get("distortion")) or None,
            split=_manifest_split(row.get("split"), path, i)))
    return records


def _manifest_path(base: Path, file: str | None) -> Path:
    if not file:
        raise ConfigError("The csv dataset needs option file=<your .csv or .json>, relative to "
                          "the dataset folder or absolute.")
    path = Path(file).expanduser()
    path = path if path.is_absolute() else base / path
    if not path.is_file():
        raise DataError(f"Manifest file '{path}' does not exist. Check option file= (relative "
                        f"paths start at '{base}').")
    return path


def _manifest_rows(path: Path) -> list[tuple[int, dict]]:
    """(row number, row) pairs: CSV rows count the header as row 1, JSON objects from 1."""
    if path.suffix.lower() != ".json":
        return list(enumerate(read_csv_rows(path, ["image", "score"]), start=2))
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({e}). Fix the file.") from e
    if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
        raise DataError(f"{path}: expected a JSON list of objects with keys 'image' and "
                        "'score'.")
    for i, d in enumerate(data, start=1):
        missing = [k for k in ("image", "score") if k not in d]
        if missing:
            raise DataError(f"{path}, row {i}: object has no key(s) {missing}; every object "
                            "needs 'image' and 'score'.")
    return list(enumerate(data, start=1))


def _manifest_name(name: str | None) -> str:
    if name is None:
        return "csv"
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.+-]+", name):
        raise ConfigError(f"Dataset name '{name}' must be letters, digits, '_', '.', '+' or "
                          "'-' (it is written into split files as '<name>/<image>').")
    return name


def _manifest_range(option, scores: list[float]) -> tuple[float, float]:
    if option is None:
        lo, hi = min(scores), max(scores)
        # a constant score would make the range empty; widen it so rescaling stays defined
        return (lo, hi) if lo < hi else (lo - 0.5, hi + 0.5)
    parts = option.replace(":", ",").split(",") if isinstance(option, str) else option
    try:
        lo, hi = (float(x) for x in parts)
    except (TypeError, ValueError):
        raise ConfigError(f"score_range={option!r}: give two numbers, e.g. score_range="
                          "(0, 100) or '0,100'.") from None
    if not lo < hi:
        raise ConfigError(f"score_range={option!r}: the minimum must be below the maximum.")
    return lo, hi


def _as_bool(value: bool | str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes"}:
        return True
    if text in {"0", "false", "no"}:
        return False
    raise ConfigError(f"higher_better={value!r}: use true or false.")


def _manifest_split(value, path: Path, row: int) -> str | None:
    text = cell_text(value).lower()
    if not text:
        return None
    if text not in MANIFEST_SPLITS:
        raise DataError(f"{path}, row {row}: split '{text}' is not train, val or test. Fix "
                        "that cell or leave it empty.")
    return MANIFEST_SPLITS[text]
