"""The loader: presence, missing-image policy, corrupt images, NaN and duplicate scores."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mixiqa.data.datasets import load_manifest, scan_release
from mixiqa.errors import ConfigError, DataError


def write_biq(root: Path, train_rows: list[str], test_rows: list[str],
              images: list[str] = ()) -> Path:
    """A tiny BIQ2021 release in its official CSV format, with solid-colour JPEGs."""
    from PIL import Image

    (root / "Images").mkdir(parents=True)
    (root / "Train (Images and MOS).csv").write_text(
        "Image Name,MOS,,\n" + "".join(f"{r},,\n" for r in train_rows))
    (root / "Test (Images and MOS).csv").write_text(
        "Image Name,MOS\n" + "".join(f"{r}\n" for r in test_rows))
    for i, name in enumerate(images):
        Image.new("RGB", (16, 12), (20 * i, 100, 50)).save(root / "Images" / name)
    return root


def test_missing_images_error_names_count_and_files(tmp_path):
    root = write_biq(tmp_path / "b", ["ss01 (1).jpg,0.5", "ss01 (2).jpg,0.7"],
                     ["ss02 (1).jpg,0.1"], images=["ss01 (1).jpg"])
    with pytest.raises(DataError) as e:
        load_manifest("biq2021", root)
    msg = str(e.value)
    assert "2 of 3" in msg and "ss01 (2).jpg" in msg and "--allow-missing" in msg


def test_allow_missing_keeps_present_and_warns(tmp_path):
    root = write_biq(tmp_path / "b", ["ss01 (1).jpg,0.5", "ss01 (2).jpg,0.7"],
                     ["ss02 (1).jpg,0.1"], images=["ss01 (1).jpg", "ss02 (1).jpg"])
    with pytest.warns(UserWarning, match="dropped 1 of 3"):
        m = load_manifest("biq2021", root, allow_missing=True)
    assert [r.name for r in m] == ["ss01 (1).jpg", "ss02 (1).jpg"]
    assert [r.split for r in m] == ["train", "test"]


def test_case_insensitive_file_match(tmp_path):
    root = write_biq(tmp_path / "b", ["ss02 (1014).jpg,0.5"], ["ss01 (3).jpg,0.2"],
                     images=["ss02 (1014).JPG", "ss01 (3).jpg"])
    m = load_manifest("biq2021", root)
    assert Path(m[0].path).name == "ss02 (1014).JPG"


def test_nan_and_non_numeric_scores_name_file_and_row(tmp_path):
    root = write_biq(tmp_path / "a", ["ss01 (1).jpg,0.5", "ss01 (2).jpg,nan"], [])
    with pytest.raises(DataError, match=r"Train \(Images and MOS\)\.csv, row 3"):
        scan_release("biq2021", root)
    root = write_biq(tmp_path / "b", ["ss01 (1).jpg,good"], [])
    with pytest.raises(DataError, match=r"row 2: MOS 'good' is not a number"):
        scan_release("biq2021", root)


def test_duplicate_names_are_rejected(tmp_path):
    root = write_biq(tmp_path / "b", ["ss01 (1).jpg,0.5"], ["ss01 (1).jpg,0.6"])
    with pytest.raises(DataError, match="listed twice"):
        scan_release("biq2021", root)


def test_wrong_format_score_file(tmp_path):
    root = tmp_path / "b"
    root.mkdir()
    (root / "Train (Images and MOS).csv").write_text("name,score\nx.jpg,1\n")
    (root / "Test (Images and MOS).csv").write_text("Image Name,MOS\n")
    with pytest.raises(DataError, match="expected columns"):
        scan_release("biq2021", root)


def test_unknown_dataset_and_option(tmp_path):
    with pytest.raises(ConfigError, match="Did you mean 'clive'"):
        load_manifest("clve", tmp_path)
    with pytest.raises(ConfigError, match="no option"):
        load_manifest("biq2021", tmp_path, colour="red")


def test_missing_root_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_manifest("biq2021", tmp_path / "nowhere")


def test_corrupt_image_is_named(tmp_path):
    root = write_biq(tmp_path / "b", ["ss01 (1).jpg,0.5", "ss01 (2).jpg,0.7"], [],
                     images=["ss01 (1).jpg", "ss01 (2).jpg"])
    bad = root / "Images" / "ss01 (2).jpg"
    bad.write_bytes(bad.read_bytes()[:40])  # truncated JPEG
    with pytest.raises(DataError, match=r"ss01 \(2\)\.jpg"):
        load_manifest("biq2021", root, verify_images=True)
    assert len(load_manifest("biq2021", root)) == 2  # without verification it still lists both


# ---- the real subsets ------------------------------------------------------------------

def test_shared_clive_counts(shared_data):
    scan = scan_release("clive", shared_data / "CLIVE")
    assert (len(scan.listed), len(scan.present)) == (1162, 627)
    assert not any(r.name.startswith("t") and r.name[1:2].isdigit() for r in scan.listed)
    s = scan.summary()
    assert 3.4 < s["observed_range"][0] < 3.5 and 92 < s["observed_range"][1] < 93
    assert all(r.std is not None and r.std > 0 for r in scan.present)


def test_shared_biq2021_counts(shared_data):
    scan = scan_release("biq2021", shared_data / "BIQ2021")
    assert (len(scan.listed), len(scan.present)) == (12000, 4000)
    splits = scan.summary()["official_split"]
    assert splits["train"]["listed"] == 10000 and splits["test"]["listed"] == 2000
    assert splits["train"]["present"] + splits["test"]["present"] == 4000
    assert {r.scene for r in scan.present} == {"ss01", "ss02"}


def test_corrupt_jpeg_in_copy_of_shared_clive(shared_data, tmp_path):
    src = shared_data / "CLIVE" / "ChallengeDB_release"
    dst = tmp_path / "CLIVE" / "ChallengeDB_release"
    shutil.copytree(src / "Data", dst / "Data")
    (dst / "Images").mkdir()
    names = sorted(p.name for p in (src / "Images").iterdir())[:6]
    for n in names:
        shutil.copy(src / "Images" / n, dst / "Images" / n)
    (dst / "Images" / names[3]).write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DataError) as e:
        load_manifest("clive", tmp_path / "CLIVE", allow_missing=True, verify_images=True)
    assert names[3] in str(e.value) and "1 image file(s)" in str(e.value)
