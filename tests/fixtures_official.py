"""Tiny releases in the exact official file formats, written into a folder for tests.

Each ``write_<dataset>(root, ...)`` creates that release's score files under ``root`` (in
the layout the official archive unpacks to) and returns ``root``, the folder to hand to
the parser. With ``images=True`` it also writes a tiny image wherever the release keeps
each listed image, so loader tests can use the same fixtures. The constants below hold
what the files say, for tests to compare parsed rows against.

Formats as the releases ship them: MATLAB v5 .mat with cell arrays of names (LIVE,
CLIVE), .xlsx with title rows and several sheets (CSIQ, SPAQ, CID2013), .xls (BID),
CSV with quoted headers or trailing empty columns (KonIQ, BIQ2021), CRLF text (TID2013).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

# ---- LIVE release 2: 982 entries by format (the folder of entry k is fixed by k) ------

LIVE_FOLDERS = (("jp2k", 227), ("jpeg", 233), ("wn", 174), ("gblur", 174), ("fastfading", 174))
LIVE_REFS = ("bikes.bmp", "building2.bmp", "buildings.bmp", "caps.bmp", "womanhat.bmp")
LIVE_ORG_ENTRIES = (0, 227, 460, 634, 808)  # the first entry of each folder: reference copies

# ---- CSIQ: sheet all_by_image, three title rows, table starting in column D ------------

CSIQ_HEADER = ("image", "dst_idx", "dst_type", "dst_lev", "dmos_std", "dmos")
CSIQ_ROWS = [  # image 1600 is a number in the official workbook
    (1600, 1, "noise", 1, 0.061, 0.062),
    (1600, 2, "jpeg", 3, 0.084, 0.413),
    ("aerial_city", 3, "jpeg 2000", 2, 0.052, 0.198),
    ("boston", 4, "fnoise", 5, 0.121, 0.644),
    ("bridge", 5, "blur", 4, 0.093, 0.585),
    ("cactus", 6, "contrast", 1, 0.037, 0.011),
]
CSIQ_FOLDERS = {"noise": ("awgn", "AWGN"), "jpeg": ("jpeg", "JPEG"),
                "jpeg 2000": ("jpeg2000", "jpeg2000"), "fnoise": ("fnoise", "fnoise"),
                "blur": ("blur", "BLUR"), "contrast": ("contrast", "contrast")}

# ---- TID2013: "mos name" lines, std in a second file --------------------------------

TID_ROWS = [(5.51429, "i01_01_1.bmp", 0.11752), (4.25, "i01_02_5.bmp", 0.20213),
            (3.6, "i25_17_3.bmp", 0.15), (6.10811, "I25_24_1.bmp", 0.13301)]

# ---- KADID-10k ------------------------------------------------------------------------

KADID_HEADER = ("dist_img", "ref_img", "dmos", "var")
KADID_ROWS = [("I01_01_01.png", "I01.png", 4.57, 0.496), ("I01_01_02.png", "I01.png", 4.33, 0.869),
              ("I02_17_05.png", "I02.png", 1.23, 0.25), ("I81_25_03.png", "I81.png", 2.9, 1.0)]

# ---- BID: header row, then image number, MOS, count, and the observers' grades --------

BID_HEADER = ("Image", "Average grade", "Number of grades", "Grade 1", "Grade 2", "Grade 3")
BID_ROWS = [(1, 4.33, 3, 4, 5, 4), (2, 0.33, 3, 0, 1, 0), (10, 2.5, 2, 2, 3, None),
            (586, 4.67, 3, 5, 5, 4)]

# ---- CLIVE: 7 training images first, then the rated ones ---------------------------

CLIVE_TRAIN = tuple(f"t{k}.bmp" for k in range(1, 8))
CLIVE_ROWS = [("10.bmp", 63.9634, 18.3762), ("100.bmp", 25.3353, 13.6514),
              ("1000.JPG", 50.2, 20.1)]

# ---- KonIQ-10k -----------------------------------------------------------------------

KONIQ_HEADER = ("image_name", "c1", "c2", "c3", "c4", "c5", "c_total", "MOS", "SD",
                "MOS_zscore")
KONIQ_ROWS = [("10004473376.jpg", 0, 0, 25, 73, 7, 105, 3.828571429, 0.527836, 77.38),
              ("10007357496.jpg", 3, 20, 60, 17, 0, 100, 2.91, 0.712, 54.12),
              ("10028549266.jpg", 1, 10, 50, 36, 3, 100, 3.3, 0.745, 64.5)]
KONIQ_SETS = {"10004473376.jpg": "training", "10007357496.jpg": "validation",
              "10028549266.jpg": "test"}

# ---- SPAQ ----------------------------------------------------------------------------

SPAQ_HEADER = ("Image name", "MOS", "Brightness", "Colorfulness", "Contrast", "Noisiness",
               "Sharpness")
SPAQ_ROWS = [("00001.jpg", 42.65, 43.2, 39.1, 45.0, 50.1, 40.0),
             ("00002.jpg", 75.5, 70.0, 72.3, 71.0, 77.7, 78.1),
             ("00003.jpg", 18.0, 20.1, 17.9, 22.4, 15.5, 12.0)]
SPAQ_SCENES = ("Animal", "Cityscape", "Human", "Indoor scene", "Landscape", "Night scene",
               "Plant", "Still-life", "Others")
SPAQ_SCENE_ROWS = {"00001.jpg": (0, 0, 1, 0, 1, 0, 0, 0, 0),  # Human and Landscape
                   "00002.jpg": (0, 0, 0, 0, 0, 1, 0, 0, 0),  # Night scene
                   "00003.jpg": (0, 0, 0, 0, 0, 0, 0, 0, 0)}  # none

# ---- CID2013: sheet "CID2013 MOS" ----------------------------------------------------

CID_HEADER = ("Source_ID", "Image set specific  MOS", "Realigned MOS")
CID_ROWS = [("IS_I_C01_D01", 3.1, 3.34364303351907), ("IS_I_C01_D02", 70.2, 71.1818902079248),
            ("IS_IV_C01_D12", -8.0, -9.54906308259536), ("IS_VI_C08_D14", 11.0, 10.4809695268716)]

# ---- PIPAL: one label file per reference ---------------------------------------------

PIPAL_LABELS = {"A0001": [("A0001_00_00.bmp", 1487.0986), ("A0001_01_03.bmp", 1251.4)],
                "A0002": [("A0002_10_01.bmp", 1603.25)]}

# ---- AGIQA-3K ------------------------------------------------------------------------

AGIQA_HEADER = ("name", "prompt", "adj1", "adj2", "style", "mos_quality", "std_quality",
                "mos_align", "std_align")
AGIQA_ROWS = [
    ("AttnGAN_normal_000.jpg", "statue of a man", "", "", "", 0.965602553, 0.223270101,
     0.40889324, 0.615607722),
    ("AttnGAN_normal_060.jpg", "artwork with only triangles, anime style", "", "",
     "anime style", 0.919776796, 0.719282241, 0.850496237, 0.842552058),
    ("DALLE2_normal_000.jpg", "statue of a man", "", "", "", 3.9, 0.61, 4.1, 0.5),
]

# ---- BIQ2021 -------------------------------------------------------------------------

BIQ_TRAIN = [("ss03 (3753).jpg", 0.8471), ("ss01 (1726).jpg", 0.2874)]
BIQ_TEST = [("ss02 (1014).jpg", 0.5012)]

# ---- generic manifest ----------------------------------------------------------------

MANIFEST_ROWS = [
    {"image": "imgs/a.png", "score": 3.5, "std": 0.4, "group": "g1", "scene": "indoor",
     "distortion": "blur", "split": "train"},
    {"image": "imgs/b.png", "score": 1.0, "std": "", "group": "g1", "scene": "",
     "distortion": "", "split": "test"},
    {"image": "imgs/c.png", "score": 4.5, "std": 0.2, "group": "g2", "scene": "outdoor",
     "distortion": "noise", "split": "validation"},
]


def write_images(paths: Iterable[Path], size: tuple[int, int] = (8, 6)) -> None:
    """A tiny solid-colour image at each path, in the format its extension names."""
    from PIL import Image

    for k, path in enumerate(paths):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, (37 * k % 256, 90, 160)).save(path)


def _write_csv(path: Path, header: Sequence, rows: Iterable[Sequence], **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, **kwargs)
        writer.writerow(header)
        writer.writerows(rows)


def _cell_array(names: Sequence[str], shape: tuple[int, int]) -> np.ndarray:
    """A MATLAB cell array of strings, as scipy.io.savemat writes one."""
    cells = np.empty(len(names), dtype=object)
    cells[:] = list(names)
    return cells.reshape(shape)


# ---- writers ---------------------------------------------------------------------------

def live_arrays() -> dict[str, np.ndarray]:
    """The 982-entry arrays :func:`write_live` stores (dmos_new, orgs, dmos_std, refs)."""
    k = np.arange(982)
    orgs = np.zeros(982)
    orgs[list(LIVE_ORG_ENTRIES)] = 1
    dmos = np.round(-2.0 + (k * 37 % 1000) / 1000 * 115.0, 4)
    dmos[orgs == 1] = 0.0  # reference copies have DMOS 0 in the release
    return {"dmos_new": dmos, "orgs": orgs, "dmos_std": 5.0 + (k % 10) * 0.5,
            "refs": np.array([LIVE_REFS[i % len(LIVE_REFS)] for i in k], dtype=object)}


def live_names() -> list[str]:
    """``<folder>/img<j>.bmp`` for each of the 982 entries, in file order."""
    return [f"{folder}/img{j}.bmp" for folder, n in LIVE_FOLDERS for j in range(1, n + 1)]


def write_live(root: Path, arrays: dict | None = None, drop: Sequence[str] = (),
               images: bool = False) -> Path:
    """dmos_realigned.mat {dmos_new, orgs, dmos_std} and refnames_all.mat {refnames_all}."""
    from scipy.io import savemat

    a = live_arrays() if arrays is None else arrays
    root.mkdir(parents=True, exist_ok=True)
    variables = {k: np.asarray(a[k], float)[None, :] for k in ("dmos_new", "orgs", "dmos_std")}
    savemat(root / "dmos_realigned.mat", {k: v for k, v in variables.items() if k not in drop})
    savemat(root / "refnames_all.mat",
            {"refnames_all": _cell_array(list(a["refs"]), (1, len(a["refs"])))})
    if images:
        write_images(root / n for n, org in zip(live_names(), a["orgs"]) if org == 0)
    return root


def write_csiq(root: Path, rows: Sequence[Sequence] = CSIQ_ROWS,
               header: Sequence[str] = CSIQ_HEADER, images: bool = False) -> Path:
    """csiq.DMOS.xlsx: a decoy sheet first, then ``all_by_image`` with its header in D4."""
    from openpyxl import Workbook

    book = Workbook()
    decoy = book.active
    decoy.title = "all_by_distortion"
    decoy.append(list(header))
    for row in reversed(rows):  # another order, so a parser reading this sheet fails
        decoy.append(list(row))
    sheet = book.create_sheet("all_by_image")
    sheet.append(["CSIQ image quality database: DMOS by image"])
    sheet.append(["Larson and Chandler, 2010"])
    sheet.append([])
    sheet.append([None, None, None, *header])
    for row in rows:
        sheet.append([None, None, None, *row])
    root.mkdir(parents=True, exist_ok=True)
    book.save(root / "csiq.DMOS.xlsx")
    if images:
        paths = []
        for image, _, kind, level, *_ in rows:
            folder, token = CSIQ_FOLDERS[kind]
            paths.append(root / "dst_imgs" / folder / f"{image}.{token}.{level}.png")
        write_images(paths)
    return root


def write_tid2013(root: Path, rows: Sequence[Sequence] = TID_ROWS, stds: bool = True,
                  images: bool = False) -> Path:
    """mos_with_names.txt ("mos name", CRLF lines) and mos_std.txt (one std per line)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "mos_with_names.txt").write_bytes(
        "".join(f"{r[0]} {r[1]}\r\n" for r in rows).encode())
    if stds:
        (root / "mos_std.txt").write_bytes("".join(f"{r[2]}\r\n" for r in rows).encode())
    if images:
        write_images(root / "distorted_images" / r[1] for r in rows)
    return root


