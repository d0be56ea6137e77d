"""The four IQA metrics on 1-D scores: SRCC, KRCC, PLCC (as given) and RMSE.

Inputs are numpy arrays, lists or CPU tensors, checked here once (lengths, NaN/inf, enough
points); an undefined correlation (constant input) is ``nan`` with an
:class:`EvaluationWarning` saying why.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from scipy import stats

from mixiqa.errors import DataError

METRIC_NAMES = ("srcc", "krcc", "plcc", "rmse")
HIGHER_IS_BETTER = {"srcc": True, "krcc": True, "plcc": True, "rmse": False}
MIN_POINTS = 3


class EvaluationWarning(UserWarning):
    """A metric is undefined (nan), or a requested fit fell back to a simpler one."""


# ----------------------------------------------------------------------------- inputs


def _as_vector(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor: leave the graph and the device
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise DataError(f"{name} must be numbers, got {type(x).__name__}: {err}") from err
    if arr.ndim > 1 and arr.size == max(arr.shape):  # (N, 1) or (1, N): one column or row
        arr = arr.reshape(-1)
    if arr.ndim != 1:
        raise DataError(f"{name} must be 1-D scores, got shape {arr.shape}; flatten it first")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise DataError(
            f"{name} has {int(bad.sum())} NaN/inf value(s) (first at index "
            f"{int(np.flatnonzero(bad)[0])}); drop or fix those images before evaluating"
        )
    return arr


def check_pair(preds: Any, target: Any,
               min_points: int = MIN_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Both inputs as float64 vectors of one length, finite, at least ``min_points`` long."""
    p, t = _as_vector(preds, "preds"), _as_vector(target, "target")
    if p.size != t.size:
        raise DataError(
            f"preds and target differ in length ({p.size} vs {t.size}); "
            "pass exactly one prediction per target score"
        )
    if p.size < min_points:
        raise DataError(f"need at least {min_points} (preds, target) pairs, got {p.size}")
    return p, t


def constant_reason(p: np.ndarray, t: np.ndarray) -> str | None:
    for arr, name in ((p, "predictions"), (t, "target scores")):
        if np.all(arr == arr[0]):
            return f"{name} are constant"
    return None


def _undefined(metric: str, reason: str) -> float:
    warnings.warn(f"{metric} is nan: {reason}, so the correlation is undefined",
                  EvaluationWarning, stacklevel=3)
    return math.nan


# ---------------------------------------------------------------------------- metrics


def srcc(preds: Any, target: Any) -> float:
    """Spearman rank-order correlation (monotonicity); ties get their mean rank.

    Higher is better, in [-1, 1]. ``nan`` (with a warning) when either input is constant.
    """
    p, t = check_pair(preds, target)
    if reason := constant_reason(p, t):
        return _undefined("srcc", reason)
    return float(stats.spearmanr(p, t).statistic)


def krcc(preds: Any, target: Any) -> float:
    """Kendall rank-order correlation, tau-b (corrected for ties). Higher is better."""
    p, t = check_pair(preds, target)
    if reason := constant_reason(p, t):
        return _undefined("krcc", reason)
    return float(stats.kendalltau(p, t, variant="b").statistic)


def plcc(preds: Any, target: Any) -> float:
    """Pearson linear correlation of the scores as given (no fit). Higher is better.

    For the field's PLCC, map the predictions first (:func:`fit_map`) or use :func:`evaluate`.
    """
    p, t = check_pair(preds, target)
    if reason := constant_reason(p, t):
        return _undefined("plcc", reason)
    return float(stats.pearsonr(p, t).statistic)


def rmse(preds: Any, target: Any) -> float:
    """Root mean squared error, in the target's units. Lower is better."""
    p, t = check_pair(preds, target)
    return float(np.sqrt(np.mean((p - t) ** 2)))
