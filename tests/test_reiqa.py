"""Re-IQA regressor: ridge with validation-chosen alpha, mixed-scale targets, split runner."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from safetensors.torch import save_file
from scipy.stats import spearmanr
from sklearn.linear_model import Ridge

from helpers import make_set
from mixiqa.config import config_from_dict
from mixiqa.data.manifest import Manifest, Record
from mixiqa.errors import ConfigError, DataError
from mixiqa.reiqa import (RidgeRegressor, _grouped_srcc, fit_ranges, rescaled_targets,
                          run_reiqa, to_dataset_scale)


# ---- the ridge ---------------------------------------------------------------------------

def planted(rng, n: int, w: np.ndarray, noise: float):
    x = rng.normal(size=(n, w.size)) * rng.uniform(0.1, 10, w.size)  # unequal feature scales
    return x, x @ w + noise * rng.normal(size=n)


def test_ridge_recovers_a_planted_linear_relation():
    rng = np.random.default_rng(0)
    w = rng.normal(size=12) / rng.uniform(0.1, 10, 12)
    (x, y), (xv, yv), (xt, yt) = (planted(rng, n, w, 0.05) for n in (200, 80, 80))
    reg = RidgeRegressor().fit(x, y, xv, yv)
    assert spearmanr(reg.predict(xt), yt)[0] > 0.99
    np.testing.assert_allclose(reg.predict(xt), yt, atol=0.3 * yt.std())
    assert len(reg.scores_) == len(reg.alphas)
    assert reg.val_srcc_ == max(s for _, s, _ in reg.scores_)


def test_alpha_is_chosen_by_validation_srcc_only():
    """Few noisy training rows, many features: validation must pick a strong penalty, and the
    pick equals an independent sklearn Ridge sweep scored on the validation rows."""
    rng = np.random.default_rng(1)
    w = rng.normal(size=60)
    (x, y), (xv, yv) = planted(rng, 40, w, 3.0), planted(rng, 60, w, 0.0)
    reg = RidgeRegressor().fit(x, y, xv, yv)
    m, s = x.mean(0), x.std(0)
    ref = [spearmanr(Ridge(alpha=a).fit((x - m) / s, y).predict((xv - m) / s), yv)[0]
           for a in reg.alphas]
    assert reg.alpha_ == reg.alphas[int(np.argmax(ref))]
    assert reg.alpha_ > reg.alphas[0]                       # the least penalty overfits here
    np.testing.assert_allclose([v for _, v, _ in reg.scores_], ref, atol=1e-9)
    single = Ridge(alpha=reg.alpha_).fit((x - m) / s, y)    # same as a plain fit at alpha_
    np.testing.assert_allclose(reg.coef_, single.coef_, rtol=1e-6, atol=1e-8)
    with pytest.raises(DataError, match="validation"):
        RidgeRegressor().fit(x, y, xv[:2], yv[:2])


def test_validation_srcc_is_computed_within_each_dataset():
    pred = np.array([1, 2, 3, 4, 11, 12, 13, 14.0])
    y = np.array([1, 2, 3, 4, 0.1, 0.2, 0.3, 0.4])          # two scales: ranks agree inside
    groups = np.array(["a"] * 4 + ["b"] * 4)
    assert _grouped_srcc(pred, y, groups) == pytest.approx(1.0)
    assert spearmanr(pred, y)[0] < 0.5                       # pooled ranks would mix scales


def test_minmax_targets_and_their_inverse_on_each_dataset_scale():
    rows = Manifest([Record(f"/x/{i}", f"{i}", s, d, hb, 0, 100) for i, (s, d, hb) in enumerate(
        [(10, "mos", True), (30, "mos", True), (50, "mos", True),
         (5, "dmos", False), (45, "dmos", False), (25, "dmos", False)])])
    ranges = fit_ranges(rows)
    t = rescaled_targets(rows, ranges)
    np.testing.assert_allclose(t, [0, 0.5, 1, 1, 0, 0.5])    # DMOS: lower raw is better
    np.testing.assert_allclose(to_dataset_scale(t, rows, ranges), [r.score for r in rows])


# ---- the split runner on tiny generated datasets ----------------------------------------------

@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import torch

    from mixiqa.models.backbones import create_backbone

    root = tmp_path_factory.mktemp("reiqa")
    a = make_set(root, "alpha", 30, lambda q: 1 + 4 * q, 0)
    b = make_set(root, "beta", 30, lambda q: 100 * (1 - q), 1)
    b["options"].update(higher_better=False, score_range=[0, 100])
    # a stand-in for a pretrained quality encoder: ImageNet weights, slightly moved
    g = torch.Generator().manual_seed(0)
    start = create_backbone("efficientnet_lite0", weights="offline").model.state_dict()
    sd = {k: (v + 0.01 * torch.randn(v.shape, generator=g) if k.endswith("weight") else v)
          for k, v in start.items()}  # running statistics untouched (a variance stays > 0)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(root / "encoder.safetensors"))
    return root, [a, b]


def config(setup, method: str, **kw):
    root, sets = setup
    return config_from_dict({
        "name": "t", "datasets": sets,
        "split": {"protocol": "random", "ratios": [0.5, 0.25, 0.25], "seeds": [0, 1]},
        "model": {"backbone": "efficientnet_lite0", "weights": "offline", "scales": [1.0, 0.5],
                  "feature_crop": 64},
        "method": {"name": method, "mapper_kwargs": {"encoder": str(root / "encoder.safetensors"),
                                                     **kw}},
        "train": {"workers": 0, "cache_dir": str(root / "cache")}})


def prepared(cfg):
    from mixiqa.experiment import Prepared, build_splits, load_data

    manifest = load_data(cfg)
    return Prepared(manifest=manifest, backbone=None, feats=None, timings={}), \
        build_splits(cfg, manifest)


def test_run_reiqa_writes_split_files_and_resumes(setup, tmp_path, one_thread):
    cfg = config(setup, "reiqa-both")
    prep, splits = prepared(cfg)
    assert run_reiqa.needs_features is False
    results = run_reiqa(cfg, prep, splits, tmp_path, resume=False, device="cpu",
                        log=lambda *a: None)
    assert len(results) == 2
    for i, res in enumerate(results):
        sdir = tmp_path / f"split_{i:02d}"
        for f in ("split.json", "result.json", "predictions.csv", "ridge.safetensors"):
            assert (sdir / f).is_file(), f
        assert json.loads((sdir / "result.json").read_text()) == json.loads(json.dumps(res))
        assert res["method"] == "reiqa-both" and res["seed"] == i
        test_keys = json.loads((sdir / "split.json").read_text())["test"]
        assert set(res["test"]) == {"alpha", "beta"}
        assert res["test"]["alpha"]["n"] == sum(k.startswith("alpha/") for k in test_keys) >= 6
        assert res["selected"].startswith("alpha=") and res["val_srcc"] is not None
        assert [h["alpha"] for h in res["history"]] == sorted(h["alpha"] for h in res["history"])
        rows = list(csv.DictReader(open(sdir / "predictions.csv")))
        assert len(rows) == len(test_keys)
        for name, lo, hi in (("alpha", 1, 5), ("beta", 0, 100)):
            part = [r for r in rows if r["dataset"] == name]
            q = [float(r["q"]) for r in part]
            y = [float(r["score"]) * (1 if r["higher_better"] == "1" else -1) for r in part]
            assert spearmanr(q, y)[0] == pytest.approx(res["test"][name]["srcc"], abs=1e-5)
            preds = [float(r["pred"]) for r in part]                 # own scale, roughly
            assert lo - (hi - lo) < np.median(preds) < hi + (hi - lo)
    # blur is what the scores follow: even these features rank it
    assert np.median([r["test"]["alpha"]["srcc"] for r in results]) > 0.3
    again = run_reiqa(cfg, prep, splits, tmp_path, resume=True, device="cpu",
                      log=lambda *a: None)
    assert again == json.loads(json.dumps(results))


def test_variants_use_their_own_features(setup, tmp_path, one_thread):
    from safetensors.numpy import load_file

    dims = {}
    for method in ("reiqa-content", "reiqa-quality"):
        cfg = config(setup, method, alphas=[1.0, 100.0])
        prep, splits = prepared(cfg)
        res = run_reiqa(cfg, prep, splits[:1], tmp_path / method, False, "cpu",
                        log=lambda *a: None)
        assert len(res[0]["history"]) == 2
        dims[method] = load_file(str(tmp_path / method / "split_00" / "ridge.safetensors"))["coef"]
    assert dims["reiqa-content"].shape == dims["reiqa-quality"].shape == (1280 * 2,)
    assert not np.allclose(dims["reiqa-content"], dims["reiqa-quality"])


def test_bad_method_or_missing_encoder_is_a_config_error(setup, tmp_path):
    cfg = config(setup, "reiqa-quality", encoder=str(tmp_path / "none.safetensors"))
    prep, splits = prepared(cfg)
    with pytest.raises(ConfigError, match="mixiqa pretrain"):
        run_reiqa(cfg, prep, splits, tmp_path, False, "cpu", log=lambda *a: None)
    cfg.method.name = "reiqa-colour"
    with pytest.raises(ConfigError, match="reiqa-both"):
        run_reiqa(cfg, prep, splits, tmp_path, False, "cpu", log=lambda *a: None)
