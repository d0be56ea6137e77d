"""Scripts in benchmarks/ that read finished runs: checked on tiny bench folders made here."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

from mixiqa.errors import DataError

ROOT = Path(__file__).parents[1]


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_bench(folder: Path, results: dict, protocol: str = "split60") -> Path:
    """A bench folder with raw.csv and per-split result.json: results maps a method label
    to {seed: (val_srcc, clive test SRCC, biq2021 test SRCC)}."""
    rows = []
    for label, per_seed in results.items():
        cell = f"{label}__clive+biq2021__{protocol}"
        for split, (seed, (val, clive, biq)) in enumerate(sorted(per_seed.items())):
            d = folder / "cells" / cell / f"split_{split:02d}"
            d.mkdir(parents=True)
            (d / "result.json").write_text(json.dumps({"seed": seed, "val_srcc": val}))
            for dataset, srcc in (("clive", clive), ("biq2021", biq)):
                rows.append({"cell": cell, "method": label, "group": "clive+biq2021",
                             "protocol": protocol, "split": split, "seed": seed,
                             "dataset": dataset, "srcc": srcc})
    with open(folder / "raw.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return folder


def test_tradeoff_pick_follows_validation_not_test(tmp_path, capsys):
    tp = load_script("tradeoff_plot")
    # seed 0: "b" is best on validation but worse on test; seed 1: "a" best on validation
    bench = fake_bench(tmp_path, {
        "linear": {0: (0.70, 0.70, 0.77), 1: (0.70, 0.71, 0.77)},
        "a": {0: (0.72, 0.80, 0.76), 1: (0.75, 0.79, 0.76)},
        "b": {0: (0.74, 0.75, 0.78), 1: (0.73, 0.90, 0.90)},
    })
    srcc, folders = tp.per_seed([bench], "split60")
    assert tp.pick_on_validation(srcc, folders, "ab-val", ["a", "b"]) == ["b", "a"]
    assert srcc[("ab-val", "clive")] == {0: 0.75, 1: 0.79}
    assert srcc[("ab-val", "biq2021")] == {0: 0.78, 1: 0.76}
    # paired against linear: clive +0.05 and +0.08, biq2021 +0.01 and -0.01
    diff, up, n = tp.paired_vs(srcc, "ab-val", "linear", "clive")
    assert (round(diff, 3), up, n) == (0.065, 2, 2)

    assert tp.main([str(bench), "--protocol", "split60", "--pick", "ab-val=a,b",
                    "--png", str(tmp_path / "t.png")]) == 0
    out = capsys.readouterr().out
    assert "ab-val: picked per seed b, a" in out and (tmp_path / "t.png").stat().st_size > 0
    with pytest.raises(DataError, match="not among"):
        tp.pick_on_validation(srcc, folders, "x", ["a", "c"])


def test_tradeoff_pick_refuses_splits_without_validation(tmp_path):
    tp = load_script("tradeoff_plot")
    bench = fake_bench(tmp_path, {"a": {0: (None, 0.8, 0.7)}, "b": {0: (None, 0.7, 0.8)}},
                       protocol="split80")
    srcc, folders = tp.per_seed([bench], "split80")
    with pytest.raises(DataError, match="no validation SRCC"):
        tp.pick_on_validation(srcc, folders, "ab", ["a", "b"])


def test_run_parallel_stops_jobs_at_the_deadline_and_packs_small_files(tmp_path):
    import sys
    import tarfile

    rp = load_script("run_parallel")
    quick, slow = tmp_path / "quick", tmp_path / "slow"
    # stand-ins for `mixiqa train`: one ends at once, one would sleep past the deadline
    prog = (sys.executable, "-c", "import sys, time; time.sleep(float(sys.argv[1]))")
    seconds = rp.run_jobs([["0", "--out", str(quick)], ["60", "--out", str(slow)]],
                          deadline=3, poll=0.2, program=prog)
    assert seconds[0][0] < 3 <= seconds[1][0] < 30
    assert [how for _, how in seconds.values()] == ["rc 0", "stopped at the deadline"]
    fail = (sys.executable, "-c", "import sys; sys.exit(3)")
    assert rp.run_jobs([["--out", str(tmp_path / "bad")]], deadline=5, poll=0.2,
                       program=fail)[0][1] == "rc 3"
    for seed, clive in ((0, 0.7), (1, 0.9), (2, 0.8)):     # what finished splits leave
        d = slow / f"split_{seed:02d}"
        d.mkdir()
        (d / "result.json").write_text(json.dumps(
            {"seed": seed, "val_srcc": None,
             "test": {"clive": {"srcc": clive, "plcc": clive + 0.05}}}))
        (d / "model.safetensors").write_bytes(b"weights")
    summary = rp.summarize(slow)
    assert summary["seeds"] == [0, 1, 2] and summary["median_val_srcc"] is None
    assert summary["median"]["clive"] == pytest.approx({"srcc": 0.8, "plcc": 0.85})
    rp.pack([quick, slow], tmp_path / "out" / "runs.tar.gz")
    names = tarfile.open(tmp_path / "out" / "runs.tar.gz").getnames()
    assert sum(n.endswith("result.json") for n in names) == 3
    assert any(n.endswith("train.log") for n in names)
    assert not any(n.endswith(".safetensors") for n in names)
    with pytest.raises(SystemExit, match="no --out"):
        rp.out_of(["configs/x.yaml"])


def test_stage_device_parts_fit_a_call_and_keep_every_file(tmp_path):
    sd = load_script("stage_device")
    files = [(Path(f"f{i}"), size) for i, size in enumerate([40, 30, 30, 50, 10, 60])]
    parts = sd.plan_parts(files, budget=100, first_used=45)      # part 1 holds the weights
    assert [f for part in parts for f in part] == [f for f, _ in files]   # all, in order
    sizes = dict(files)
    used = [sum(sizes[f] for f in part) for part in parts]
    assert used[0] + 45 <= 100 and all(u <= 100 for u in used)
    assert [len(p) for p in parts] == [1, 2, 2, 1]
    with pytest.raises(SystemExit, match="alone exceeds a part"):
        sd.plan_parts([(Path("huge"), 101)], budget=100, first_used=0)


def fake_run(folder: Path, preds: dict[int, list[float]], mos: list[float]) -> Path:
    """A finished run: per seed a result.json and a predictions.csv of CLIVE test rows."""
    for k, (seed, p) in enumerate(sorted(preds.items())):
        d = folder / f"split_{k:02d}"
        d.mkdir(parents=True)
        (d / "result.json").write_text(json.dumps({"seed": seed}))
        with open(d / "predictions.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["name", "dataset", "score", "higher_better", "q", "pred", "path"])
            for i, (y, x) in enumerate(zip(mos, p)):
                w.writerow([f"im{i}", "clive", y, 1, x, x, f"im{i}.jpg"])
    return folder


def test_average_runs_groups_score_the_mean_prediction_paired_with_the_first(tmp_path, capsys):
    from scipy.stats import spearmanr

    from mixiqa.report.run import averaged_srcc

    ar = load_script("average_runs")
    mos = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    a = {0: [1, 3, 2, 4, 6, 5], 1: [2, 1, 3, 4, 5, 6]}     # two splits (seeds 0, 1)
    b = {0: [1, 2, 4, 3, 5, 6], 1: [1, 2, 3, 5, 4, 6]}
    ra, rb = fake_run(tmp_path / "a", a, mos), fake_run(tmp_path / "b", b, mos)
    both = averaged_srcc([ra, rb], "clive", [0, 1])
    for seed, got in zip((0, 1), both):
        mean = [x + y for x, y in zip(a[seed], b[seed])]
        assert got == pytest.approx(spearmanr(mean, mos)[0])
    assert averaged_srcc([ra], "clive", [0, 1]) == pytest.approx(
        [spearmanr(a[s], mos)[0] for s in (0, 1)])
    assert averaged_srcc([ra], "biq2021", [0, 1]) is None          # no such test rows
    ar.main(["--groups", f"{ra}+{rb}", str(ra), "--datasets", "clive"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[1:] == ["a+b", f"{sorted(both)[0] / 2 + sorted(both)[1] / 2:.3f}",
                                    "(baseline)"]
    alone = averaged_srcc([ra], "clive", [0, 1])
    diffs = [x - y for x, y in zip(alone, both)]
    assert f"paired {sorted(diffs)[0] / 2 + sorted(diffs)[1] / 2:+.3f}" in lines[1]
    # runs with other test images cannot be averaged
    other = fake_run(tmp_path / "c", {0: [1, 2, 3, 4, 5, 6]}, mos)
    (other / "split_00" / "predictions.csv").write_text(
        (other / "split_00" / "predictions.csv").read_text().replace("im5", "im9"))
    with pytest.raises(DataError, match="test different clive images"):
        averaged_srcc([ra, other], "clive", [0])


def test_average_runs_joins_folders_of_one_recipe_made_on_other_seeds(tmp_path, capsys):
    from mixiqa.report.run import averaged_srcc, finished_splits

    ar = load_script("average_runs")
    mos = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    a = {0: [1, 3, 2, 4, 6, 5], 1: [2, 1, 3, 4, 5, 6]}
    b = {0: [1, 2, 4, 3, 5, 6], 1: [1, 2, 3, 5, 4, 6]}
    whole_a, whole_b = fake_run(tmp_path / "a", a, mos), fake_run(tmp_path / "b", b, mos)
    # the same recipes run in two parts: seed 0 in one folder, seed 1 in another
    parts_a = (fake_run(tmp_path / "a0", {0: a[0]}, mos), fake_run(tmp_path / "a1", {1: a[1]}, mos))
    parts_b = (fake_run(tmp_path / "b0", {0: b[0]}, mos), fake_run(tmp_path / "b1", {1: b[1]}, mos))
    assert sorted(finished_splits(parts_a)) == [0, 1]
    assert averaged_srcc([parts_a, parts_b], "clive", [0, 1]) == pytest.approx(
        averaged_srcc([whole_a, whole_b], "clive", [0, 1]))
    ar.main(["--groups", f"{whole_a}+{whole_b}", "--datasets", "clive"])
    whole = capsys.readouterr().out.split()
    ar.main(["--groups", ",".join(map(str, parts_a)) + "+" + ",".join(map(str, parts_b)),
             "--datasets", "clive"])
    joined = capsys.readouterr().out.split()
    assert joined[1] == "a0,a1+b0,b1" and joined[2:] == whole[2:]    # same seeds, same median
    # the one-by-one mode reads joined folders the same way
    ar.main([str(whole_a), str(whole_b), "--datasets", "clive"])
    whole = capsys.readouterr().out.split()
    ar.main([",".join(map(str, parts_a)), ",".join(map(str, parts_b)), "--datasets", "clive"])
    joined = capsys.readouterr().out.split()
    assert joined[2] == "b0,b1" and joined[3:] == whole[3:]
    with pytest.raises(DataError, match="typo has no finished split"):
        ar.main([str(tmp_path / "typo"), str(whole_b)])
    with pytest.raises(DataError, match="typo has no finished split"):
        load_script("score_splits").main([str(tmp_path / "typo")])
    with pytest.raises(DataError, match="seed 0 is finished in both"):
        finished_splits((parts_a[0], whole_a))


def test_tradeoff_mean_row_scores_the_averaged_predictions(tmp_path, capsys):
    from scipy.stats import spearmanr

    tp = load_script("tradeoff_plot")
    bench = fake_bench(tmp_path, {"linear": {0: (None, 0.6, 0.7), 1: (None, 0.6, 0.7)},
                                  "sind": {0: (None, 0.8, 0.6), 1: (None, 0.8, 0.6)}},
                       protocol="split80")
    mos = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    preds = {"linear": [2, 1, 3, 4, 6, 5], "sind": [1, 3, 2, 5, 4, 6]}   # same every split
    for label, p in preds.items():
        for split in (0, 1):
            d = tmp_path / "cells" / f"{label}__clive+biq2021__split80" / f"split_{split:02d}"
            with open(d / "predictions.csv", "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["name", "dataset", "score", "higher_better", "q", "pred", "path"])
                for dataset in ("clive", "biq2021"):
                    for i, (y, x) in enumerate(zip(mos, p)):
                        w.writerow([f"{dataset}{i}", dataset, y, 1, x, x, ""])
    srcc, folders = tp.per_seed([bench], "split80")
    tp.mean_of(srcc, folders, "sind+linear", ["sind", "linear"])
    want = spearmanr([a + b for a, b in zip(preds["sind"], preds["linear"])], mos)[0]
    assert srcc[("sind+linear", "clive")] == pytest.approx({0: want, 1: want})
    assert tp.main([str(bench), "--mean", "sind+linear=sind,linear",
                    "--png", str(tmp_path / "m.png")]) == 0
    row = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| sind+linear")]
    assert row and f"| {want:.3f} |" in row[0]
    with pytest.raises(DataError, match="not among"):
        tp.mean_of(srcc, folders, "x", ["sind", "nope"])
