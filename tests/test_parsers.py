"""The official-format parsers, on tiny fixture releases written in each exact format."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from fixtures_official import (
    AGIQA_ROWS, BID_ROWS, BIQ_TEST, BIQ_TRAIN, CID_FILE, CID_ROWS, CLIVE_ROWS, CSIQ_ROWS,
    KADID_HEADER, KADID_ROWS, KONIQ_HEADER, KONIQ_ROWS, LIVE_FOLDERS, LIVE_ORG_ENTRIES,
    MANIFEST_ROWS, PIPAL_LABELS, SPAQ_HEADER, SPAQ_ROWS, TID_ROWS, live_arrays, live_names,
    write_agiqa3k, write_bid, write_biq2021, write_cid2013, write_clive, write_csiq,
    write_kadid10k, write_koniq, write_live, write_manifest, write_pipal, write_spaq,
    write_tid2013)

from mixiqa.data.catalog import dataset_info
from mixiqa.data.parsers import PARSERS
from mixiqa.errors import ConfigError, DataError


def parse(dataset: str, root: Path, /, **options):
    """Call a parser as the loader does: the catalog's default options, then overrides."""
    info = dataset_info(dataset)
    return PARSERS.get(dataset)(root, info, **{**info.options, **options})


def column(records, field: str) -> list:
    return [getattr(r, field) for r in records]


# ---- one test per format: names, scores, std, groups, labels, splits, paths ----------

def test_live_drops_reference_copies_and_maps_entries_to_folders(tmp_path):
    root = write_live(tmp_path / "live")
    records = parse("live", root)
    a, names = live_arrays(), live_names()
    kept = [k for k in range(982) if k not in LIVE_ORG_ENTRIES]
    assert len(records) == 982 - len(LIVE_ORG_ENTRIES) == 977
    assert column(records, "name") == [names[k] for k in kept]
    assert np.allclose(column(records, "score"), a["dmos_new"][kept])
    assert np.allclose(column(records, "std"), a["dmos_std"][kept])
    assert column(records, "group") == [a["refs"][k] for k in kept]
    first = records[0]  # entry 0 is a reference copy: the first kept one is jp2k/img2.bmp
    assert first.name == "jp2k/img2.bmp" and first.distortion == "jp2k"
    assert first.path == str(root.absolute() / "jp2k" / "img2.bmp")
    assert records[-1].name == "fastfading/img174.bmp"
    counts = {f: column(records, "distortion").count(f) for f, _ in LIVE_FOLDERS}
    assert counts == {f: n - 1 for f, n in LIVE_FOLDERS}
    assert not first.higher_better and (first.score_min, first.score_max) == (-2.6, 114.4)


def test_csiq_reads_all_by_image_below_title_rows(tmp_path):
    records = parse("csiq", write_csiq(tmp_path / "csiq"))
    assert column(records, "name") == [
        "1600.AWGN.1.png", "1600.JPEG.3.png", "aerial_city.jpeg2000.2.png",
        "boston.fnoise.5.png", "bridge.BLUR.4.png", "cactus.contrast.1.png"]
    assert column(records, "score") == [r[5] for r in CSIQ_ROWS]
    assert column(records, "std") == [r[4] for r in CSIQ_ROWS]
    assert column(records, "group") == ["1600", "1600", "aerial_city", "boston", "bridge",
                                        "cactus"]
    assert column(records, "distortion") == ["awgn", "jpeg", "jpeg2000", "fnoise", "blur",
                                             "contrast"]
    assert records[2].path == str((tmp_path / "csiq" / "dst_imgs" / "jpeg2000" /
                                   "aerial_city.jpeg2000.2.png").absolute())
    assert all(not r.higher_better and (r.score_min, r.score_max) == (0, 1) for r in records)


