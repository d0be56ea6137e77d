"""Parsers of datasets made from reference images or prompts: LIVE, CSIQ, TID2013, KADID-10k,
PIPAL, AGIQA-3K. ``group`` is the reference (or prompt), so content-aware splits hold.
"""

from __future__ import annotations

import math
from pathlib import Path

from mixiqa.data.catalog import DatasetInfo
from mixiqa.data.manifest import Record
from mixiqa.data.parsers import PARSERS
from mixiqa.data.parsers.readers import (cell_text, load_mat, locate_release, make_record,
                                         mat_field, mat_strings, mat_vector, optional_float,
                                         read_csv_rows, require_file, require_text, sheet_rows,
                                         text_lines, to_float)
from mixiqa.errors import ConfigError, DataError

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


