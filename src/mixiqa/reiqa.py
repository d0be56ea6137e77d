"""Re-IQA's quality regressor: frozen content and quality features, a ridge on top.

Features: the ImageNet backbone (content) and the encoder from ``mixiqa pretrain``
(quality), each globally average-pooled at every scale of ``cfg.model.scales`` (Re-IQA:
full and half), concatenated. Regressor: scikit-learn Ridge on z-scored features, its
strength chosen on the validation split by SRCC, never on the test split. Mixed datasets:
each dataset's scores are min-max rescaled to [0, 1] over its training rows (the linear
alignment) and one ridge fits them all; its output is the shared proxy score q.

Methods (``cfg.method.name``): ``reiqa-content``, ``reiqa-quality``, ``reiqa-both``.
Options (``cfg.method.mapper_kwargs``): ``encoder`` (path of ``encoder.safetensors``;
needed by the quality variants), ``encoder_backbone`` (its architecture; default
``cfg.model.backbone``), ``alphas`` (the ridge grid; default :data:`ALPHAS`).

Reference: Saha et al., "Re-IQA: Unsupervised Learning for Image Quality Assessment in
the Wild", CVPR 2023.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import safetensors.numpy
from scipy.linalg import LinAlgWarning
from scipy.stats import spearmanr
from sklearn.linear_model import Ridge
from sklearn.preprocessing import StandardScaler

from mixiqa.config import ExperimentConfig
from mixiqa.data.manifest import Manifest
from mixiqa.errors import ConfigError, DataError

ALPHAS = tuple(float(a) for a in np.logspace(-2, 5, 8))  # 0.01 .. 1e5, one per decade
VARIANTS = {"reiqa-content": ("content",), "reiqa-quality": ("quality",),
            "reiqa-both": ("content", "quality")}


class RidgeRegressor:
    """Ridge regression on z-scored features, its alpha picked by validation SRCC.

    Attributes (after :meth:`fit`):
        alpha_: The chosen strength.
        val_srcc_: Validation SRCC at ``alpha_``.
        scores_: ``[(alpha, validation SRCC, training MSE), ...]`` over the grid.
        coef_, intercept_: The chosen linear map on z-scored features.
        scaler_: The z-scoring, fitted on the training rows.
    """

    def __init__(self, alphas: tuple[float, ...] = ALPHAS):
        self.alphas = tuple(float(a) for a in alphas)

    def fit(self, x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
            groups_val: np.ndarray | None = None) -> "RidgeRegressor":
        """Fit every alpha on (x, y); keep the one with the best SRCC on (x_val, y_val).

        Args:
            x, y: Training features (N, D) and targets (N,).
            x_val, y_val: Validation features and targets; only their ranks matter.
            groups_val: Dataset of each validation row: SRCC is then computed within each
                dataset and averaged weighted by row count (scales never mix).
        """
        if len(x_val) < 3:
            raise DataError(f"the ridge's alpha is chosen on the validation split, which has "
                            f"{len(x_val)} rows; give the split a validation part "
                            "(split.ratios with a val fraction > 0).")
        self.scaler_ = StandardScaler().fit(x)
        z, zv = self.scaler_.transform(x), self.scaler_.transform(x_val)
        # one call, one alpha per (identical) target column: the Gram matrix is built once
        with warnings.catch_warnings():  # the smallest alphas may be ill-conditioned when
            warnings.simplefilter("ignore", LinAlgWarning)  # D > N: validation drops them
            many = Ridge(alpha=np.array(self.alphas)).fit(
                z, np.repeat(y[:, None], len(self.alphas), 1))
        coefs, icepts = np.atleast_2d(many.coef_), np.atleast_1d(many.intercept_)  # (A, D), (A,)
        groups = np.zeros(len(y_val)) if groups_val is None else np.asarray(groups_val)
        val = [_grouped_srcc(zv @ c + b, y_val, groups) for c, b in zip(coefs, icepts)]
        mse = ((z @ coefs.T + icepts - y[:, None]) ** 2).mean(0)                     # (A,)
        self.scores_ = list(zip(self.alphas, val, mse.tolist()))
        best = int(np.nanargmax(val)) if np.isfinite(val).any() else len(val) - 1
        self.alpha_, self.val_srcc_ = self.alphas[best], float(val[best])
        self.coef_, self.intercept_ = coefs[best], float(icepts[best])
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.scaler_.transform(x) @ self.coef_ + self.intercept_

    def save(self, path: Path, meta: dict) -> None:
        tmp = path.with_name(path.name + ".tmp")
        safetensors.numpy.save_file(
            {"coef": self.coef_.astype(np.float32), "mean": self.scaler_.mean_.astype(np.float32),
             "scale": self.scaler_.scale_.astype(np.float32),
             "intercept": np.array([self.intercept_], dtype=np.float32)},
            str(tmp), metadata={"alpha": repr(self.alpha_), "meta": json.dumps(meta)})
        os.replace(tmp, path)


def _grouped_srcc(pred: np.ndarray, y: np.ndarray, groups: np.ndarray) -> float:
    """SRCC within each group, averaged weighted by group size (nan where undefined)."""
    vals, weights = [], []
    for g in dict.fromkeys(groups.tolist()):
        m = groups == g
        if m.sum() >= 3 and np.ptp(pred[m]) > 0 and np.ptp(y[m]) > 0:
            vals.append(spearmanr(pred[m], y[m])[0])
            weights.append(m.sum())
    return float(np.average(vals, weights=weights)) if vals else float("nan")


# ---- targets: per-dataset min-max over the training rows ---------------------------------

def fit_ranges(train: Manifest) -> dict[str, tuple[float, float]]:
    """Each dataset's (min, max) of oriented training scores (higher is better)."""
    from mixiqa.train import oriented

    y, names = oriented(train), np.array([r.dataset for r in train])
    out = {}
    for n in dict.fromkeys(names.tolist()):
        lo, hi = float(y[names == n].min()), float(y[names == n].max())
        if hi <= lo:
            raise DataError(f"dataset '{n}': every training score is {lo:g}; the ridge needs "
                            "varied scores. Check its score file or the split.")
        out[n] = (lo, hi)
    return out


