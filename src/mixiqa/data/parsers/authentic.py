"""Parsers of authentically distorted photo datasets: CLIVE, BIQ2021, BID, KonIQ-10k, SPAQ,
CID2013.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from mixiqa.data.catalog import DatasetInfo
from mixiqa.data.manifest import Record
from mixiqa.data.parsers import PARSERS
from mixiqa.data.parsers.readers import (cell_text, load_mat, locate_release, make_record,
                                         mat_field, mat_strings, optional_float, read_csv_rows,
                                         read_sheet, require_file, require_text, sheet_rows,
                                         to_float)
from mixiqa.errors import ConfigError, DataError


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


# ---- BID -----------------------------------------------------------------------------

@PARSERS.register("bid")
def parse_bid(root: Path, info: DatasetInfo) -> list[Record]:
    """BID: DatabaseGrades.xls, one row per image below the header.

    Columns by position, as the release has them and its users read them (UNIQUE's
    loader): A = image number (-> ``DatabaseImage%04d.JPG``), B = MOS, D onwards = the
    observers' grades, whose sample std (blank cells skipped) is the record's std.
    """
    release = locate_release(root, info)
    path = require_file(release, info.score_files[0])
    _, rows = read_sheet(path)
    start = next((k for k, r in enumerate(rows) if r and _is_number(r[0])), None)
    if start is None:
        raise DataError(f"{path}: no row has an image number in column A. Is this the "
                        "official DatabaseGrades.xls?")
    records = []
    for i, row in enumerate(rows[start:], start=start + 1):
        if not any(cell_text(c) for c in row):
            continue
        if len(row) < 2:
            raise DataError(f"{path}, row {i}: expected the image number in column A and the "
                            "MOS in column B, found one column. Is this the official file?")
        number = to_float(row[0], path, i, "image number")
        name = f"DatabaseImage{int(number):04d}.JPG"
        grades = [float(c) for c in row[3:] if _is_number(c)]
        records.append(make_record(
            info, release / info.image_dir / name, name, to_float(row[1], path, i, "MOS"),
            std=float(np.std(grades, ddof=1)) if len(grades) > 1 else None))
    return records


def _is_number(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


# ---- KonIQ-10k -----------------------------------------------------------------------

# score column -> (its std column, its range); the release gives no std on the z-score scale
KONIQ_COLUMNS = {"MOS": ("SD", (1.0, 5.0)), "MOS_zscore": (None, (0.0, 100.0))}
KONIQ_SETS = {"training": "train", "validation": "val", "test": "test"}
KONIQ_SPLIT_FILE = "koniq10k_distributions_sets.csv"


@PARSERS.register("koniq")
def parse_koniq(root: Path, info: DatasetInfo, column: str = "MOS") -> list[Record]:
    """KonIQ-10k scores; the official split from koniq10k_distributions_sets.csv if present.

    Args:
        root: The release folder.
        info: The catalog entry.
        column: ``MOS`` (1-5, std from ``SD``) or ``MOS_zscore`` (0-100, no std).
    """
    if column not in KONIQ_COLUMNS:
        raise ConfigError(f"KonIQ-10k has no score column '{column}'; use column="
                          f"{' or '.join(repr(c) for c in KONIQ_COLUMNS)}.")
    sd_column, score_range = KONIQ_COLUMNS[column]
    release = locate_release(root, info)
    path = require_file(release, info.score_files[0])
    rows = read_csv_rows(path, ["image_name", column] + ([sd_column] if sd_column else []))
    splits = _koniq_splits([release, Path(root).expanduser().absolute()])
    records = []
    for i, row in enumerate(rows, start=2):
        name = require_text(row.get("image_name"), path, i, "image_name")
        score = to_float(row.get(column), path, i, column)
        std = to_float(row.get(sd_column), path, i, sd_column) if sd_column else None
        records.append(make_record(
            info, release / info.image_dir / name, name, score, std=std,
            split=splits.get(name), score_range=score_range))
    return records


def _koniq_splits(folders: list[Path]) -> dict[str, str]:
    path = next((f / KONIQ_SPLIT_FILE for f in folders if (f / KONIQ_SPLIT_FILE).is_file()), None)
    if path is None:
        return {}
    splits = {}
    for i, row in enumerate(read_csv_rows(path, ["image_name", "set"]), start=2):
        value = cell_text(row.get("set")).lower()
        if value not in KONIQ_SETS:
            raise DataError(f"{path}, row {i}: set '{value}' is not one of "
                            f"{sorted(KONIQ_SETS)}. Use the official file.")
        splits[cell_text(row.get("image_name"))] = KONIQ_SETS[value]
    return splits


# ---- SPAQ ----------------------------------------------------------------------------

@PARSERS.register("spaq")
def parse_spaq(root: Path, info: DatasetInfo) -> list[Record]:
    """SPAQ: MOS workbook; scene from the scene-category workbook when that file is there.

    The scene workbook has one column per category (Animal, Cityscape, Human, Indoor
    scene, Landscape, Night scene, Plant, Still-life, Others) and an image may be marked
    in several. The largest value wins, ties going to the leftmost column, so with 0/1
    labels the scene is the first category marked 1. Unlabelled images get None.
    """
    release = locate_release(root, info)
    path = require_file(release, info.score_files[0])
    scenes = _spaq_scenes(release / info.score_files[1])
    records = []
    for i, row in sheet_rows(path, ["Image name", "MOS"]):
        name = require_text(row["Image name"], path, i, "Image name")
        records.append(make_record(info, release / info.image_dir / name, name,
                                   to_float(row["MOS"], path, i, "MOS"),
                                   scene=scenes.get(name)))
    return records


def _spaq_scenes(path: Path) -> dict[str, str | None]:
    if not path.is_file():
        return {}
    scenes = {}
    for i, row in sheet_rows(path, ["Image name"]):
        labels = [(c, optional_float(v, path, i, c) or 0.0)
                  for c, v in row.items() if c != "Image name"]
        best = max(labels, key=lambda cv: cv[1], default=None)  # max keeps the first of ties
        scenes[cell_text(row["Image name"])] = best[0] if best and best[1] > 0 else None
    return scenes


# ---- CID2013 -------------------------------------------------------------------------

CID_SOURCE_ID = re.compile(r"IS_([IVX]+)_C(\d+)_D(\d+)", re.IGNORECASE)
ROMAN = {"I": 1, "II": 2, "III": 3, "IV": 4, "V": 5, "VI": 6}


@PARSERS.register("cid2013")
def parse_cid2013(root: Path, info: DatasetInfo) -> list[Record]:
    """CID2013: sheet "CID2013 MOS" (Source_ID, Realigned MOS) -> ``IS<n>/co<c>/<id>.jpg``.

    Source_ID ``IS_II_C03_D07`` = image set II, scene C03, device D07. The release numbers
    its eight scenes C01-C08 across the six image sets (each set shows six of them), so
    group = scene = ``C03``: a content-aware split keeps one scene on one side.
    """
    release = locate_release(root, info)
    path = require_file(release, info.score_files[0])
    records = []
    for i, row in sheet_rows(path, ["Source_ID", "Realigned MOS"], sheet="CID2013 MOS"):
        source_id = require_text(row["Source_ID"], path, i, "Source_ID")
        match = CID_SOURCE_ID.fullmatch(source_id)
        if match is None or match.group(1).upper() not in ROMAN:
            raise DataError(f"{path}, row {i}: Source_ID '{source_id}' is not of the form "
                            "IS_<I..VI>_C<nn>_D<nn>. Fix that cell.")
        image_set, scene = ROMAN[match.group(1).upper()], int(match.group(2))
        image = release / info.image_dir / f"IS{image_set}" / f"co{scene}" / f"{source_id}.jpg"
        records.append(make_record(info, image, source_id,
                                   to_float(row["Realigned MOS"], path, i, "Realigned MOS"),
                                   group=f"C{scene:02d}", scene=f"C{scene:02d}"))
    return records


