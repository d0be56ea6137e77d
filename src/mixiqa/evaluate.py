"""IQA evaluation: SRCC, KRCC, PLCC, RMSE, the VQEG logistic fit, and aggregation.

A functional core on 1-D scores (numpy arrays, lists or CPU tensors), torchmetrics-style:
``srcc(preds, target)``. :func:`evaluate` computes all four metrics at once, PLCC and RMSE
after mapping the predictions onto the target (MOS) scale with a fitted monotonic
logistic, as the field reports them. :func:`median_over_splits` and :func:`weighted_mean`
give the summary numbers of the papers: the median over random splits, and the
test-image-count-weighted mean over datasets.

Undefined metrics (constant predictions or targets) are ``nan`` with a reason and an
:class:`EvaluationWarning`; a logistic fit that fails falls back to a linear one and says so.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from scipy import optimize, stats
from scipy.special import expit

from mixiqa.errors import ConfigError, DataError

METRIC_NAMES = ("srcc", "krcc", "plcc", "rmse")
HIGHER_IS_BETTER = {"srcc": True, "krcc": True, "plcc": True, "rmse": False}
FITS = ("logistic4", "logistic5", "linear", "none")
MIN_POINTS = 3
_N_PARAMS = {"logistic4": 4, "logistic5": 5, "linear": 2, "none": 0}
_MAX_STEEPNESS = 1e3  # in standardised units: a transition narrower than 1e-3 std is a step
_BOX = 100.0  # bound on the other logistic parameters, in standardised units


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


def _check_pair(preds: Any, target: Any, min_points: int = MIN_POINTS) -> tuple[np.ndarray, np.ndarray]:
    p, t = _as_vector(preds, "preds"), _as_vector(target, "target")
    if p.size != t.size:
        raise DataError(
            f"preds and target differ in length ({p.size} vs {t.size}); "
            "pass exactly one prediction per target score"
        )
    if p.size < min_points:
        raise DataError(f"need at least {min_points} (preds, target) pairs, got {p.size}")
    return p, t


def _constant_reason(p: np.ndarray, t: np.ndarray) -> str | None:
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
    p, t = _check_pair(preds, target)
    if reason := _constant_reason(p, t):
        return _undefined("srcc", reason)
    return float(stats.spearmanr(p, t).statistic)


def krcc(preds: Any, target: Any) -> float:
    """Kendall rank-order correlation, tau-b (corrected for ties). Higher is better."""
    p, t = _check_pair(preds, target)
    if reason := _constant_reason(p, t):
        return _undefined("krcc", reason)
    return float(stats.kendalltau(p, t, variant="b").statistic)


def plcc(preds: Any, target: Any) -> float:
    """Pearson linear correlation of the scores as given (no fit). Higher is better.

    For the field's PLCC, map the predictions first (:func:`fit_map`) or use :func:`evaluate`.
    """
    p, t = _check_pair(preds, target)
    if reason := _constant_reason(p, t):
        return _undefined("plcc", reason)
    return float(stats.pearsonr(p, t).statistic)


def rmse(preds: Any, target: Any) -> float:
    """Root mean squared error, in the target's units. Lower is better."""
    p, t = _check_pair(preds, target)
    return float(np.sqrt(np.mean((p - t) ** 2)))


# ------------------------------------------------------------------- logistic fitting