def rescaled_targets(rows: Manifest, ranges: dict[str, tuple[float, float]]) -> np.ndarray:
    """Oriented scores min-max rescaled per dataset: the linear alignment of mixed scales."""
    from mixiqa.train import oriented

    y = oriented(rows).astype(np.float64)
    lo = np.array([ranges[r.dataset][0] for r in rows])
    hi = np.array([ranges[r.dataset][1] for r in rows])
    return (y - lo) / (hi - lo)


def to_dataset_scale(q: np.ndarray, rows: Manifest,
                     ranges: dict[str, tuple[float, float]]) -> np.ndarray:
    """q back on each row's own dataset scale (DMOS re-negated); NaN for unseen datasets."""
    out = np.full(len(q), np.nan)
    for i, r in enumerate(rows):
        if r.dataset in ranges:
            lo, hi = ranges[r.dataset]
            v = lo + q[i] * (hi - lo)
            out[i] = v if r.higher_better else -v
    return out


# ---- features -------------------------------------------------------------------------

def encoder_path(cfg: ExperimentConfig) -> Path:
    """The quality encoder file, from ``cfg.method.mapper_kwargs["encoder"]``."""
    path = cfg.method.mapper_kwargs.get("encoder")
    if not path:
        raise ConfigError(f"method '{cfg.method.name}' needs the pretrained quality encoder: "
                          "set method.mapper_kwargs.encoder=RUN/encoder.safetensors (made by "
                          "`mixiqa pretrain`).")
    path = Path(str(path)).expanduser()
    if path.is_dir():
        path = path / "encoder.safetensors"
    if not path.is_file():
        raise ConfigError(f"quality encoder '{path}' not found; run `mixiqa pretrain "
                          "configs/reiqa_pretrain.yaml --images DIR --out RUN` first.")
    return path