def test_tid2013_groups_case_variants_and_reads_std(tmp_path):
    root = write_tid2013(tmp_path / "tid")
    records = parse("tid2013", root)
    assert column(records, "name") == [r[1] for r in TID_ROWS]
    assert column(records, "score") == [r[0] for r in TID_ROWS]
    assert column(records, "std") == [r[2] for r in TID_ROWS]
    assert column(records, "group") == ["I01", "I01", "I25", "I25"]
    assert column(records, "distortion") == ["01", "02", "17", "24"]
    assert records[0].path == str(root.absolute() / "distorted_images" / "i01_01_1.bmp")
    assert records[0].higher_better
    (root / "mos_std.txt").unlink()
    assert column(parse("tid2013", root), "std") == [None] * 4


def test_kadid10k_std_is_sqrt_var_and_distortion_is_middle_field(tmp_path):
    records = parse("kadid10k", write_kadid10k(tmp_path / "kadid"))
    assert column(records, "score") == [r[2] for r in KADID_ROWS]
    assert np.allclose(column(records, "std"), [math.sqrt(r[3]) for r in KADID_ROWS])
    assert column(records, "group") == ["I01.png", "I01.png", "I02.png", "I81.png"]
    assert column(records, "distortion") == ["01", "01", "17", "25"]
    assert Path(records[2].path).parts[-2:] == ("images", "I02_17_05.png")
    assert records[0].higher_better and (records[0].score_min, records[0].score_max) == (1, 5)


def test_bid_reads_xls_by_position_and_std_from_grades(tmp_path):
    records = parse("bid", write_bid(tmp_path / "bid"))
    assert column(records, "name") == ["DatabaseImage0001.JPG", "DatabaseImage0002.JPG",
                                       "DatabaseImage0010.JPG", "DatabaseImage0586.JPG"]
    assert column(records, "score") == [r[1] for r in BID_ROWS]
    expected_std = [np.std([g for g in r[3:] if g is not None], ddof=1) for r in BID_ROWS]
    assert np.allclose(column(records, "std"), expected_std)
    assert Path(records[3].path).parts[-2:] == ("ImageDatabase", "DatabaseImage0586.JPG")


def test_clive_drops_the_seven_training_images(tmp_path):
    records = parse("clive", write_clive(tmp_path / "clive"))
    assert column(records, "name") == [r[0] for r in CLIVE_ROWS]
    assert column(records, "score") == [r[1] for r in CLIVE_ROWS]
    assert column(records, "std") == [r[2] for r in CLIVE_ROWS]
    assert Path(records[0].path).parts[-3:] == ("ChallengeDB_release", "Images", "10.bmp")


def test_koniq_mos_and_zscore_columns_and_official_split(tmp_path):
    root = write_koniq(tmp_path / "koniq")
    records = parse("koniq", root)
    assert column(records, "score") == [r[7] for r in KONIQ_ROWS]
    assert column(records, "std") == [r[8] for r in KONIQ_ROWS]
    assert column(records, "split") == ["train", "val", "test"]
    assert (records[0].score_min, records[0].score_max) == (1, 5)
    z = parse("koniq", root, column="MOS_zscore")
    assert column(z, "score") == [r[9] for r in KONIQ_ROWS]
    assert column(z, "std") == [None] * 3 and (z[0].score_min, z[0].score_max) == (0, 100)
    assert Path(z[1].path).parts[-2:] == ("1024x768", "10007357496.jpg")
    no_split = write_koniq(tmp_path / "nosplit", sets=None)
    assert column(parse("koniq", no_split), "split") == [None] * 3
    with pytest.raises(ConfigError, match="MOS_zscore"):
        parse("koniq", root, column="mos")


def test_spaq_scene_is_first_marked_category(tmp_path):
    root = write_spaq(tmp_path / "spaq")
    records = parse("spaq", root)
    assert column(records, "name") == [r[0] for r in SPAQ_ROWS]
    assert column(records, "score") == [r[1] for r in SPAQ_ROWS]
    assert column(records, "scene") == ["Human", "Night scene", None]
    assert Path(records[0].path).parts[-2:] == ("TestImage", "00001.jpg")
    (root / "Annotations" / "Scene category labels.xlsx").unlink()
    assert column(parse("spaq", root), "scene") == [None] * 3


