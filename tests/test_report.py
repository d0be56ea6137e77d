"""Reports of a real tiny run, a fabricated benchmark and a synthetic-benchmark folder."""

from __future__ import annotations

import argparse
import csv
import json
import re

import numpy as np
import pytest
from PIL import Image

from helpers import make_set
from mixiqa.config import config_from_dict
from mixiqa.errors import DataError
from mixiqa.experiment import run_experiment
from mixiqa.report import add_report_command, cmd_report, write_report
from mixiqa.report.render import Section, Table, render_html, render_markdown


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, one_thread):
    """A real two-split run on two tiny datasets, one of them DMOS-like (lower is better)."""
    root = tmp_path_factory.mktemp("data")
    alpha = make_set(root, "alpha", 30, lambda q: 1 + 4 * q, 0, size=64)           # MOS 1-5
    beta = make_set(root, "beta", 30, lambda q: 100 * (1 - q) ** 2, 1, size=64)    # DMOS 0-100
    beta["options"].update(higher_better=False, score_range=[0, 100])
    cfg = config_from_dict({
        "name": "tiny", "datasets": [alpha, beta],
        "split": {"protocol": "random", "ratios": [0.6, 0.2, 0.2], "seeds": [0, 1]},
        "model": {"backbone": "efficientnet_lite0", "weights": "offline", "freeze": True,
                  "pooling": "avg", "scales": [1.0], "feature_crop": 64,
                  "head_kwargs": {"hidden": [16]}},
        "method": {"name": "monotonic"},
        "train": {"epochs": 3, "batch_size": 8, "lr": 0.003, "workers": 0,
                  "cache_dir": str(root / "cache")}})
    out = tmp_path_factory.mktemp("run") / "run"
    run_experiment(cfg, out, log=lambda *a: None)
    return out


@pytest.fixture(scope="module")
def run_report(run_dir):
    return write_report(run_dir)


def image_sources(html: str) -> set[str]:
    return set(re.findall(r'<img src="([^"]+)"', html))


def assert_real_pngs(folder, names: set[str]) -> None:
    for name in names:
        path = folder / name
        assert path.stat().st_size > 5_000, name
        with Image.open(path) as im:
            assert im.format == "PNG" and min(im.size) > 200
            assert np.asarray(im.convert("L")).std() > 10, f"{name} looks blank"


def test_run_report_shows_every_plot_and_each_is_a_real_png(run_dir, run_report):
    assert run_report == run_dir / "report" / "report.html"
    html = run_report.read_text()
    on_disk = {f"plots/{p.name}" for p in (run_report.parent / "plots").glob("*.png")}
    assert image_sources(html) == on_disk
    assert on_disk == {"plots/mapper_curves.png", "plots/scatter.png",
                       "plots/training_curves.png"}
    assert_real_pngs(run_report.parent, on_disk)
    md = (run_report.parent / "report.md").read_text()
    assert set(re.findall(r"\]\((plots/[^)]+\.png)\)", md)) == on_disk


def test_run_report_tables_match_results_json(run_dir, run_report):
    summary = json.loads((run_dir / "results.json").read_text())
    html, md = run_report.read_text(), (run_report.parent / "report.md").read_text()
    for text in (re.sub(r"<[^>]+>", " ", html), md):     # HTML cells as plain text
        for ds, m in summary["per_dataset"].items():
            row = re.search(rf"{ds}\W+{m['n']}\W+{m['srcc']:.3f}\W+{m['plcc']:.3f}", text)
            assert row, f"no results row for {ds}"
        assert f"{summary['weighted']['srcc']:.3f}" in text
        for i, split in enumerate(summary["splits"]):       # the per-split table
            assert f"{split['test']['alpha']['srcc']:.3f}" in text
        assert "monotonic" in text and "efficientnet_lite0" in text and "[0, 1]" in text


