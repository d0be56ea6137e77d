"""Data-parallel training and sharded scoring under torchrun, two CPU processes (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml
from safetensors.torch import load_file

from mixiqa.cli import main
from mixiqa.distributed import ShardedBatches, shard
from mixiqa.errors import DataError
from mixiqa.score import ScoreResult, merge_parts, parse_shard, write_part
from helpers import make_set


def torchrun(*args: str, nproc: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MIXIQA_QUIET": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", "-m", "mixiqa", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same config trained by one process (in this one) and by two under torchrun."""
    root = tmp_path_factory.mktemp("ddp")
    sets = [make_set(root, "alpha", 40, lambda q: 1 + 4 * q, 0),
            make_set(root, "beta", 40, lambda q: 100 * q ** 2, 1)]
    cfg = {"name": "ddp", "datasets": sets,
           "split": {"protocol": "random", "ratios": [0.6, 0.2, 0.2], "seeds": [0]},
           # dropout 0: both processes must draw no per-rank random numbers
           "model": {"backbone": "efficientnet_lite0", "weights": "offline", "pooling": "avg",
                     "scales": [1.0], "feature_crop": 32,
                     "head_kwargs": {"hidden": [16], "dropout": 0.0}},
           "method": {"name": "linear"},
           "train": {"epochs": 4, "batch_size": 8, "lr": 0.003, "workers": 0, "device": "cpu",
                     "cache_dir": str(root / "cache")}}
    path = root / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", str(path), "--out", str(root / "one")]) == 0
    proc = torchrun("train", str(path), "--out", str(root / "two"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, proc


def test_two_process_training_matches_one_process(runs):
    root, proc = runs
    one = json.loads((root / "one" / "split_00" / "result.json").read_text())
    two = json.loads((root / "two" / "split_00" / "result.json").read_text())
    # each rank trains on half of every global batch; DDP's mean gradient is the full batch's
    for a, b in zip(one["history"], two["history"], strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
    w1 = load_file(str(root / "one" / "split_00" / "model" / "model.safetensors"))
    w2 = load_file(str(root / "two" / "split_00" / "model" / "model.safetensors"))
    assert w1.keys() == w2.keys()
    assert max(float((w1[k] - w2[k]).abs().max()) for k in w1) < 1e-4
    assert one["test"]["alpha"]["srcc"] == pytest.approx(two["test"]["alpha"]["srcc"], abs=1e-6)
    assert json.loads((root / "two" / "results.json").read_text())["world_size"] == 2
    assert proc.stdout.count("run folder:") == 1  # rank 0 alone reports


def test_two_process_scoring_merges_every_image_once(runs, tmp_path):
    root, _ = runs
    (root / "alpha" / "broken.png").write_bytes(b"not an image")
    model = str(root / "one" / "split_00" / "model")
    single, merged = tmp_path / "one.csv", tmp_path / "two.csv"
    assert main(["score", str(root / "alpha"), "--model", model, "-o", str(single),
                 "--workers", "0"]) == 0
    proc = torchrun("score", str(root / "alpha"), "--model", model, "-o", str(merged),
                    "--workers", "0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    one = [line.split(",") for line in single.read_text().splitlines()[1:]]
    two = [line.split(",") for line in merged.read_text().splitlines()[1:]]
    assert [p for p, _ in two] == [p for p, _ in one] and len(two) == 40  # broken one skipped
    # other batch compositions: the same scores up to float summation order
    assert np.allclose([float(s) for _, s in two], [float(s) for _, s in one], rtol=1e-4, atol=1e-4)
    assert not list(tmp_path.glob("two.csv.part*"))            # parts removed after the merge


def test_independent_shards_merge_and_check_coverage(runs, tmp_path):
    root, _ = runs
    model = str(root / "one" / "split_00" / "model")
    parts = [tmp_path / f"p{k}.csv" for k in range(3)]
    for k, p in enumerate(parts):
        assert main(["score", str(root / "beta"), "--model", model, "--shard", f"{k}/3",
                     "-o", str(p), "--workers", "0"]) == 0
    out = tmp_path / "all.csv"
    assert main(["merge-scores", *map(str, parts[::-1]), "--inputs", str(root / "beta"),
                 "-o", str(out)]) == 0
    names = [line.split(",")[0] for line in out.read_text().splitlines()[1:]]
    assert names == sorted(str(p) for p in (root / "beta").glob("*.png"))
    assert main(["merge-scores", str(parts[0]), "--inputs", str(root / "beta")]) == 2


def test_merge_refuses_duplicates_and_unknown_files(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    write_part([ScoreResult("x.png", 1.0), ScoreResult("y.png", None, "corrupt")], a)
    write_part([ScoreResult("y.png", 2.0)], b)
    with pytest.raises(DataError, match="two shards"):
        merge_parts([a, b], ["x.png", "y.png"])
    merged = merge_parts([a], ["x.png", "y.png"])
    assert [r.score for r in merged] == [1.0, None] and merged[1].error == "corrupt"
    with pytest.raises(DataError, match="missing"):
        merge_parts([a], ["x.png", "y.png", "z.png"])
    (tmp_path / "c.csv").write_text("a,b\n")
    with pytest.raises(DataError, match="not a mixiqa shard"):
        merge_parts([tmp_path / "c.csv"], ["x.png"])
    for bad in ("3/3", "x", "1/0", "-1/2"):
        with pytest.raises(DataError, match="K/N"):
            parse_shard(bad)


def test_sharded_batches_split_each_dataset_evenly():
    class Fixed:
        epoch = 0

        def set_epoch(self, e):
            self.epoch = e

        def __len__(self):
            return 1

        def __iter__(self):
            yield [5, 0, 6, 1, 7, 2, 8, 3]

    domain = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1])
    parts = [next(iter(ShardedBatches(Fixed(), domain, r, 2))) for r in range(2)]
    assert sorted(parts[0] + parts[1]) == [0, 1, 2, 3, 5, 6, 7, 8]
    for p in parts:
        assert np.bincount(domain[p], minlength=2).tolist() == [2, 2]
    assert shard(list("abcde"), 1, 2) == ["b", "d"]