def test_cid2013_paths_from_source_id_and_scene_groups(tmp_path):
    root = write_cid2013(tmp_path / "cid")
    records = parse("cid2013", root)
    assert column(records, "name") == [r[0] for r in CID_ROWS]
    assert column(records, "score") == [r[2] for r in CID_ROWS]  # Realigned, not per-set
    assert column(records, "group") == ["C01", "C01", "C01", "C08"]
    assert column(records, "scene") == column(records, "group")
    assert [Path(r.path).relative_to(root.absolute()).as_posix() for r in records] == [
        "IS1/co1/IS_I_C01_D01.jpg", "IS1/co1/IS_I_C01_D02.jpg",
        "IS4/co1/IS_IV_C01_D12.jpg", "IS6/co8/IS_VI_C08_D14.jpg"]
    assert records[2].score < 0 and records[2].score >= records[2].score_min


def test_pipal_one_label_file_per_reference(tmp_path):
    records = parse("pipal", write_pipal(tmp_path / "pipal"))
    expected = [(ref, n, elo) for ref, lines in PIPAL_LABELS.items() for n, elo in lines]
    assert [(r.group, r.name, r.score) for r in records] == expected
    assert column(records, "distortion") == ["00", "01", "10"]
    assert Path(records[0].path).parts[-2:] == ("Train_Dist", "A0001_00_00.bmp")


def test_agiqa3k_quality_and_align_columns_groups_by_prompt(tmp_path):
    root = write_agiqa3k(tmp_path / "agiqa")
    quality = parse("agiqa3k", root)
    assert column(quality, "score") == [r[5] for r in AGIQA_ROWS]
    assert column(quality, "std") == [r[6] for r in AGIQA_ROWS]
    assert quality[0].group == quality[2].group == "statue of a man" != quality[1].group
    assert column(quality, "scene") == [None, "anime style", None]
    assert Path(quality[0].path).parts[-2:] == ("AGIQA-3K", "AttnGAN_normal_000.jpg")
    align = parse("agiqa3k", root, column="align")
    assert column(align, "score") == [r[7] for r in AGIQA_ROWS]
    assert column(align, "std") == [r[8] for r in AGIQA_ROWS]
    plain = parse("agiqa3k", write_agiqa3k(tmp_path / "plain", image_dir=None))
    assert Path(plain[0].path).parent.name == "images"  # the catalog's default folder
    with pytest.raises(ConfigError, match="align"):
        parse("agiqa3k", root, column="mos")


def test_biq2021_official_split_and_subset_scenes(tmp_path):
    records = parse("biq2021", write_biq2021(tmp_path / "biq"))
    assert [(r.name, r.score) for r in records] == BIQ_TRAIN + BIQ_TEST
    assert column(records, "split") == ["train", "train", "test"]
    assert column(records, "scene") == ["ss03", "ss01", "ss02"]


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_generic_manifest_csv_and_json(tmp_path, fmt):
    path = write_manifest(tmp_path / "mine", fmt=fmt)
    records = parse("csv", tmp_path / "mine", file=path.name, name="mydata")
    assert column(records, "name") == [r["image"] for r in MANIFEST_ROWS]
    assert column(records, "score") == [3.5, 1.0, 4.5]
    assert column(records, "std") == [0.4, None, 0.2]
    assert column(records, "group") == ["g1", "g1", "g2"]
    assert column(records, "scene") == ["indoor", None, "outdoor"]
    assert column(records, "distortion") == ["blur", None, "noise"]
    assert column(records, "split") == ["train", "test", "val"]
    assert {r.dataset for r in records} == {"mydata"}
    assert records[0].path == str((tmp_path / "mine" / "imgs" / "a.png").absolute())
    assert (records[0].score_min, records[0].score_max) == (1.0, 4.5)  # observed range
    assert records[0].higher_better


