"""The bench harness on tiny generated data: grid, shared splits, tables, resume, refusals."""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from collections import Counter

import numpy as np
import pytest
import yaml

from helpers import make_set
from mixiqa import experiment
from mixiqa.bench import (RUNNERS, add_bench_command, load_bench_config, no_features,
                          run_bench)
from mixiqa.errors import ConfigError
from mixiqa.evaluate import evaluate
from mixiqa.train import oriented

pytestmark = pytest.mark.usefixtures("one_thread")

CALLS: Counter = Counter()          # runner calls per cell folder name
TEST_KEYS: dict = {}                # cell folder name -> test keys of each split it got
BOOM = {"on": False}


@RUNNERS.register("test-oracle")
@no_features
def oracle_runner(cfg, prep, splits, out, resume, device):
    """Noisy true scores as predictions: fast, and needs no backbone."""
    assert prep.feats is None and prep.backbone is None
    CALLS[out.name] += 1
    TEST_KEYS[out.name] = [list(s.test) for s in splits]
    results = []
    for s in splits:
        test = s.apply(prep.manifest)[2]
        names = np.array([r.dataset for r in test])
        metrics = {}
        for n in dict.fromkeys(names):
            y = oriented(test)[names == n]
            q = y + np.random.default_rng(s.seed).normal(0, 0.5 * y.std(), len(y))
            metrics[n] = {**evaluate(q, y, fit="linear").as_dict(), "n": len(y)}
        results.append({"seed": s.seed, "protocol": s.protocol, "method": "oracle",
                        "test": metrics, "val_srcc": None, "selected": "last", "history": []})
    return results


