"""The command line: datasets listing and inspection, errors with exit codes."""

from __future__ import annotations

import json
import shutil

from mixiqa.cli import main


def test_datasets_lists_every_catalog_entry(capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    for name in ["live", "csiq", "tid2013", "kadid10k", "bid", "clive", "koniq", "spaq",
                 "cid2013", "pipal", "agiqa3k", "biq2021", "csv"]:
        assert f"\n{name} " in out
    assert "13 datasets" in out
    assert main(["datasets", "--format", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 13


def test_unknown_dataset_exits_2_with_hint(capsys, tmp_path):
    assert main(["datasets", "inspect", "kadid", "--root", str(tmp_path)]) == 2
    assert "Did you mean 'kadid10k'" in capsys.readouterr().err


def test_inspect_shared_clive(shared_data, capsys):
    assert main(["datasets", "inspect", "clive", "--root", str(shared_data / "CLIVE")]) == 0
    out = capsys.readouterr().out
    assert "images present  627 of 1162" in out and "images missing  535" in out


def test_inspect_shared_biq2021_json(shared_data, capsys):
    assert main(["datasets", "inspect", "biq2021", "--root", str(shared_data / "BIQ2021"),
                 "--allow-missing", "--format", "json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert (s["present"], s["listed"]) == (4000, 12000)
    assert s["official_split"]["train"]["listed"] == 10000
    assert s["official_split"]["test"]["listed"] == 2000


def test_inspect_names_corrupt_jpeg(shared_data, tmp_path, capsys):
    src = shared_data / "BIQ2021"
    dst = tmp_path / "BIQ2021"
    (dst / "Images").mkdir(parents=True)
    for f in src.glob("*.csv"):
        shutil.copy(f, dst / f.name)
    names = sorted(p.name for p in (src / "Images").iterdir())[:4]
    for n in names:
        shutil.copy(src / "Images" / n, dst / "Images" / n)
    (dst / "Images" / names[1]).write_bytes((src / "Images" / names[1]).read_bytes()[:300])
    code = main(["datasets", "inspect", "biq2021", "--root", str(dst), "--allow-missing",
                 "--verify-images"])
    err = capsys.readouterr().err
    assert code == 1 and names[1] in err and "cannot be decoded" in err


def test_splits_command_writes_files(shared_data, tmp_path, capsys):
    assert main(["splits", "clive", "--root", str(shared_data / "CLIVE"), "--allow-missing",
                 "--n", "2", "--ratios", "0.8,0,0.2", "--out", str(tmp_path)]) == 0
    files = sorted(tmp_path.glob("split_*.json"))
    assert len(files) == 2
    a, b = (json.loads(f.read_text()) for f in files)
    assert a["seed"] == 0 and b["seed"] == 1 and a["test"] != b["test"]
    assert len(a["train"]) + len(a["test"]) == 627