def test_generic_manifest_options(tmp_path):
    path = write_manifest(tmp_path / "mine")
    records = parse("csv", tmp_path / "mine", file=str(path.absolute()),
                    score_range="0,10", higher_better="false")
    assert (records[0].score_min, records[0].score_max) == (0, 10)
    assert not records[0].higher_better and records[0].dataset == "csv"
    with pytest.raises(ConfigError, match="file="):
        parse("csv", tmp_path / "mine")
    with pytest.raises(DataError, match="does not exist"):
        parse("csv", tmp_path / "mine", file="nope.csv")
    with pytest.raises(ConfigError, match="two numbers"):
        parse("csv", tmp_path / "mine", file=path.name, score_range="0-10")
    with pytest.raises(ConfigError, match="true or false"):
        parse("csv", tmp_path / "mine", file=path.name, higher_better="maybe")
    bad = [dict(MANIFEST_ROWS[0], split="holdout")]
    write_manifest(tmp_path / "bad", bad)
    with pytest.raises(DataError, match=r"scores\.csv, row 2: split 'holdout'"):
        parse("csv", tmp_path / "bad", file="scores.csv")


# ---- malformed files: the message names the file, the row and the fix ----------------

def _bad_score(name: str, tmp: Path) -> Path:
    """A release of ``name`` whose second image has a non-numeric (or NaN) score."""
    if name == "live":
        a = live_arrays()
        a["dmos_new"][5] = np.nan
        return write_live(tmp, arrays=a)
    if name == "clive":
        return write_clive(tmp, [CLIVE_ROWS[0], ("x.bmp", float("nan"), 1.0)])
    writers = {
        "csiq": lambda: write_csiq(tmp, [CSIQ_ROWS[0], (*CSIQ_ROWS[1][:5], "n/a")]),
        "tid2013": lambda: write_tid2013(tmp, [TID_ROWS[0], ("n/a", *TID_ROWS[1][1:])]),
        "kadid10k": lambda: write_kadid10k(
            tmp, [KADID_ROWS[0], (*KADID_ROWS[1][:2], "n/a", 0.2)]),
        "bid": lambda: write_bid(tmp, [BID_ROWS[0], (2, "n/a", 3, 1, 2, 3)]),
        "koniq": lambda: write_koniq(tmp, [KONIQ_ROWS[0], (*KONIQ_ROWS[1][:7], "n/a",
                                                           *KONIQ_ROWS[1][8:])]),
        "spaq": lambda: write_spaq(tmp, [SPAQ_ROWS[0], ("00002.jpg", "n/a", *SPAQ_ROWS[1][2:])]),
        "cid2013": lambda: write_cid2013(tmp, [CID_ROWS[0], (CID_ROWS[1][0], 1.0, "n/a")]),
        "pipal": lambda: write_pipal(tmp, {"A0001": [("A0001_00_00.bmp", 1400.0),
                                                     ("A0001_00_01.bmp", "n/a")]}),
        "agiqa3k": lambda: write_agiqa3k(tmp, [AGIQA_ROWS[0], (*AGIQA_ROWS[1][:5], "n/a",
                                                               *AGIQA_ROWS[1][6:])]),
        "biq2021": lambda: write_biq2021(tmp, [BIQ_TRAIN[0], ("ss01 (2).jpg", "n/a")], []),
        "csv": lambda: write_manifest(tmp, [MANIFEST_ROWS[0], dict(MANIFEST_ROWS[1],
                                                                   score="n/a")]).parent,
    }
    return writers[name]()