def write_kadid10k(root: Path, rows: Sequence[Sequence] = KADID_ROWS,
                   header: Sequence[str] = KADID_HEADER, images: bool = False) -> Path:
    """dmos.csv (dist_img, ref_img, dmos, var) and images/."""
    _write_csv(root / "dmos.csv", header, rows)
    if images:
        write_images(root / "images" / r[0] for r in rows)
    return root


def write_bid(root: Path, rows: Sequence[Sequence] = BID_ROWS,
              header: Sequence[str] | None = BID_HEADER, images: bool = False) -> Path:
    """DatabaseGrades.xls (BIFF, written with xlwt) and ImageDatabase/DatabaseImage%04d.JPG."""
    import xlwt

    book = xlwt.Workbook()
    sheet = book.add_sheet("Plan1")
    table = ([list(header)] if header else []) + [list(r) for r in rows]
    for i, row in enumerate(table):
        for j, value in enumerate(row):
            if value is not None:
                sheet.write(i, j, value)
    root.mkdir(parents=True, exist_ok=True)
    book.save(str(root / "DatabaseGrades.xls"))
    if images:
        write_images(root / "ImageDatabase" / f"DatabaseImage{int(r[0]):04d}.JPG" for r in rows)
    return root


def write_clive(root: Path, rows: Sequence[Sequence] = CLIVE_ROWS, images: bool = False) -> Path:
    """The download folder: ChallengeDB_release/Data/All{Images,MOS,StdDev}_release.mat."""
    from scipy.io import savemat

    release = root / "ChallengeDB_release"
    data = release / "Data"
    data.mkdir(parents=True, exist_ok=True)
    names = list(CLIVE_TRAIN) + [r[0] for r in rows]
    mos = [50.0] * len(CLIVE_TRAIN) + [r[1] for r in rows]
    std = [10.0] * len(CLIVE_TRAIN) + [r[2] for r in rows]
    savemat(data / "AllImages_release.mat",
            {"AllImages_release": _cell_array(names, (len(names), 1))})
    savemat(data / "AllMOS_release.mat", {"AllMOS_release": np.array([mos])})
    savemat(data / "AllStdDev_release.mat", {"AllStdDev_release": np.array([std])})
    if images:
        write_images(release / "Images" / r[0] for r in rows)
    return root