def reiqa_features(cfg: ExperimentConfig, manifest: Manifest, device: str,
                   content_backbone=None, log=print) -> np.ndarray:
    """(N, D) features of every manifest image for the method's variant, in manifest order.

    Args:
        content_backbone: The ImageNet backbone if already built (``prep.backbone``).
    """
    from mixiqa.features import ExtractStats, FeatureSpec, extract_features
    from mixiqa.models.backbones import create_backbone

    if cfg.method.name not in VARIANTS:
        raise ConfigError(f"unknown Re-IQA method '{cfg.method.name}'; one of {list(VARIANTS)}.")
    m, paths, parts = cfg.model, [r.path for r in manifest], []
    for kind in VARIANTS[cfg.method.name]:
        if kind == "content":
            name, weights = m.backbone, m.weights
            backbone = content_backbone or create_backbone(name, weights=weights)
        else:
            name = cfg.method.mapper_kwargs.get("encoder_backbone", m.backbone)
            weights = str(encoder_path(cfg))
            backbone = create_backbone(name, weights=weights)
        spec = FeatureSpec(name, weights, m.feature_short, m.feature_crop, tuple(m.scales), "avg")
        stats = ExtractStats()
        parts.append(extract_features(paths, backbone.to(device), spec, cfg.train.cache_dir,
                                      workers=cfg.train.workers, stats=stats))
        if not np.isfinite(parts[-1]).all():
            raise DataError(f"{kind} features ({name}, weights {weights}) contain NaN or inf; "
                            "the weights are broken: pretrain the encoder again.")
        log(f"{kind} features: {stats.computed} computed, {stats.cached} from the cache "
            f"({stats.seconds_total:.0f} s)")
    return np.concatenate(parts, axis=1)                                # (N, D)


# ---- the split runner ---------------------------------------------------------------------

def fit_split(cfg: ExperimentConfig, split, manifest: Manifest, feats: np.ndarray,
              out: Path) -> dict:
    """Ridge on one split's training rows, alpha by validation, metrics on its test rows."""
    from mixiqa.evaluate import evaluate
    from mixiqa.experiment import write_predictions
    from mixiqa.train import oriented

    pos = {k: i for i, k in enumerate(manifest.keys())}
    rows = dict(zip(("train", "val", "test"), split.apply(manifest)))
    x = {p: feats[[pos[k] for k in r.keys()]] for p, r in rows.items()}
    ranges = fit_ranges(rows["train"])
    reg = RidgeRegressor(cfg.method.mapper_kwargs.get("alphas", ALPHAS)).fit(
        x["train"], rescaled_targets(rows["train"], ranges), x["val"], oriented(rows["val"]),
        np.array([r.dataset for r in rows["val"]]))
    q = reg.predict(x["test"])
    test, names = rows["test"], np.array([r.dataset for r in rows["test"]])
    y = oriented(test)
    write_predictions(out / "predictions.csv", test, q, to_dataset_scale(q, test, ranges))
    metrics = {n: {**evaluate(q[names == n], y[names == n], fit="logistic4").as_dict(),
                   "n": int((names == n).sum())} for n in dict.fromkeys(names.tolist())}
    reg.save(out / "ridge.safetensors", {"method": cfg.method.name, "ranges": ranges})
    history = [{"epoch": i, "alpha": a, "loss": mse, "val_srcc": s}
               for i, (a, s, mse) in enumerate(reg.scores_)]
    return {"seed": split.seed, "protocol": split.protocol, "method": cfg.method.name,
            "test": metrics, "val_srcc": reg.val_srcc_,
            "selected": f"alpha={reg.alpha_:g} (best validation SRCC)", "history": history}


def run_reiqa(cfg: ExperimentConfig, prep, splits: list, out: Path, resume: bool,
              device: str, log=print) -> list[dict]:
    """Every split with the Re-IQA regressor; a split with a ``result.json`` is kept on resume.

    Writes ``out/split_NN/{split.json, result.json, predictions.csv, ridge.safetensors}``
    as :func:`mixiqa.experiment.run_splits` does (``history`` lists the alpha grid, one
    entry per alpha, with its training MSE as ``loss``), and returns the result dicts.
    """
    out = Path(out)
    feats = reiqa_features(cfg, prep.manifest, device, getattr(prep, "backbone", None), log)
    from mixiqa.experiment import each_split

    return each_split(splits, out, resume,
                      lambda split, sdir: fit_split(cfg, split, prep.manifest, feats, sdir))


run_reiqa.needs_features = False  # it extracts its own (two backbones, avg pooling)