BAD_SCORE_WHERE = {  # dataset -> (file named in the message, row of the bad score)
    "live": ("dmos_realigned.mat", 6), "clive": ("AllMOS_release.mat", 9),
    "csiq": ("csiq.DMOS.xlsx", 6), "tid2013": ("mos_with_names.txt", 2),
    "kadid10k": ("dmos.csv", 3), "bid": ("DatabaseGrades.xls", 3),
    "koniq": ("koniq10k_scores_and_distributions.csv", 3),
    "spaq": ("MOS and Image attribute scores.xlsx", 3), "cid2013": (CID_FILE, 3),
    "pipal": ("A0001.txt", 2), "agiqa3k": ("data.csv", 3),
    "biq2021": ("Train (Images and MOS).csv", 3), "csv": ("scores.csv", 3),
}


@pytest.mark.parametrize("name", sorted(BAD_SCORE_WHERE))
def test_non_numeric_score_names_file_and_row(tmp_path, name):
    root = _bad_score(name, tmp_path / name)
    options = {"file": "scores.csv"} if name == "csv" else {}
    with pytest.raises(DataError) as e:
        parse(name, root, **options)
    file, row = BAD_SCORE_WHERE[name]
    assert file in str(e.value) and f"row {row}" in str(e.value)
    assert "not a number" in str(e.value) or "finite" in str(e.value)


def _missing_column(name: str, tmp: Path) -> Path:
    """A release of ``name`` whose score file lacks its score column (or variable)."""
    if name == "live":
        return write_live(tmp, drop=("orgs",))
    if name == "tid2013":  # a line with the score but no name
        return write_tid2013(tmp, [TID_ROWS[0], (4.2, "")], stds=False)
    if name == "pipal":
        return write_pipal(
            tmp, {"A0001": [("A0001_00_00.bmp", 1400.0), ("A0001_00_01.bmp", "")]})
    if name == "bid":  # only the image-number column
        return write_bid(tmp, [(1,), (2,)], header=("Image",))
    writers = {
        "csiq": lambda: write_csiq(tmp, [r[:5] for r in CSIQ_ROWS], header=CSIQ_ROWS_HEADER5),
        "kadid10k": lambda: write_kadid10k(tmp, [r[:3] for r in KADID_ROWS],
                                           header=KADID_HEADER[:3]),
        "koniq": lambda: write_koniq(tmp, [r[:8] for r in KONIQ_ROWS], header=KONIQ_HEADER[:8]),
        "spaq": lambda: write_spaq(tmp, [(r[0], *r[2:]) for r in SPAQ_ROWS],
                                   header=(SPAQ_HEADER[0], *SPAQ_HEADER[2:])),
        "cid2013": lambda: write_cid2013(tmp, [r[:2] for r in CID_ROWS],
                                         header=("Source_ID", "Image set specific  MOS")),
        "agiqa3k": lambda: write_agiqa3k(tmp, [r[:5] for r in AGIQA_ROWS],
                                         header=("name", "prompt", "adj1", "adj2", "style")),
    }
    return writers[name]()


CSIQ_ROWS_HEADER5 = ("image", "dst_idx", "dst_type", "dst_lev", "dmos_std")
MISSING_WHERE = {  # dataset -> (file, words the message must hold)
    "live": ("dmos_realigned.mat", "'orgs'"), "tid2013": ("mos_with_names.txt", "row 2"),
    "pipal": ("A0001.txt", "row 2"), "bid": ("DatabaseGrades.xls", "row 2"),
    "csiq": ("csiq.DMOS.xlsx", "rows 1-20"), "kadid10k": ("dmos.csv", "row 1"),
    "koniq": ("koniq10k_scores_and_distributions.csv", "row 1"),
    "spaq": ("MOS and Image attribute scores.xlsx", "rows 1-20"),
    "cid2013": (CID_FILE, "rows 1-20"), "agiqa3k": ("data.csv", "row 1"),
}


@pytest.mark.parametrize("name", sorted(MISSING_WHERE))
def test_missing_column_names_file_and_row(tmp_path, name):
    with pytest.raises(DataError) as e:
        parse(name, _missing_column(name, tmp_path / name))
    file, where = MISSING_WHERE[name]
    assert file in str(e.value) and where in str(e.value)


