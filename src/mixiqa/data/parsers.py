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
            raise DataError(f"{path}, row 1 (header): expected columns {required}, found "
                            f"{header}; missing {missing}. Is this the official file, "
                            "unmodified?")
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


# ---- more shared helpers: cells, text files, spreadsheets -------------------------------

def require_text(value, source: Path | str, row: int | str, column: str) -> str:
    """A name cell as text; empty cells name the file, row and column."""
    text = cell_text(value)
    if not text:
        raise DataError(f"{source}, row {row}: {column} is empty. Fill in that cell or "
                        "remove the row.")
    return text


def optional_float(value, source: Path | str, row: int | str, column: str) -> float | None:
    """A cell that may be blank (None); otherwise it must be a finite number."""
    return None if cell_text(value) == "" else to_float(value, source, row, column)


def cell_text(value) -> str:
    """A cell as text: None -> '', 1600.0 -> '1600' (sheets store numeric names as floats)."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, stripped line) for every non-blank line of a plain-text score file."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a plain-text file ({e}). Re-extract the official "
                        "archive.") from e
    for i, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield i, line.strip()


def read_sheet(path: Path, sheet: str | None = None) -> tuple[str, list[tuple]]:
    """Rows of one sheet of an .xlsx (openpyxl) or .xls (xlrd) workbook; blank cells are None.

    Args:
        path: The workbook.
        sheet: The sheet's name; None for the first sheet.

    Returns:
        The sheet's name and its rows, top to bottom, as tuples of cell values.
    """
    if path.suffix.lower() == ".xls":
        return _read_xls(path, sheet)
    from openpyxl import load_workbook

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except Exception as e:  # zipfile, KeyError, InvalidFileException... for a damaged file
        raise DataError(f"{path}: cannot read as an .xlsx workbook ({e}). Re-extract the "
                        "official archive.") from e
    try:
        name = _pick_sheet(book.sheetnames, sheet, path)
        rows = [tuple(row) for row in book[name].iter_rows(values_only=True)]
    finally:
        book.close()
    return name, rows


def _read_xls(path: Path, sheet: str | None) -> tuple[str, list[tuple]]:
    import xlrd

    try:
        book = xlrd.open_workbook(str(path))
    except Exception as e:  # xlrd raises XLRDError, CompDocError, struct.error...
        raise DataError(f"{path}: cannot read as an .xls workbook ({e}). Re-extract the "
                        "official archive.") from e
    name = _pick_sheet(book.sheet_names(), sheet, path)
    table = book.sheet_by_name(name)
    rows = [tuple(None if v == "" else v for v in table.row_values(i))
            for i in range(table.nrows)]
    return name, rows


def _pick_sheet(names: list[str], wanted: str | None, path: Path) -> str:
    if wanted is None:
        return names[0]
    if wanted not in names:
        raise DataError(f"{path}: no sheet '{wanted}' (found {names}). Is this the official "
                        "file, unmodified?")
    return wanted


def sheet_rows(path: Path, required: list[str], sheet: str | None = None,
               search: int = 20) -> Iterator[tuple[int, dict]]:
    """(spreadsheet row number, {column: value}) for each non-blank row below the header.

    The header is the first of the top ``search`` rows that holds every ``required``
    column name: official workbooks may have title rows above it (CSIQ has three).
    """
    name, rows = read_sheet(path, sheet)
    for h, row in enumerate(rows[:search]):
        header = [cell_text(c) for c in row]
        if all(c in header for c in required):
            break
    else:
        first = next(([cell_text(c) for c in r if c is not None] for r in rows
                      if any(c is not None for c in r)), [])
        raise DataError(f"{path} (sheet '{name}'), rows 1-{search}: no header row with the "
                        f"columns {required} (first row found: {first}). Is this the "
                        "official file, unmodified?")
    columns: dict[str, int] = {}
    for j, c in enumerate(header):
        if c:
            columns.setdefault(c, j)
    for i, row in enumerate(rows[h + 1:], start=h + 2):
        if any(cell_text(c) for c in row):  # blank rows pad the end of some sheets
            yield i, {c: (row[j] if j < len(row) else None) for c, j in columns.items()}


def mat_vector(mat: dict, key: str, path: Path) -> np.ndarray:
    """A numeric MATLAB variable, flattened."""
    try:
        return np.asarray(mat_field(mat, key, path), dtype=float).ravel()
    except (TypeError, ValueError):
        raise DataError(f"{path}: variable '{key}' is not numeric. Is this the official "
                        "file?") from None


# ---- LIVE release 2 ------------------------------------------------------------------

# dmos_realigned.mat lists its 982 entries folder by folder, in this order and number.
LIVE_FOLDERS = (("jp2k", 227), ("jpeg", 233), ("wn", 174), ("gblur", 174), ("fastfading", 174))


@PARSERS.register("live")
def parse_live(root: Path, info: DatasetInfo) -> list[Record]:
    """LIVE release 2: realigned DMOS; the reference copies (``orgs == 1``) are dropped.

    Entry k is ``<folder>/img<j>.bmp``, the k-th slot of :data:`LIVE_FOLDERS`;
    group = reference image name (``refnames_all``), distortion = folder.
    """
    release = locate_release(root, info)
    dmos_path, refs_path = (require_file(release, f) for f in info.score_files)
    mat = load_mat(dmos_path)
    dmos = mat_vector(mat, "dmos_new", dmos_path)
    orgs = mat_vector(mat, "orgs", dmos_path)
    std = mat_vector(mat, "dmos_std", dmos_path) if "dmos_std" in mat else None
    refs = mat_strings(mat_field(load_mat(refs_path), "refnames_all", refs_path))
    slots = [(folder, j) for folder, n in LIVE_FOLDERS for j in range(1, n + 1)]
    sizes = {len(dmos), len(orgs), len(refs)} | (set() if std is None else {len(std)})
    if sizes != {len(slots)}:
        raise DataError(f"{dmos_path}: dmos_new has {len(dmos)} entries, orgs {len(orgs)}, "
                        f"refnames_all {len(refs)}; release 2 has {len(slots)} of each. Use "
                        "the unmodified files of LIVE release 2.")
    records = []
    for k, (folder, j) in enumerate(slots):
        if orgs[k] != 0:  # a copy of the undistorted reference, rated only to compute DMOS
            continue
        name = f"{folder}/img{j}.bmp"
        score = to_float(dmos[k], dmos_path, k + 1, "dmos_new")
        records.append(make_record(info, release / info.image_dir / name, name, score,
                                   std=None if std is None else float(std[k]),
                                   group=refs[k], distortion=folder))
    return records


# ---- CSIQ ----------------------------------------------------------------------------

# dst_type as csiq.DMOS.xlsx spells it -> (folder under dst_imgs, token in the file name)
CSIQ_TYPES = {"noise": ("awgn", "AWGN"), "awgn": ("awgn", "AWGN"), "jpeg": ("jpeg", "JPEG"),
              "jpeg 2000": ("jpeg2000", "jpeg2000"), "jpeg2000": ("jpeg2000", "jpeg2000"),
              "fnoise": ("fnoise", "fnoise"), "blur": ("blur", "BLUR"),
              "contrast": ("contrast", "contrast")}


@PARSERS.register("csiq")
def parse_csiq(root: Path, info: DatasetInfo) -> list[Record]:
    """CSIQ: sheet ``all_by_image`` -> ``dst_imgs/<folder>/<image>.<TOKEN>.<level>.png``.

    group = reference image, distortion = folder name (awgn, jpeg, jpeg2000, fnoise, blur,
    contrast).
    """
    release = locate_release(root, info)
    path = require_file(release, info.score_files[0])
    records = []
    columns = ["image", "dst_type", "dst_lev", "dmos_std", "dmos"]
    for i, row in sheet_rows(path, columns, sheet="all_by_image"):
        ref = require_text(row["image"], path, i, "image")
        kind = cell_text(row["dst_type"]).lower()
        if kind not in CSIQ_TYPES:
            raise DataError(f"{path}, row {i}: dst_type '{kind}' is not one of "
                            f"{sorted(CSIQ_TYPES)}. Fix that cell.")
        folder, token = CSIQ_TYPES[kind]
        level = int(to_float(row["dst_lev"], path, i, "dst_lev"))
        name = f"{ref}.{token}.{level}.png"
        records.append(make_record(
            info, release / info.image_dir / folder / name, name,
            to_float(row["dmos"], path, i, "dmos"),
            std=optional_float(row["dmos_std"], path, i, "dmos_std"),
            group=ref, distortion=folder))
    return records


# ---- TID2013 -------------------------------------------------------------------------

@PARSERS.register("tid2013")
def parse_tid2013(root: Path, info: DatasetInfo) -> list[Record]:
    """TID2013: "MOS name" lines; std from mos_std.txt (same order) when that file is there.

    group = reference id in upper case (the release mixes ``i25`` and ``I25``),
    distortion = the two-digit type (``i01_17_3.bmp`` -> ``17``).
    """
    release = locate_release(root, info)
    path = require_file(release, info.score_files[0])
    entries = []
    for i, line in text_lines(path):
        parts = line.split()
        if len(parts) != 2:
            raise DataError(f"{path}, row {i}: expected 'MOS name' (e.g. '5.51429 "
                            f"i01_01_1.bmp'), found '{line}'. Fix that line.")
        entries.append((to_float(parts[0], path, i, "MOS"), parts[1]))
    stds = _tid_stds(release / info.score_files[1], len(entries))
    records = []
    for (score, name), std in zip(entries, stds):
        fields = Path(name).stem.split("_")
        records.append(make_record(info, release / info.image_dir / name, name, score,
                                   std=std, group=fields[0].upper(),
                                   distortion=fields[1] if len(fields) == 3 else None))
    return records


def _tid_stds(path: Path, n: int) -> list[float | None]:
    if not path.is_file():
        return [None] * n
    stds = [to_float(line, path, i, "std") for i, line in text_lines(path)]
    if len(stds) != n:
        raise DataError(f"{path}: {len(stds)} values for {n} images in mos_with_names.txt. "
                        "Both files must come from one release.")
    return stds


# ---- KADID-10k -----------------------------------------------------------------------

@PARSERS.register("kadid10k")
def parse_kadid10k(root: Path, info: DatasetInfo) -> list[Record]:
    """KADID-10k: dmos.csv; std = sqrt(var), group = ref_img, distortion = ``I01_<17>_03``."""
    release = locate_release(root, info)
    path = require_file(release, info.score_files[0])
    records = []
    for i, row in enumerate(read_csv_rows(path, ["dist_img", "ref_img", "dmos", "var"]),
                            start=2):
        name = require_text(row.get("dist_img"), path, i, "dist_img")
        var = to_float(row.get("var"), path, i, "var")
        if var < 0:
            raise DataError(f"{path}, row {i}: var {var} is negative. Fix that cell.")
        fields = Path(name).stem.split("_")
        score = to_float(row.get("dmos"), path, i, "dmos")
        records.append(make_record(
            info, release / info.image_dir / name, name, score, std=math.sqrt(var),
            group=cell_text(row.get("ref_img")) or None,
            distortion=fields[1] if len(fields) == 3 else None))
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


# ---- PIPAL ---------------------------------------------------------------------------

@PARSERS.register("pipal")
def parse_pipal(root: Path, info: DatasetInfo) -> list[Record]:
    """PIPAL training part: one Train_Label/<ref>.txt per reference, lines "name,elo".

    group = the reference (file stem), distortion = the type field of ``A0001_<07>_03.bmp``.
    """
    release = locate_release(root, info)
    records = []
    for path in sorted(release.glob(info.score_files[0])):
        for i, line in text_lines(path):
            parts = [p.strip() for p in line.split(",")]
            if len(parts) != 2 or not parts[0]:
                raise DataError(f"{path}, row {i}: expected 'dist_name,elo' (e.g. "
                                f"'A0001_00_00.bmp,1487.1'), found '{line}'. Fix that line.")
            name, fields = parts[0], Path(parts[0]).stem.split("_")
            records.append(make_record(info, release / info.image_dir / name, name,
                                       to_float(parts[1], path, i, "Elo"), group=path.stem,
                                       distortion=fields[1] if len(fields) == 3 else None))
    return records


# ---- AGIQA-3K ------------------------------------------------------------------------

AGIQA_COLUMNS = ("quality", "align")
AGIQA_IMAGE_DIRS = ("AGIQA-3K",)  # the folder's name in some copies of the release


@PARSERS.register("agiqa3k")
def parse_agiqa3k(root: Path, info: DatasetInfo, column: str = "quality") -> list[Record]:
    """AGIQA-3K: data.csv; score = mos_<column>, std = std_<column>.

    group = the text prompt (the generators share prompts, so a content-aware split keeps
    a prompt on one side), scene = the style the prompt asks for (blank for most).

    Args:
        root: The release folder.
        info: The catalog entry.
        column: ``quality`` (perceptual quality) or ``align`` (text-image alignment).
    """
    if column not in AGIQA_COLUMNS:
        raise ConfigError(f"AGIQA-3K has no score column '{column}'; use column='quality' "
                          "or column='align'.")
    release = locate_release(root, info)
    path = require_file(release, info.score_files[0])
    folders = [release / d for d in (info.image_dir, *AGIQA_IMAGE_DIRS)]
    images = next((f for f in folders if f.is_dir()), folders[0])
    mos, std = f"mos_{column}", f"std_{column}"
    records = []
    for i, row in enumerate(read_csv_rows(path, ["name", "prompt", mos, std]), start=2):
        name = require_text(row.get("name"), path, i, "name")
        records.append(make_record(
            info, images / name, name, to_float(row.get(mos), path, i, mos),
            std=optional_float(row.get(std), path, i, std),
            group=cell_text(row.get("prompt")) or None, scene=cell_text(row.get("style")) or None))
    return records


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