def write_koniq(root: Path, rows: Sequence[Sequence] = KONIQ_ROWS,
                header: Sequence[str] = KONIQ_HEADER, sets: dict | None = KONIQ_SETS,
                images: bool = False) -> Path:
    """koniq10k_scores_and_distributions.csv (quoted fields) and, if ``sets``, the split file."""
    _write_csv(root / "koniq10k_scores_and_distributions.csv", header, rows,
               quoting=csv.QUOTE_NONNUMERIC)
    if sets is not None:
        _write_csv(root / "koniq10k_distributions_sets.csv",
                   ["image_name", "c1", "c2", "c3", "c4", "c5", "c_total", "MOS", "SD", "set"],
                   [[r[0], *(list(r[1:9]) + [""] * 8)[:8], sets[r[0]]]
                    for r in rows if r[0] in sets])
    if images:
        write_images(root / "1024x768" / r[0] for r in rows)
    return root


def write_spaq(root: Path, rows: Sequence[Sequence] = SPAQ_ROWS,
               header: Sequence[str] = SPAQ_HEADER, scenes: bool = True,
               images: bool = False) -> Path:
    """Annotations/MOS and Image attribute scores.xlsx (+ Scene category labels.xlsx)."""
    from openpyxl import Workbook

    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    book = Workbook()
    book.active.append(list(header))
    for row in rows:
        book.active.append(list(row))
    book.save(root / "Annotations" / "MOS and Image attribute scores.xlsx")
    if scenes:
        book = Workbook()
        book.active.append(["Image name", *SPAQ_SCENES])
        for row in rows:
            book.active.append([row[0], *SPAQ_SCENE_ROWS[row[0]]])
        book.save(root / "Annotations" / "Scene category labels.xlsx")
    if images:
        write_images(root / "TestImage" / r[0] for r in rows)
    return root