def test_format_specific_errors(tmp_path):
    with pytest.raises(DataError, match=r"dst_type 'gamma' is not one of"):
        parse("csiq", write_csiq(tmp_path / "c", [(1600, 1, "gamma", 1, 0.1, 0.2)]))
    with pytest.raises(DataError, match=r"Source_ID 'IS_VII_C01_D01'.*IS_<I..VI>"):
        parse("cid2013", write_cid2013(tmp_path / "d", [("IS_VII_C01_D01", 1.0, 2.0)]))
    with pytest.raises(DataError, match=r"no sheet 'CID2013 MOS'"):
        parse("cid2013", write_cid2013(tmp_path / "e", sheet="MOS"))
    with pytest.raises(DataError, match=r"982"):
        a = {k: v[:900] for k, v in live_arrays().items()}
        parse("live", write_live(tmp_path / "f", arrays=a))
    root = write_tid2013(tmp_path / "g")
    (root / "mos_std.txt").write_text("0.1\n")
    with pytest.raises(DataError, match=r"1 values for 4 images"):
        parse("tid2013", root)
    sets = dict(zip([r[0] for r in KONIQ_ROWS], ["training", "holdout", "test"]))
    with pytest.raises(DataError, match=r"koniq10k_distributions_sets.csv, row 3: set"):
        parse("koniq", write_koniq(tmp_path / "h", sets=sets))
    with pytest.raises(DataError, match=r"var -1.0 is negative"):
        parse("kadid10k", write_kadid10k(tmp_path / "i", [("I01_01_01.png", "I01.png", 3, -1)]))


# ---- every parser: contract checks and fixture/path consistency -----------------------

WRITERS = {"live": write_live, "csiq": write_csiq, "tid2013": write_tid2013,
           "kadid10k": write_kadid10k, "bid": write_bid, "clive": write_clive,
           "koniq": write_koniq, "spaq": write_spaq, "cid2013": write_cid2013,
           "pipal": write_pipal, "agiqa3k": write_agiqa3k, "biq2021": write_biq2021}


def test_every_catalogued_dataset_has_a_parser_and_a_fixture():
    assert set(PARSERS.names()) == set(WRITERS) | {"csv"}


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_parsed_rows_meet_the_contract(tmp_path, name):
    root = WRITERS[name](tmp_path / name, images=True)
    records = parse(name, root)
    info = dataset_info(name)
    assert len({r.name for r in records}) == len(records)
    assert all(Path(r.path).is_absolute() and Path(r.path).is_file() for r in records)
    assert {r.dataset for r in records} == {name}
    assert {r.higher_better for r in records} == {info.higher_better}
    assert all(r.score_min <= r.score <= r.score_max for r in records)
    if info.content_groups:
        assert all(r.group for r in records)


def test_parse_from_parent_folder(tmp_path):
    """Users may point at the folder above the release (``KADID/`` holding ``kadid10k/``)."""
    write_kadid10k(tmp_path / "KADID" / "kadid10k")
    records = parse("kadid10k", tmp_path / "KADID")
    assert Path(records[0].path).parent == (tmp_path / "KADID" / "kadid10k" / "images")


# ---- the real subsets in ../shared/data -------------------------------------------------

@pytest.mark.shared_data
def test_shared_clive_score_files(shared_data):
    records = parse("clive", shared_data / "CLIVE")
    assert len(records) == 1162
    assert not any(re.fullmatch(r"t\d\.bmp", r.name) for r in records)  # t1..t7 dropped
    assert 3.4 < min(column(records, "score")) and max(column(records, "score")) < 92.5
    assert all(r.std is not None and r.std > 0 for r in records)


@pytest.mark.shared_data
def test_shared_biq2021_score_files(shared_data):
    records = parse("biq2021", shared_data / "BIQ2021")
    splits = column(records, "split")
    assert len(records) == 12000
    assert (splits.count("train"), splits.count("test")) == (10000, 2000)
    assert all(0 <= r.score <= 1 for r in records)