def test_bench_report_draws_the_method_comparison(run_dir, tmp_path):
    summary = json.loads((run_dir / "results.json").read_text())
    bench = tmp_path / "bench"
    (bench / "cells").mkdir(parents=True)
    cells, raw = {}, []
    for method in ("monotonic", "naive"):                  # two "methods": the same run twice
        name = f"{method}__ab__random"
        (bench / "cells" / name).symlink_to(run_dir, target_is_directory=True)
        cells[name] = {"method": method, "group": "ab", "protocol": "random",
                       "per_dataset": summary["per_dataset"], "weighted": summary["weighted"],
                       "n_splits": 2, "seconds": 1.5}
        for s in summary["splits"]:
            raw += [{"method": method, "group": "ab", "protocol": "random", "seed": s["seed"],
                     "dataset": ds, **{k: m[k] for k in ("n", "srcc", "plcc", "krcc", "rmse")}}
                    for ds, m in s["test"].items()]
    (bench / "summary.json").write_text(json.dumps({"cells": cells}))
    with open(bench / "raw.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(raw[0]))
        w.writeheader()
        w.writerows(raw)
    html_path = write_report(bench, tmp_path / "out")
    html = html_path.read_text()
    shown = image_sources(html)
    assert {"plots/compare_random_ab.png", "plots/splits_random_ab.png",
            "plots/training_random_ab.png"} == shown
    assert shown == {f"plots/{p.name}" for p in (tmp_path / "out" / "plots").glob("*.png")}
    assert_real_pngs(tmp_path / "out", shown)
    assert "monotonic__ab__random" in html and "naive__ab__random" in html
    assert f"{summary['per_dataset']['beta']['srcc']:.3f}" in html


def test_synth_folder_charts_pooled_srcc_and_tolerates_missing_keys(tmp_path, capsys):
    folder = tmp_path / "synth"
    (folder / "mimi" / "split_00").mkdir(parents=True)
    (folder / "mimi" / "split_00" / "result.json").write_text(json.dumps(
        {"history": [{"epoch": 1, "loss": 2.0, "val_srcc": 0.5},
                     {"epoch": 2, "loss": 1.0, "val_srcc": 0.7}]}))
    (folder / "synth_results.json").write_text(json.dumps({"methods": {
        "mimi": {"alignment": {"pooled_srcc": 0.91,    # as mixiqa.synth.evaluation writes it
                               "per_dataset": {"s1": {"srcc_score": 0.95, "srcc_latent": 0.93}}},
                 "seconds": 3},
        "naive": {"pooled_srcc": 0.42, "per_dataset": {"s2": 0.9}},   # flat, as the brief says
        "broken": {"per_dataset": {"s1": "n/a"}},          # no pooled value: a row, no bar
    }}))
    parser = argparse.ArgumentParser()
    add_report_command(parser.add_subparsers())
    (tmp_path / "r" / "plots").mkdir(parents=True)
    (tmp_path / "r" / "plots" / "stale.png").write_bytes(b"old")
    args = parser.parse_args(["report", str(folder), "--out", str(tmp_path / "r")])
    assert args.func(args) == 0 and args.func is cmd_report
    assert "report.html" in capsys.readouterr().out
    html = (tmp_path / "r" / "report.html").read_text()
    shown = {"plots/synth_pooled_srcc.png", "plots/synth_training_curves.png"}
    assert image_sources(html) == shown
    assert not (tmp_path / "r" / "plots" / "stale.png").exists()
    assert_real_pngs(tmp_path / "r", shown)
    text = re.sub(r"<[^>]+>", " ", html)
    assert re.search(r"mimi\s+0\.910\s+0\.950\s+-\s+0\.930", text)      # s1, s2, s1 latent
    assert re.search(r"naive\s+0\.420\s+-\s+0\.900", text)
    assert re.search(r"broken\s+-\s+-\s+-", text)                      # nothing usable


def test_folders_that_are_neither_are_rejected(tmp_path, run_dir):
    with pytest.raises(DataError, match="results.json.*summary.json"):
        write_report(tmp_path)
    with pytest.raises(DataError, match="not a folder"):
        write_report(tmp_path / "missing")
    with pytest.raises(DataError, match="no split 7.*0, 1"):
        write_report(run_dir, tmp_path / "out", split=7)


def test_text_is_escaped_in_html_and_markdown():
    sec = Section("a <b> & c", facts=[("k", "<script>")],
                  tables=[Table(["x|y", "v"], [["<i>", "1|2"]], "cap <t>")])
    html = render_html("T <1>", "sub", [sec])
    assert "<script>" not in html and "&lt;script&gt;" in html and "a &lt;b&gt; &amp; c" in html
    assert "<i>" not in html and "T &lt;1&gt;" in html
    md = render_markdown("T", "sub", [sec])
    assert "| x\\|y | v |" in md and "| <i> | 1\\|2 |" in md


def test_finished_splits_are_keyed_by_seed_not_folder_number(tmp_path):
    from mixiqa.report.run import finished_splits

    for i, seed in enumerate([10, 12]):                  # seeds [10, 12] -> split_00, split_01
        (tmp_path / f"split_{i:02d}").mkdir()
        (tmp_path / f"split_{i:02d}" / "result.json").write_text(json.dumps({"seed": seed}))
    (tmp_path / "split_02").mkdir()                      # started, not finished
    assert finished_splits(tmp_path) == {10: tmp_path / "split_00", 12: tmp_path / "split_01"}


def test_a_missing_csv_is_a_data_error_naming_it(tmp_path):
    from mixiqa.report.run import read_rows

    with pytest.raises(DataError, match="split_00/predictions.csv.*re-run"):
        read_rows(tmp_path / "split_00" / "predictions.csv")