@RUNNERS.register("test-boom")
@no_features
def boom_runner(cfg, prep, splits, out, resume, device):
    if BOOM["on"]:
        raise KeyboardInterrupt("simulated interruption")
    return oracle_runner(cfg, prep, splits, out, resume, device)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A folder with a base experiment config over two tiny datasets (alpha MOS, beta DMOS)."""
    root = tmp_path_factory.mktemp("benchdata")
    a = make_set(root, "alpha", 30, lambda q: 1 + 4 * q, 0, size=48)
    b = make_set(root, "beta", 30, lambda q: 100 * (1 - q) ** 2, 1, size=48)
    b["options"].update(higher_better=False, score_range=[0, 100])
    exp = {"name": "tiny", "datasets": [a, b],
           "model": {"backbone": "efficientnet_lite0", "weights": "offline", "freeze": True,
                     "pooling": "avg", "scales": [1.0], "feature_crop": 32,
                     "head_kwargs": {"hidden": [8]}},
           "train": {"epochs": 2, "batch_size": 8, "lr": 0.003, "workers": 0,
                     "device": "cpu", "cache_dir": str(root / "cache")}}
    (root / "base.yaml").write_text(yaml.safe_dump(exp))
    return root


def write_bench(folder, **changes) -> str:
    doc = {"name": "t", "base": "base.yaml",
           "methods": [{"label": "naive", "set": {"method.name": "naive"}},
                       {"label": "mono", "set": {"method.name": "monotonic"}},
                       {"label": "oracle", "runner": "test-oracle"}],
           "datasets": [["alpha", "beta"], ["alpha"]],
           "protocols": [{"name": "r2", "protocol": "random", "seeds": 2},
                         {"name": "r1", "protocol": "random", "ratios": [0.5, 0.25, 0.25],
                          "seeds": [7]}],
           "set": {"train.epochs": 2}}
    doc.update(changes)
    path = folder / f"bench_{abs(hash(json.dumps(doc, sort_keys=True))) % 10**8}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


@pytest.fixture(scope="module")
def finished(base, tmp_path_factory):
    """The 3 methods x 2 groups x 2 protocols grid, run once; prepare() calls counted."""
    out = tmp_path_factory.mktemp("bench") / "out"
    prepared = []
    real = experiment.prepare
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(experiment, "prepare",
                   lambda cfg, *a, **k: prepared.append(len(cfg.datasets)) or real(cfg, *a, **k))
        path = write_bench(base)
        summary = run_bench(load_bench_config(path), out, log=lambda *a: None)
    return out, summary, prepared, path


def read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_grid_runs_every_cell_and_shares_features(finished):
    out, summary, prepared, _ = finished
    assert len(summary["cells"]) == 12 and summary["n_cells"] == 12
    assert sorted(prepared) == [1, 2]   # one prepare per group; the oracle needs none
    cell = summary["cells"]["mono__alpha+beta__r2"]
    assert (cell["method"], cell["group"], cell["protocol"], cell["n_splits"]) == \
        ("mono", "alpha+beta", "r2", 2)
    assert set(cell["per_dataset"]) == {"alpha", "beta"} and cell["weighted"]["n_images"] == 12
    assert summary["cells"]["naive__alpha__r1"]["weighted"] is None   # one test dataset
    for name in summary["cells"]:
        assert (out / "cells" / name / "results.json").exists()
        assert (out / "cells" / name / "config.yaml").exists()
    saved = yaml.safe_load((out / "bench.yaml").read_text())
    assert saved["experiment"]["train"]["cache_dir"] and saved["set"] == {"train.epochs": 2}


def test_every_method_used_identical_splits(finished):
    out, summary, _, _ = finished
    for group in ("alpha+beta", "alpha"):
        for proto, n in (("r2", 2), ("r1", 1)):
            folder = out / "splits" / f"{group}__{proto}"
            saved = [json.loads((folder / f"split_{i:02d}.json").read_text()) for i in range(n)]
            assert json.loads((folder / "splits.json").read_text())["files"] == \
                [f"split_{i:02d}.json" for i in range(n)]
            for method in ("naive", "mono"):
                for i, s in enumerate(saved):
                    used = json.loads((out / "cells" / f"{method}__{group}__{proto}" /
                                       f"split_{i:02d}" / "split.json").read_text())
                    assert (used["train"], used["val"], used["test"]) == \
                        (s["train"], s["val"], s["test"])
            assert TEST_KEYS[f"oracle__{group}__{proto}"] == [s["test"] for s in saved]
    r2 = [json.loads((out / "splits" / "alpha__r2" / f"split_{i:02d}.json").read_text())
          for i in range(2)]
    assert r2[0]["test"] != r2[1]["test"]   # two seeds, two different splits


def test_tables_list_every_cell_and_match_raw_medians(finished):
    out, summary, _, _ = finished
    raw = read_csv(out / "raw.csv")
    assert len(raw) == 3 * (2 * 2 + 1 * 2) + 3 * (2 + 1)   # 3 methods: 2-dataset, 1-dataset groups
    raw_json = json.loads((out / "raw.json").read_text())
    assert [(r["cell"], r["split"], r["dataset"]) for r in raw_json] == \
        [(r["cell"], int(r["split"]), r["dataset"]) for r in raw]
    assert float(raw[0]["srcc"]) == pytest.approx(raw_json[0]["srcc"])
    assert set(raw[0]) == {"cell", "method", "group", "protocol", "split", "seed", "dataset",
                           "n", "srcc", "plcc", "krcc", "rmse"}
    table = read_csv(out / "table.csv")
    assert [r["cell"] for r in table][:3] == ["naive__alpha+beta__r2", "mono__alpha+beta__r2",
                                              "oracle__alpha+beta__r2"]   # protocol, group, method
    assert {r["cell"] for r in table} == set(summary["cells"])
    for row in table:
        for ds in ("alpha", "beta"):
            vals = [float(r["srcc"]) for r in raw
                    if r["cell"] == row["cell"] and r["dataset"] == ds]
            if not vals:
                assert row[f"{ds}_srcc"] == ""
                continue
            assert float(row[f"{ds}_srcc"]) == pytest.approx(np.median(vals), abs=1e-9)
            q1, q3 = np.percentile(vals, [25, 75])
            assert float(row[f"{ds}_srcc_iqr"]) == pytest.approx(q3 - q1, abs=1e-9)
        per = summary["cells"][row["cell"]]["per_dataset"]
        n = {d: m["n"] for d, m in per.items()}
        want = sum(per[d]["plcc"] * n[d] for d in per) / sum(n.values())
        assert float(row["weighted_plcc"]) == pytest.approx(want, abs=1e-9)
    md = (out / "table.md").read_text()
    tex = (out / "table.tex").read_text()
    for name, c in summary["cells"].items():
        assert f"| {c['protocol']} | {c['group']} | {c['method']} |" in md
        assert f"{c['protocol']} & {c['group']} & {c['method']} &" in tex
    assert "alpha SRCC" in md and "interquartile range" in md and "**" in md
    assert tex.count("\\midrule") == 4 and "\\bottomrule" in tex


def test_resume_redoes_only_unfinished_cells_and_splits(finished, tmp_path, monkeypatch):
    src, _, _, path = finished
    out = tmp_path / "copy"
    shutil.copytree(src, out)
    cell = out / "cells" / "naive__alpha+beta__r2"
    (cell / "results.json").unlink()
    (cell / "split_01" / "result.json").unlink()       # killed inside its second split
    (out / "cells" / "oracle__alpha__r1" / "results.json").unlink()
    kept = (out / "cells" / "mono__alpha__r2" / "results.json").stat().st_mtime_ns
    split_file = (out / "splits" / "alpha+beta__r2" / "split_00.json").stat().st_mtime_ns
    trained, CALLS["oracle__alpha__r1"] = [], 0
    real = experiment.run_split
    monkeypatch.setattr(experiment, "run_split",
                        lambda cfg, split, *a, **k: trained.append(split.seed) or
                        real(cfg, split, *a, **k))
    summary = run_bench(load_bench_config(path), out, resume=True, log=lambda *a: None)
    assert trained == [1] and CALLS["oracle__alpha__r1"] == 1
    assert CALLS["oracle__alpha+beta__r2"] == 1                     # not rerun
    assert (out / "cells" / "mono__alpha__r2" / "results.json").stat().st_mtime_ns == kept
    assert (out / "splits" / "alpha+beta__r2" / "split_00.json").stat().st_mtime_ns == split_file
    assert len(summary["cells"]) == 12 and len(read_csv(out / "table.csv")) == 12


def test_interrupted_bench_keeps_finished_cells_and_resumes(base, tmp_path):
    methods = [{"label": "first", "runner": "test-oracle"},
               {"label": "second", "runner": "test-boom"}]
    path = write_bench(base, methods=methods, datasets=[["alpha", "beta"]],
                       protocols=[{"name": "r3", "seeds": 3}])
    out = tmp_path / "b"
    BOOM["on"] = True
    try:
        with pytest.raises(KeyboardInterrupt):
            run_bench(load_bench_config(path), out, log=lambda *a: None)
    finally:
        BOOM["on"] = False
    assert [r["cell"] for r in read_csv(out / "table.csv")] == ["first__alpha+beta__r3"]
    before = CALLS["first__alpha+beta__r3"]
    with pytest.raises(ConfigError, match="--resume"):
        run_bench(load_bench_config(path), out, log=lambda *a: None)
    summary = run_bench(load_bench_config(path), out, resume=True, log=lambda *a: None)
    assert CALLS["first__alpha+beta__r3"] == before and CALLS["second__alpha+beta__r3"] == 1
    assert TEST_KEYS["first__alpha+beta__r3"] == TEST_KEYS["second__alpha+beta__r3"]
    assert set(summary["cells"]) == {"first__alpha+beta__r3", "second__alpha+beta__r3"}


def test_resume_with_another_config_is_refused(base, tmp_path):
    path = write_bench(base, methods=[{"label": "o", "runner": "test-oracle"}],
                       datasets=[["alpha"]], protocols=[{"name": "r", "seeds": 1}])
    run_bench(load_bench_config(path), tmp_path / "b", log=lambda *a: None)
    with pytest.raises(ConfigError, match=r"set\.train\.epochs: 2 before, 3 now"):
        run_bench(load_bench_config(path, ["train.epochs=3"]), tmp_path / "b", resume=True)
    other = write_bench(base, methods=[{"label": "o", "runner": "test-oracle"}],
                        datasets=[["alpha"]], protocols=[{"name": "r", "seeds": 2}])
    with pytest.raises(ConfigError, match=r"protocols\[0\]\.seeds"):
        run_bench(load_bench_config(other), tmp_path / "b", resume=True)


def test_resume_runs_the_cells_a_grown_grid_adds(base, tmp_path):
    """Methods and protocols added to the file: the finished cells stay, the new ones run."""
    one = write_bench(base, methods=[{"label": "g1", "runner": "test-oracle"}],
                      datasets=[["alpha"]], protocols=[{"name": "r", "seeds": 1}])
    run_bench(load_bench_config(one), tmp_path / "b", log=lambda *a: None)
    assert CALLS["g1__alpha__r"] == 1
    grown = write_bench(base, methods=[{"label": "g1", "runner": "test-oracle"},
                                       {"label": "g2", "runner": "test-oracle"}],
                        datasets=[["alpha"]], protocols=[{"name": "r", "seeds": 1},
                                                         {"name": "r2", "seeds": 1}])
    summary = run_bench(load_bench_config(grown), tmp_path / "b", resume=True,
                        log=lambda *a: None)
    assert CALLS["g1__alpha__r"] == 1                        # kept, not rerun
    assert CALLS["g2__alpha__r"] == CALLS["g1__alpha__r2"] == CALLS["g2__alpha__r2"] == 1
    assert len(summary["cells"]) == 4
    # a method that changed under the same label is not growth
    changed = write_bench(base, methods=[{"label": "g1", "runner": "test-oracle",
                                          "set": {"train.epochs": 5}}],
                          datasets=[["alpha"]], protocols=[{"name": "r", "seeds": 1}])
    with pytest.raises(ConfigError, match="may be added"):
        run_bench(load_bench_config(changed), tmp_path / "b", resume=True)


def test_resume_a_bench_started_before_a_config_field_existed(base, tmp_path):
    """A field added to the config since (here: method.loss_options, saved without it)
    counts at its default: the bench resumes instead of reporting a difference."""
    path = write_bench(base, methods=[{"label": "old", "runner": "test-oracle"}],
                       datasets=[["alpha"]], protocols=[{"name": "r", "seeds": 1}])
    out = tmp_path / "b"
    run_bench(load_bench_config(path), out, log=lambda *a: None)
    saved = yaml.safe_load((out / "bench.yaml").read_text())
    del saved["experiment"]["method"]["loss_options"]
    (out / "bench.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    summary = run_bench(load_bench_config(path), out, resume=True, log=lambda *a: None)
    assert CALLS["old__alpha__r"] == 1 and len(summary["cells"]) == 1
    saved["experiment"]["method"]["loss_options"] = {"sind": {"beta": 2.0}}   # not a default
    (out / "bench.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    with pytest.raises(ConfigError, match="loss_options"):
        run_bench(load_bench_config(path), out, resume=True, log=lambda *a: None)


def test_cli_command_runs_only_the_named_methods(base, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_bench_command(parser.add_subparsers())
    path = write_bench(base, methods=[{"label": "o1", "runner": "test-oracle"},
                                      {"label": "o2", "runner": "test-oracle"}],
                       datasets=[["alpha", "beta"]], protocols=[{"name": "r", "seeds": 1}])
    args = parser.parse_args(["bench", path, "--out", str(tmp_path / "c"), "--only", "o2"])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "| r | alpha+beta | o2 |" in printed and "| o1 |" not in printed
    args = parser.parse_args(["bench", path, "--out", str(tmp_path / "c"), "--only", "o3"])
    with pytest.raises(ConfigError, match="Did you mean 'o2'"):
        args.func(args)


@pytest.mark.parametrize("changes, message", [
    ({"methods": [{"label": "m", "set": {"method.name": "monotnic"}}]},
     "method 'm'.*Did you mean 'monotonic'"),
    ({"methods": [{"label": "m", "set": {"train.epochz": 3}}]}, "did you mean 'epochs'"),
    ({"methods": [{"label": "m", "runner": "nqie"}]}, "Unknown bench runner 'nqie'"),
    ({"methods": [{"label": "m"}, {"label": "m"}]}, "'m' is given twice"),
    ({"methods": [{"label": "a b"}]}, "names a folder"),
    ({"methods": []}, "'methods' must be a non-empty list"),
    ({"datasets": [["alpha", "gama"]]}, "'gama' is not a dataset.*Did you mean 'beta'|'gama'"),
    ({"protocols": [{"protocol": "randm"}]}, "Unknown split protocol 'randm'.*'random'"),
    ({"protocols": [{"protocol": "random", "seeds": 0}]}, "seeds must be a count"),
    ({"protocols": [{"protocol": "random", "ratios": [0.5, 0.5]}]}, "three fractions"),
    ({"protocols": [{"protocol": "cross"}]}, "needs test_datasets"),
    ({"protocols": [{"protocol": "cross", "test_datasets": ["alpha"]}], "datasets": [["alpha"]]},
     "grid is empty"),
    ({"set": {"split.seeds": [1]}}, "cannot be overridden"),
    ({"metods": []}, "unknown key 'metods'.*Did you mean 'methods'"),
    ({"base": None}, "exactly one of 'base'"),
])
def test_bad_bench_configs_name_the_problem(base, changes, message):
    with pytest.raises(ConfigError, match=message):
        load_bench_config(write_bench(base, **changes))


def test_inline_experiment_and_cross_cells(base):
    exp = yaml.safe_load((base / "base.yaml").read_text())
    for d in exp["datasets"]:
        d["root"] = "."          # relative to the bench file's folder
    path = write_bench(base, base=None, experiment=exp, datasets=[["alpha", "beta"], ["alpha"]],
                       protocols=[{"name": "x", "protocol": "cross", "test_datasets": ["beta"]}])
    bench = load_bench_config(path)
    cells = bench.cells()
    assert {c.group_name for c in cells} == {"alpha+beta", "alpha"}
    cfg = bench.cell_config(next(c for c in cells if c.group == ("alpha",) and
                                 c.method.label == "mono"))
    assert [d.options["name"] for d in cfg.datasets] == ["alpha", "beta"]   # + the test set
    assert cfg.split.protocol == "cross" and cfg.split.test_datasets == ("beta",)
    assert cfg.method.name == "monotonic" and cfg.datasets[0].root == str(base)
    bad = write_bench(base, datasets=[["alpha"]],
                      protocols=[{"name": "x", "protocol": "cross", "test_datasets": ["alpha"]},
                                 {"name": "r", "seeds": 1}])
    assert "none is left to train on" in load_bench_config(bad).skipped()[0]