CID_FILE = "CID2013 data - version 12112014.xlsx"


def write_cid2013(root: Path, rows: Sequence[Sequence] = CID_ROWS,
                  header: Sequence[str] = CID_HEADER, sheet: str = "CID2013 MOS",
                  images: bool = False) -> Path:
    """The CID2013 workbook (a notes sheet, then ``sheet``) and IS<n>/co<c>/<id>.jpg."""
    from openpyxl import Workbook

    book = Workbook()
    book.active.title = "Read me"
    book.active.append(["CID2013 Camera Image Database, subjective data"])
    table = book.create_sheet(sheet)
    table.append(list(header))
    for row in rows:
        table.append(list(row))
    root.mkdir(parents=True, exist_ok=True)
    book.save(root / CID_FILE)
    if images:
        roman = {"I": 1, "II": 2, "III": 3, "IV": 4, "V": 5, "VI": 6}
        paths = []
        for source_id, *_ in rows:
            _, image_set, scene, _ = source_id.split("_")
            paths.append(root / f"IS{roman[image_set]}" / f"co{int(scene[1:])}" /
                         f"{source_id}.jpg")
        write_images(paths)
    return root


def write_pipal(root: Path, labels: dict = PIPAL_LABELS, images: bool = False) -> Path:
    """Train_Label/<ref>.txt with "dist_name,elo" lines, and Train_Dist/."""
    (root / "Train_Label").mkdir(parents=True, exist_ok=True)
    for ref, lines in labels.items():
        (root / "Train_Label" / f"{ref}.txt").write_text(
            "".join(f"{name},{elo}\n" for name, elo in lines))
    if images:
        write_images(root / "Train_Dist" / n for lines in labels.values() for n, _ in lines)
    return root