def logistic4(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """VQEG 4-parameter logistic: (b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2.

    Reference: VQEG, Final report on the validation of objective models of video quality
    assessment, Phase II (2003).
    """
    return b2 + (b1 - b2) * expit((x - b3) / abs(b4))  # expit: no overflow in exp


def logistic5(x: np.ndarray, b1: float, b2: float, b3: float, b4: float, b5: float) -> np.ndarray:
    """5-parameter logistic: b1 * (1/2 - 1 / (1 + exp(b2 (x - b3)))) + b4 x + b5.

    Reference: Sheikh, Sabir & Bovik, A statistical evaluation of recent full reference
    image quality assessment algorithms, IEEE TIP 2006.
    """
    return b1 * (expit(b2 * (x - b3)) - 0.5) + b4 * x + b5  # 1/2 - 1/(1+e^u) == expit(u) - 1/2


def _linear(x: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    return slope * x + intercept


_FORMS: dict[str, Callable[..., np.ndarray]] = {
    "logistic4": logistic4, "logistic5": logistic5, "linear": _linear, "none": lambda x: x,
}


@dataclass(frozen=True)
class FittedMap:
    """A monotonic map from predictions onto the target (MOS) scale; call it to apply it.

    Attributes:
        kind: The form used: "logistic4", "logistic5", "linear" or "none" (identity).
        params: Parameters in the raw units of preds and target, in the formula's order
            (:func:`logistic4`, :func:`logistic5`; (slope, intercept) for linear).
        fit: How it was obtained: the kind requested, or the fallback and its reason,
            e.g. "linear (logistic4 fit did not converge)".
    """

    kind: str
    params: tuple[float, ...]
    fit: str

    def __call__(self, x: Any) -> np.ndarray:
        return _FORMS[self.kind](np.asarray(x, dtype=np.float64), *self.params)


class _FitFailure(Exception):
    """Internal: a logistic fit that cannot be used; the message completes "<kind> fit ..."."""


def _setup(kind: str, yz: np.ndarray, sign: float) -> tuple[list[np.ndarray], tuple]:
    """Starts and bounds on standardised data: scale-free versions of the usual guesses.

    The box keeps the over-parameterised forms from drifting to infinity (a near-linear
    logistic with ever larger asymptotes, or logistic5's sigmoid cancelling its linear
    term), which costs nothing in fit quality but would never converge.
    """
    lo, hi = (yz.max(), yz.min()) if sign > 0 else (yz.min(), yz.max())  # decreasing if r < 0
    if kind == "logistic4":  # [max y, min y, mean x, std x / 4] as in VQEG-style IQA code
        starts = [[lo, hi, 0.0, 0.25], [lo, hi, 0.0, 1.0]]
        bounds = ([-_BOX, -_BOX, -_BOX, 1.0 / _MAX_STEEPNESS], [_BOX, _BOX, _BOX, np.inf])
    else:  # logistic5: amplitude, slope (its sign is carried by the amplitude), centre, linear, offset
        amp = sign * np.ptp(yz)
        starts = [[amp, 1.0, 0.0, 0.0, 0.0], [amp, 4.0, 0.0, 0.0, 0.0]]
        bounds = ([-_BOX, 0.0, -_BOX, -_BOX, -_BOX], [_BOX, _MAX_STEEPNESS, _BOX, _BOX, _BOX])
    return [np.clip(p0, *bounds) for p0 in starts], bounds


def _to_raw(kind: str, b: np.ndarray, mx: float, sx: float, my: float, sy: float) -> tuple[float, ...]:
    """Parameters fitted on z = (x - mx) / sx, (y - my) / sy, expressed on raw x and y."""
    if kind == "logistic4":
        out = (my + sy * b[0], my + sy * b[1], mx + sx * b[2], sx * abs(b[3]))
    else:
        out = (sy * b[0], b[1] / sx, mx + sx * b[2], sy * b[3] / sx, my + sy * (b[4] - b[3] * mx / sx))
    return tuple(float(v) for v in out)


def _fit_logistic(p: np.ndarray, t: np.ndarray, kind: str, maxfev: int) -> tuple[float, ...]:
    mx, sx, my, sy = p.mean(), p.std(), t.mean(), t.std()
    if sy == 0:
        raise _FitFailure("is degenerate (target scores are constant)")
    xz, yz = (p - mx) / sx, (t - my) / sy  # standardised, so starts and bounds are scale-free
    form = _FORMS[kind]
    starts, bounds = _setup(kind, yz, 1.0 if np.corrcoef(p, t)[0, 1] >= 0 else -1.0)
    best, best_sse = None, np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optimize.OptimizeWarning)  # covariance is not used
        for p0 in starts:
            try:
                b, _ = optimize.curve_fit(form, xz, yz, p0=p0, bounds=bounds, maxfev=maxfev)
            except (RuntimeError, ValueError):  # no convergence within maxfev
                continue
            sse = float(np.sum((form(xz, *b) - yz) ** 2))
            if np.all(np.isfinite(b)) and sse < best_sse:
                best, best_sse = b, sse
    if best is None:
        raise _FitFailure("did not converge")
    steepness = 1.0 / abs(best[3]) if kind == "logistic4" else abs(best[1])
    if steepness >= _MAX_STEEPNESS * (1 - 1e-6):
        raise _FitFailure("collapsed to a step")
    return _to_raw(kind, best, mx, sx, my, sy)


def _defect(mapping: FittedMap, p: np.ndarray, t: np.ndarray) -> str | None:
    grid = mapping(np.linspace(p.min(), p.max(), 513))
    if not np.all(np.isfinite(grid)):
        return "gave non-finite values"
    tol = 1e-9 * np.ptp(t)
    if np.ptp(grid) <= tol:
        return "is degenerate (constant)"
    steps = np.diff(grid)
    if (steps < -tol).any() and (steps > tol).any():
        return "is not monotonic over the prediction range"
    return None


def _linear_map(p: np.ndarray, t: np.ndarray, description: str) -> FittedMap:
    res = stats.linregress(p, t)
    return FittedMap("linear", (float(res.slope), float(res.intercept)), description)


def _check_fit(fit: str) -> None:
    if fit not in FITS:
        raise ConfigError(f"unknown fit {fit!r}; choose one of {', '.join(FITS)}")


def _min_points(fit: str) -> int:
    return max(MIN_POINTS, _N_PARAMS[fit] + 1)  # more points than parameters


def fit_map(preds: Any, target: Any, kind: str = "logistic4", maxfev: int = 1_000) -> FittedMap:
    """Fit a monotonic map from predictions onto the target scale, as VQEG prescribes.

    The logistic is fitted by least squares (scipy.optimize.curve_fit, trust-region with
    bounds) on standardised data from two starts; parameters come back in raw units. If no
    start converges within ``maxfev`` evaluations, or the best fit is unusable (constant, a
    step, or for logistic5 not monotonic over the predictions' range), a linear fit is used
    instead, its ``fit`` says why, and an :class:`EvaluationWarning` is emitted.

    Args:
        preds: Model predictions, one per image.
        target: Human scores (MOS) of the same images.
        kind: "logistic4" (default), "logistic5", "linear" or "none" (identity).
        maxfev: Most function evaluations per start.

    Returns:
        The fitted map; ``mapping(preds)`` gives predictions on the MOS scale.

    Reference: VQEG FR-TV Phase II report (2003); Sheikh et al., IEEE TIP 2006.
    """
    _check_fit(kind)
    p, t = _check_pair(preds, target, _min_points(kind))
    if kind == "none":
        return FittedMap("none", (), "none")
    if np.all(p == p[0]):
        raise DataError("predictions are constant: no map onto the target scale can be fitted")
    if kind == "linear":
        return _linear_map(p, t, "linear")
    try:
        mapping = FittedMap(kind, _fit_logistic(p, t, kind, maxfev), kind)
        reason = _defect(mapping, p, t)
    except _FitFailure as failure:
        reason = str(failure)
    if reason is None:
        return mapping
    warnings.warn(f"{kind} fit {reason}; falling back to a linear fit", EvaluationWarning, stacklevel=2)
    return _linear_map(p, t, f"linear ({kind} fit {reason})")


# ------------------------------------------------------------------------- one call


@dataclass(frozen=True)
class Metrics:
    """The four IQA metrics of one test set.

    Attributes:
        srcc: Spearman correlation of the raw predictions (higher is better).
        krcc: Kendall tau-b of the raw predictions (higher is better).
        plcc: Pearson correlation after the fitted map (higher is better).
        rmse: RMSE after the fitted map, in MOS units (lower is better).
        n: Number of images.
        fit: The map used for plcc/rmse, with the reason for any fallback.
        note: Why metrics are nan, if they are.
        mapping: The fitted map, for plots; not part of :meth:`as_dict`.
    """

    srcc: float
    krcc: float
    plcc: float
    rmse: float
    n: int
    fit: str
    note: str = ""
    mapping: FittedMap | None = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """Plain values (no mapping), for JSON and tables."""
        return {k: getattr(self, k) for k in (*METRIC_NAMES, "n", "fit", "note")}


def evaluate(preds: Any, target: Any, fit: str = "logistic4", maxfev: int = 1_000) -> Metrics:
    """SRCC and KRCC of the predictions, PLCC and RMSE after mapping them onto the MOS scale.

    Args:
        preds: Model predictions (proxy scores), one per image.
        target: Human scores of the same images.
        fit: Map for PLCC/RMSE: "logistic4" (default), "logistic5", "linear" or "none".
        maxfev: Most function evaluations per start of a logistic fit.

    Returns:
        The metrics; constant predictions or targets give nan correlations with ``note``
        saying why (and an :class:`EvaluationWarning`) instead of an error.

    Raises:
        DataError: Unequal lengths, NaN/inf values, or too few points for the fit.
        ConfigError: An unknown ``fit``.
    """
    _check_fit(fit)
    p, t = _check_pair(preds, target, _min_points(fit))
    if reason := _constant_reason(p, t):
        warnings.warn(f"metrics are nan: {reason}", EvaluationWarning, stacklevel=2)
        rmse_value = rmse(p, t) if fit == "none" else math.nan
        fit_used = "none" if fit == "none" else f"none ({reason})"
        note = f"{reason}: correlations are undefined"
        return Metrics(math.nan, math.nan, math.nan, rmse_value, p.size, fit_used, note)
    mapping = fit_map(p, t, fit, maxfev)
    mapped = mapping(p)  # (N,) predictions on the target scale
    plcc_value, note = math.nan, f"the {mapping.kind} map is constant over the predictions"
    if np.all(mapped == mapped[0]):  # e.g. a linear fallback with zero slope
        warnings.warn(f"plcc is nan: {note}", EvaluationWarning, stacklevel=2)
    else:
        plcc_value, note = plcc(mapped, t), ""
    return Metrics(srcc(p, t), krcc(p, t), plcc_value, rmse(mapped, t), p.size, mapping.fit, note,
                   mapping=mapping)


# ---------------------------------------------------------------------- aggregation


def _as_row(item: Metrics | Mapping[str, Any], where: str) -> dict[str, Any]:
    if isinstance(item, Metrics):
        return item.as_dict()
    if isinstance(item, Mapping):
        return dict(item)
    raise DataError(f"{where} is a {type(item).__name__}; pass a Metrics or a dict of metrics")


def median_over_splits(splits: Sequence[Metrics | Mapping[str, Any]]) -> dict[str, Any]:
    """Median of each metric over random splits, with its spread, as IQA papers report.

    The metrics are those of the first split (each later split must have them too).
    A nan in any split makes that metric's summary nan: an undefined split is to be
    looked at, not hidden.

    Returns:
        A flat dict: ``<m>`` (the median), ``<m>_q1``, ``<m>_q3``, ``<m>_iqr``, ``<m>_min``,
        ``<m>_max`` for each metric m, ``n_splits``, and ``fit`` (the fits used, counted
        when they differ) where the splits record one.
    """
    rows = [_as_row(s, f"split {i}") for i, s in enumerate(splits)]
    if not rows:
        raise DataError("median_over_splits got no splits; pass one Metrics (or dict) per split")
    names = [m for m in METRIC_NAMES if m in rows[0]]
    if not names:
        raise DataError(f"split 0 has none of the metrics {METRIC_NAMES}; keys: {sorted(rows[0])}")
    out: dict[str, Any] = {"n_splits": len(rows)}
    for name in names:
        missing = [i for i, row in enumerate(rows) if name not in row]
        if missing:
            raise DataError(f"split(s) {missing} have no {name!r} but split 0 has; "
                            "pass the same metrics for every split")
        values = np.array([row[name] for row in rows], dtype=np.float64)
        q1, med, q3 = (float(v) for v in np.percentile(values, [25, 50, 75]))
        out.update({name: med, f"{name}_q1": q1, f"{name}_q3": q3, f"{name}_iqr": q3 - q1,
                    f"{name}_min": float(values.min()), f"{name}_max": float(values.max())})
    fits = Counter(str(row["fit"]) for row in rows if "fit" in row)
    if fits:
        out["fit"] = next(iter(fits)) if len(fits) == 1 else "; ".join(f"{k} x{v}" for k, v in fits.items())
    return out


def weighted_mean(
    per_dataset: Mapping[str, Metrics | Mapping[str, Any]],
    weights: Mapping[str, float],
    metrics: Sequence[str] = ("srcc", "krcc", "plcc"),
) -> dict[str, Any]:
    """Mean of each metric over datasets, weighted by test image count, as papers report it.

    Per-dataset entries may be Metrics or dicts, e.g. the output of
    :func:`median_over_splits` (its ``<m>`` key is the median). RMSE is in each dataset's
    own units, so it is left out unless asked for. Metrics absent from some dataset are
    skipped.

    Args:
        per_dataset: Dataset name -> its metrics.
        weights: Dataset name -> number of test images.
        metrics: Which metrics to average.

    Returns:
        ``{metric: weighted mean, ..., "n_images": total weight, "n_datasets": count}``.
    """
    if not per_dataset:
        raise DataError("weighted_mean got no datasets; pass {dataset name: metrics}")
    names = list(per_dataset)
    missing = [k for k in names if k not in weights]
    if missing:
        raise DataError(f"no weight (test image count) for dataset(s) {missing}; "
                        f"weights has {sorted(weights)}")
    w = np.array([weights[k] for k in names], dtype=np.float64)
    if not np.all(np.isfinite(w)) or (w < 0).any() or w.sum() <= 0:
        raise DataError(f"weights must be non-negative image counts with a positive sum, got {dict(weights)}")
    rows = {k: _as_row(per_dataset[k], f"dataset {k!r}") for k in names}
    used = [m for m in metrics if all(m in row for row in rows.values())]
    if not used:
        raise DataError(f"no metric among {list(metrics)} is present for every dataset")
    out: dict[str, Any] = {m: float(np.dot(w, [rows[k][m] for k in names]) / w.sum()) for m in used}
    out.update(n_images=sum(weights[k] for k in names), n_datasets=len(names))
    return out
