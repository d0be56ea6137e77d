"""Reading official score files: locating a release, MATLAB, CSV, text and spreadsheet
files, and cells checked into numbers and names. Errors name the file, row and fix.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Iterator

import numpy as np

from mixiqa.data.catalog import DatasetInfo
from mixiqa.data.manifest import Record
from mixiqa.errors import DataError


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
        number = isinstance(value, (int, float, np.number))
        x = float(value) if number else float(str(value).strip())
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