def write_agiqa3k(root: Path, rows: Sequence[Sequence] = AGIQA_ROWS,
                  header: Sequence[str] = AGIQA_HEADER, image_dir: str | None = "AGIQA-3K",
                  images: bool = False) -> Path:
    """data.csv and the image folder (named ``image_dir``; None leaves it out)."""
    _write_csv(root / "data.csv", header, rows)
    if image_dir is not None:
        (root / image_dir).mkdir(exist_ok=True)
        if images:
            write_images(root / image_dir / r[0] for r in rows)
    return root


def write_biq2021(root: Path, train: Sequence[Sequence] = BIQ_TRAIN,
                  test: Sequence[Sequence] = BIQ_TEST, images: bool = False) -> Path:
    """The two official CSVs; the train file has two trailing empty columns, as released."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "Train (Images and MOS).csv").write_text(
        "Image Name,MOS,,\n" + "".join(f"{n},{m},,\n" for n, m in train))
    (root / "Test (Images and MOS).csv").write_text(
        "Image Name,MOS\n" + "".join(f"{n},{m}\n" for n, m in test))
    if images:
        write_images(root / "Images" / n for n, _ in list(train) + list(test))
    return root


def write_manifest(root: Path, rows: Sequence[dict] = MANIFEST_ROWS, fmt: str = "csv",
                   file: str | None = None, images: bool = False) -> Path:
    """A generic manifest (``scores.csv`` or ``scores.json``); returns the file's path."""
    path = root / (file or f"scores.{fmt}")
    root.mkdir(parents=True, exist_ok=True)
    if fmt == "json":
        path.write_text(json.dumps([{k: v for k, v in r.items() if v != ""} for r in rows]))
    else:
        keys = list(dict.fromkeys(k for r in rows for k in r))
        _write_csv(path, keys, [[r.get(k, "") for k in keys] for r in rows])
    if images:
        write_images(root / r["image"] for r in rows)
    return path
