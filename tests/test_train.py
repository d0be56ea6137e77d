"""Training end to end on tiny generated data: every method, resume, model files, scoring."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers import make_set
from mixiqa.config import config_from_dict
from mixiqa.models.iqa import load_model
from mixiqa.experiment import run_experiment


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("mixed")
    a = make_set(root, "alpha", 40, lambda q: 1 + 4 * q, 0)            # MOS 1-5
    b = make_set(root, "beta", 40, lambda q: 100 * (1 - q) ** 2, 1)    # DMOS-like 0-100
    b["options"]["higher_better"] = False
    b["options"]["score_range"] = [0, 100]
    return root, [a, b]


def config(data, method: str, **train) -> dict:
    root, sets = data
    return config_from_dict({
        "name": "t", "datasets": sets,
        "split": {"protocol": "random", "ratios": [0.6, 0.2, 0.2], "seeds": [0]},
        "model": {"backbone": "efficientnet_lite0", "weights": "offline", "freeze": True,
                  "pooling": "avg", "scales": [1.0], "feature_crop": 64,
                  "head_kwargs": {"hidden": [16]}},
        "method": {"name": method},
        "train": {"epochs": 4, "batch_size": 8, "lr": 0.003, "workers": 0,
                  "cache_dir": str(root / "cache"), **train}})


@pytest.mark.parametrize("method", ["naive", "linear", "zscore", "monotonic", "mimi", "sind",
                                    "fidelity"])
def test_every_method_trains_and_saves(data, tmp_path, method):
    cfg = config(data, method)
    summary = run_experiment(cfg, tmp_path / "run", log=lambda *a: None)
    assert set(summary["per_dataset"]) == {"alpha", "beta"}
    assert all(m["n"] == 8 for m in summary["per_dataset"].values())  # 20% of 40
    for m in summary["per_dataset"].values():
        assert np.isfinite(m["srcc"]) and -1 <= m["srcc"] <= 1
    res = json.loads((tmp_path / "run" / "split_00" / "result.json").read_text())
    assert res["selected"] == "best validation SRCC" and res["val_srcc"] is not None
    assert len(res["history"]) == 4
    model = load_model(tmp_path / "run" / "split_00" / "model", with_backbone=False)
    assert set(model.datasets) == {"alpha", "beta"}
    # per-image test predictions: q reproduces the logged SRCC; pred sits on each dataset's scale
    import csv
    from scipy.stats import spearmanr
    rows = list(csv.DictReader(open(tmp_path / "run" / "split_00" / "predictions.csv")))
    assert len(rows) == 16
    for name in ("alpha", "beta"):
        part = [r for r in rows if r["dataset"] == name]
        q = [float(r["q"]) for r in part]
        y = [float(r["score"]) * (1 if r["higher_better"] == "1" else -1) for r in part]
        assert spearmanr(q, y)[0] == pytest.approx(res["test"][name]["srcc"], abs=1e-6)
        assert all(r["pred"] != "" for r in part)


def interrupted(cfg, out, monkeypatch, epoch: int) -> None:
    """Run ``cfg`` into ``out`` with its ``epoch``-th epoch killed (as by Ctrl-C)."""
    import mixiqa.train as T

    real, calls = T.train_epoch, []

    def dying(*a, **k):
        calls.append(1)
        if len(calls) == epoch:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(T, "train_epoch", dying)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, out, log=lambda *a: None)
    monkeypatch.setattr(T, "train_epoch", real)


@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_resume_after_interruption_matches_uninterrupted(data, tmp_path, monkeypatch, ema):
    cfg = lambda: config(data, "monotonic", epochs=6, checkpoint_seconds=0, ema=ema)  # noqa: E731
    full = run_experiment(cfg(), tmp_path / "a", log=lambda *a: None)
    # interrupted: the fourth epoch is killed; the checkpoint holds epoch 3
    interrupted(cfg(), tmp_path / "b", monkeypatch, 4)
    assert not (tmp_path / "b" / "split_00" / "result.json").exists()
    ck = torch.load(tmp_path / "b" / "split_00" / "checkpoint.pt", weights_only=True)
    assert ck["epoch"] == 3
    resumed = run_experiment(cfg(), tmp_path / "b", resume=True, log=lambda *a: None)
    assert not (tmp_path / "b" / "split_00" / "checkpoint.pt").exists()   # finished: removed
    for n in ("alpha", "beta"):
        assert resumed["per_dataset"][n]["srcc"] == pytest.approx(full["per_dataset"][n]["srcc"],
                                                                  abs=1e-6)


def test_model_file_has_no_pickle_and_translates(data, tmp_path):
    run_experiment(config(data, "mimi"), tmp_path / "run", log=lambda *a: None)
    folder = tmp_path / "run" / "split_00" / "model"
    assert sorted(p.name for p in folder.iterdir()) == ["model.json", "model.safetensors"]
    meta = json.loads((folder / "model.json").read_text())
    assert meta["scales"]["beta"]["higher_better"] is False
    model = load_model(folder, with_backbone=False)
    x = torch.tensor([2.0, 3.0, 4.5])
    back = model.translate(model.translate(x, "alpha", "beta"), "beta", "alpha")
    torch.testing.assert_close(back, x, atol=1e-3, rtol=0)
    # higher alpha quality -> lower beta DMOS
    y = model.translate(x, "alpha", "beta")
    assert y[0] > y[1] > y[2]


def test_score_cli_and_api_skip_corrupt_image(data, tmp_path, capsys):
    import mixiqa
    from mixiqa.cli import main

    root, _ = data
    run_experiment(config(data, "monotonic"), tmp_path / "run", log=lambda *a: None)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.png").write_bytes((root / "alpha" / f"{i}.png").read_bytes())
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    model_dir = str(tmp_path / "run" / "split_00")
    assert main(["score", str(folder), "--model", model_dir, "--workers", "0"]) == 0
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert lines[0] == "path,score" and len(lines) == 4       # three scores, one skipped
    assert "broken.jpg" in err and "1 of 4" in err
    model = mixiqa.load_model(model_dir)
    api = model.score([folder / f"{i}.png" for i in range(3)])
    cli = [float(line.split(",")[1]) for line in lines[1:]]
    assert api == pytest.approx(cli, rel=1e-5)
    on_scale = model.score(folder / "0.png", scale="alpha")
    assert len(on_scale) == 1 and on_scale[0] is not None


def test_eval_cli_on_all_images_or_the_runs_test_part(data, tmp_path, capsys):
    from mixiqa.cli import main

    root, _ = data
    run_experiment(config(data, "linear", epochs=2), tmp_path / "run", log=lambda *a: None)
    alpha = ["--data", f"csv={root}", "--option", "file=alpha.csv", "--option", "name=alpha"]

    def n_scored(*extra) -> int:
        assert main(["eval", str(tmp_path / "run"), *alpha, *extra]) == 0
        row = capsys.readouterr().out.strip().splitlines()[-1].split()
        return int(row[1])                                  # dataset, n, SRCC, ...

    split = json.loads((tmp_path / "run" / "split_00" / "split.json").read_text())
    assert n_scored() == 40
    assert n_scored("--split", "test") == sum(k.startswith("alpha/") for k in split["test"]) == 8
    # the shipped model has no split file: a clear error before any scoring
    from mixiqa.models.iqa import default_model_path

    assert main(["eval", str(default_model_path()), *alpha, "--split", "test"]) == 2
    assert "--split test needs the run's split file" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "no-run"), *alpha, "--split", "test"]) == 2
    assert f"No model at '{tmp_path / 'no-run'}'" in capsys.readouterr().err


@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_fine_tuning_path_trains_backbone_and_reloads(data, tmp_path, ema):
    # ema: the same with the saved weights averaged over steps (the SIND paper configs)
    cfg = config(data, "monotonic", epochs=2, train_short=72, train_crop=64, test_short=64,
                 backbone_lr_mult=0.5, ema=ema)
    cfg.model.freeze = False
    before = {k: v.clone() for k, v in
              __import__("mixiqa.models.backbones", fromlist=["x"]).create_backbone(
                  "efficientnet_lite0").state_dict().items()}
    from mixiqa.experiment import build_splits, prepare, run_splits, summarize

    prep = prepare(cfg, "cpu", log=lambda *a: None)
    shared = {k: v.clone() for k, v in prep.backbone.state_dict().items()}
    results = run_splits(cfg, prep, build_splits(cfg, prep.manifest), tmp_path / "ft", False,
                         "cpu", log=lambda *a: None)
    summary = summarize(results)
    assert all(np.isfinite(m["srcc"]) for m in summary["per_dataset"].values())
    # the next split (or method) must start from the same weights: each split tunes a copy
    assert all(torch.equal(v, prep.backbone.state_dict()[k]) for k, v in shared.items())
    model = load_model(tmp_path / "ft" / "split_00")
    after = {k: v for k, v in model.backbone.state_dict().items()}
    changed = [k for k in before if k in after and not torch.equal(before[k], after[k])]
    assert changed, "fine-tuning must update the backbone weights"
    meta = json.loads((tmp_path / "ft" / "split_00" / "model" / "model.json").read_text())
    assert meta["backbone_in_file"] is True and meta["features"] is None


def test_sind_scene_domains_need_scene_labels(data, tmp_path):
    from mixiqa.errors import ConfigError

    cfg = config(data, "sind")
    cfg.method.domain = "scene"
    with pytest.raises(ConfigError, match="no scene label"):
        run_experiment(cfg, tmp_path / "s", log=lambda *a: None)


def test_loading_a_model_file_never_unpickles(data, tmp_path, monkeypatch):
    import pickle

    run_experiment(config(data, "monotonic"), tmp_path / "run", log=lambda *a: None)

    def boom(*a, **k):
        raise AssertionError("unpickling while loading a model file")

    for mod, name in [(pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load")]:
        monkeypatch.setattr(mod, name, boom)
    model = load_model(tmp_path / "run", with_backbone=False)   # a run with one split
    assert set(model.datasets) == {"alpha", "beta"}


def test_parallel_split_jobs_match_one_at_a_time(data, tmp_path):
    """jobs=2 trains splits in forked workers; every split's result equals the serial run
    (same seeds, one thread each), in split order."""
    def cfg(jobs):
        c = config(data, "monotonic", jobs=jobs, threads=1)
        c.split.seeds = [0, 1, 2]
        return c

    one = run_experiment(cfg(1), tmp_path / "one", log=lambda *a: None)
    two = run_experiment(cfg(2), tmp_path / "two", log=lambda *a: None)
    assert one["seeds"] == two["seeds"] == [0, 1, 2]
    for i in range(3):
        a = json.loads((tmp_path / "one" / f"split_{i:02d}" / "result.json").read_text())
        b = json.loads((tmp_path / "two" / f"split_{i:02d}" / "result.json").read_text())
        assert a["seed"] == b["seed"] == i
        for name in ("alpha", "beta"):
            assert b["test"][name]["srcc"] == pytest.approx(a["test"][name]["srcc"], abs=1e-5)


def test_split_jobs_setting_is_checked(data):
    from mixiqa.errors import ConfigError
    from mixiqa.experiment import split_jobs

    assert split_jobs(config(data, "naive", jobs="auto"), "cpu", True) >= 1
    assert split_jobs(config(data, "naive", jobs=4), "cpu", False) == 1   # fine-tuning
    assert split_jobs(config(data, "naive", jobs=4), "cuda", True) == 1
    for bad in (0, "two", 1.5):    # refused when the config is read, before any work
        with pytest.raises(ConfigError, match="train.jobs"):
            config(data, "naive", jobs=bad)
    with pytest.raises(ConfigError, match="feature_max_short"):
        config_from_dict({**config(data, "naive").to_dict(),
                          "model": {"feature_max_short": -5}})


def test_parallel_split_error_reaches_the_caller(tmp_path):
    from mixiqa.data.splits import Split
    from mixiqa.experiment import each_split

    def run_one(split, sdir):
        if split.seed == 1:
            raise ValueError("split one is broken")
        return {"seed": split.seed}

    splits = [Split(train=["a/0"], val=[], test=["a/1"], protocol="random", seed=s)
              for s in range(3)]
    with pytest.raises(ValueError, match="split one is broken"):
        each_split(splits, tmp_path, False, run_one, jobs=2)
    assert json.loads((tmp_path / "split_00" / "result.json").read_text()) == {"seed": 0}


def test_progress_bar_shows_validation_only_where_there_is_some(data, tmp_path, monkeypatch,
                                                                capsys):
    monkeypatch.delenv("MIXIQA_QUIET")
    run_experiment(config(data, "linear", epochs=2), tmp_path / "val", log=lambda *a: None)
    with_val = capsys.readouterr().err
    assert "training linear" in with_val and "best_val_srcc=" in with_val
    cfg = config(data, "linear", epochs=2)
    cfg.split.ratios = [0.8, 0.0, 0.2]
    run_experiment(cfg, tmp_path / "noval", log=lambda *a: None)
    without = capsys.readouterr().err
    assert "training linear" in without and "loss=" in without
    assert "val_srcc" not in without and "nan" not in without


def test_module_device_finds_a_mapper_with_buffers_only():
    """SIND's mapper holds buffers and no parameters: its predictions must be made where
    those are (a GPU run once sent CPU tensors to a CUDA mapper)."""
    from mixiqa.experiment import module_device
    from mixiqa.models.mappers import create_mapper

    sind = create_mapper("sind").to("meta")
    assert not list(sind.parameters()) and module_device(sind).type == "meta"
    assert module_device(create_mapper("affine").to("meta")).type == "meta"
    assert module_device(torch.nn.Identity()).type == "cpu"


def two_dataset_batch():
    """A stand-in model with identity mappers for datasets alpha and beta, and a batch of
    six images of each: (model, q, y, dataset index), each tensor (12,)."""
    from types import SimpleNamespace

    model = SimpleNamespace(datasets=["alpha", "beta"],
                            mappers={"alpha": torch.nn.Identity(), "beta": torch.nn.Identity()})
    g = torch.Generator().manual_seed(0)
    q, y = torch.randn(12, generator=g), torch.rand(12, generator=g) * 10
    return model, q, y, torch.tensor([0] * 6 + [1] * 6)


def test_a_loss_weighted_per_dataset_applies_to_the_datasets_it_names(data):
    """{dataset: w} weighs a per-dataset loss for the named datasets only (SIND anchored to
    one dataset's scale); a whole-batch loss or an unknown dataset is refused."""

    from mixiqa import losses as L
    from mixiqa.errors import ConfigError
    from mixiqa.methods import get_method
    from dataclasses import asdict

    from mixiqa.train import batch_loss

    sind = get_method("sind")
    model, q, y, dom = two_dataset_batch()
    b = dom == 1
    cfg = config(data, "sind")
    cfg.method.loss_weights = {"smooth_l1": {"beta": 0.3}}
    w = {**sind.losses, **cfg.method.loss_weights}
    got = batch_loss(model, sind, w, q, y, torch.ones(12), dom)
    # the smooth-L1 term: beta's alone, averaged over the batch's two datasets
    want = L.sind_loss(q, y, dom) + 0.3 * L.smooth_l1(q[b], y[b]) / 2
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    cfg.method.loss_weights = {"smooth_l1": 0.3}       # one number: every dataset
    both = batch_loss(model, sind, {**sind.losses, **cfg.method.loss_weights}, q, y,
                      torch.ones(12), dom)
    assert both.item() == pytest.approx(
        (L.sind_loss(q, y, dom) + 0.3 * (L.smooth_l1(q[~b], y[~b]) + L.smooth_l1(q[b], y[b]))
         / 2).item(), rel=1e-6)
    # refused when the config is read, before any feature extraction
    raw = asdict(cfg)
    raw["method"]["loss_weights"] = {"range_prior": {"beta": 1.0}}
    with pytest.raises(ConfigError, match="one term over the whole batch"):
        config_from_dict(raw)
    raw["method"]["loss_weights"] = {"smooth_l1": {"gamma": 1.0}}
    with pytest.raises(ConfigError, match=r"names \['gamma'\]"):
        config_from_dict(raw)


def test_sind_weighted_per_dataset_and_given_options(data):
    """{dataset: w} weighs SIND's per-domain terms (unnamed datasets: 0); loss_options reach
    the loss functions; unknown losses, options and values are refused at config reading."""
    from dataclasses import asdict

    from mixiqa import losses as L
    from mixiqa.errors import ConfigError
    from mixiqa.methods import get_method
    from mixiqa.train import batch_loss

    sind = get_method("sind")
    model, q, y, dom = two_dataset_batch()
    a, b = dom == 0, dom == 1
    got = batch_loss(model, sind, {"sind": {"alpha": 0.5, "beta": 2.0}}, q, y, torch.ones(12),
                     dom)
    want = (0.5 * L.sind_loss(q[a], y[a], dom[a]) + 2.0 * L.sind_loss(q[b], y[b], dom[b])) / 2
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    only = batch_loss(model, sind, {"sind": {"beta": 1.0}}, q, y, torch.ones(12), dom)
    assert only.item() == pytest.approx(L.sind_loss(q[b], y[b], dom[b]).item() / 2, rel=1e-6)
    huber = batch_loss(model, sind, sind.losses, q, y, torch.ones(12), dom,
                       options={"sind": {"beta": 1.0}})
    assert huber.item() == pytest.approx(L.sind_loss(q, y, dom, beta=1.0).item(), rel=1e-6)
    assert huber.item() != pytest.approx(L.sind_loss(q, y, dom).item(), rel=1e-3)
    squared = batch_loss(model, sind, sind.losses, q, y, torch.ones(12), dom,
                         options={"sind": {"power": 2.0}})
    assert squared.item() == pytest.approx(L.sind_loss(q, y, dom, power=2.0).item(), rel=1e-6)

    cfg = config(data, "sind")
    raw = asdict(cfg)
    raw["method"]["loss_weights"] = {"sind": {"csv": 0.5}, "smooth_l1": 0.3}  # fixture names
    raw["method"]["loss_options"] = {"sind": {"beta": 1.0}, "smooth_l1": {"beta": 0.1}}
    parsed = config_from_dict(raw)
    assert parsed.method.loss_options["sind"] == {"beta": 1.0}
    for bad, match in [({"range_prior": {"beta": 1.0}}, "no such loss with options"),
                       ({"sind": {"gamma": 1.0}}, r"among \['beta', 'eps', 'power'\]"),
                       ({"sind": {"power": 2.0, "beta": 1.0}}, "goes without beta"),
                       ({"sind": {"power": 0}}, "must be > 0"),
                       ({"sind": 1.0}, "must map option names"),
                       ({"sind": {"beta": -1.0}}, "must be a number >= 0"),
                       ({"norm_in_norm": {"p": 2.0}}, "method 'sind' has no norm_in_norm")]:
        raw["method"]["loss_options"] = bad
        with pytest.raises(ConfigError, match=match):
            config_from_dict(raw)


def head_state(model) -> dict:
    return {k: v.detach().clone() for k, v in model.head.state_dict().items()}


def test_ema_model_is_the_average_of_every_step(data, tmp_path, monkeypatch):
    """train.ema: with no validation part the saved model holds the exponential moving
    average of the weights after each optimizer step, computed here by hand from snapshots."""
    import mixiqa.train as T

    real, snaps = T.make_optimizer, []

    def recording(model, cfg, steps):
        opt, sched = real(model, cfg, steps)
        snaps.append(head_state(model))                          # the weights EMA starts from
        opt.register_step_post_hook(lambda *a: snaps.append(head_state(model)))
        return opt, sched

    monkeypatch.setattr(T, "make_optimizer", recording)
    cfg = config(data, "monotonic", ema=0.8)
    cfg.split.ratios = [0.8, 0.0, 0.2]                           # no validation: last epoch
    run_experiment(cfg, tmp_path / "run", log=lambda *a: None)
    assert len(snaps) > 10
    avg = snaps[0]
    for w in snaps[1:]:
        avg = {k: 0.8 * avg[k] + 0.2 * w[k] for k in avg}
    saved = head_state(load_model(tmp_path / "run" / "split_00" / "model", with_backbone=False))
    last = snaps[-1]
    for k in avg:
        assert torch.allclose(saved[k], avg[k], atol=1e-5), k
    assert any(not torch.allclose(saved[k], last[k], atol=1e-4) for k in avg)  # not the last


def test_ema_selects_on_validation_with_the_averaged_weights(data, tmp_path):
    res = {}
    for ema in (0.0, 0.9):
        run_experiment(config(data, "monotonic", ema=ema), tmp_path / f"e{ema}",
                       log=lambda *a: None)
        res[ema] = json.loads((tmp_path / f"e{ema}" / "split_00" / "result.json").read_text())
    assert res[0.9]["selected"] == "best validation SRCC, weights averaged over steps " \
                                   "(train.ema 0.9)"
    vals = [h["val_srcc"] for h in res[0.9]["history"]]
    assert res[0.9]["val_srcc"] == max(vals)
    assert vals != [h["val_srcc"] for h in res[0.0]["history"]]   # the average was scored
    # the same training draws: the losses of plain and averaged runs are identical
    assert [h["loss"] for h in res[0.9]["history"]] == [h["loss"] for h in res[0.0]["history"]]


def test_ema_setting_is_checked_and_resume_needs_the_average(data, tmp_path, monkeypatch):
    from mixiqa.errors import ConfigError

    for bad in (1.0, -0.1, True, "0.99"):
        with pytest.raises(ConfigError, match="train.ema"):
            config(data, "naive", ema=bad)
    # interrupted without an average: the checkpoint cannot go on with one
    interrupted(config(data, "naive", checkpoint_seconds=0), tmp_path / "run", monkeypatch, 2)
    with pytest.raises(ConfigError, match="without train.ema"):
        run_experiment(config(data, "naive", checkpoint_seconds=0, ema=0.9), tmp_path / "run",
                       resume=True, log=lambda *a: None)


def test_preloaded_images_fine_tune_like_the_worker_path(data, tmp_path):
    # train.preload: the same crops, batches and model as DataLoader workers give
    import csv

    preds = {}
    for preload in (False, True):
        cfg = config(data, "monotonic", epochs=2, train_short=72, train_crop=64, test_short=64)
        cfg.model.freeze, cfg.train.preload = False, preload
        cfg.model.head_kwargs["dropout"] = 0.0
        run_experiment(cfg, tmp_path / str(preload), log=lambda *a: None)
        rows = list(csv.DictReader(open(tmp_path / str(preload) / "split_00" / "predictions.csv")))
        preds[preload] = np.array([float(r["q"]) for r in rows])
    assert len(preds[True]) == 16
    np.testing.assert_allclose(preds[True], preds[False], rtol=0, atol=1e-3)
