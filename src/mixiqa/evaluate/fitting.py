"""The VQEG logistic map from predictions onto the MOS scale, fitted for PLCC and RMSE.

Fits run on standardised data from two starts inside a box (scale-free, and the
over-parameterised forms cannot drift to infinity); an unusable fit falls back to a linear
one, says why, and warns.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from scipy import optimize, stats
from scipy.special import expit

from mixiqa.errors import ConfigError, DataError
from mixiqa.evaluate.metrics import MIN_POINTS, EvaluationWarning, check_pair

FITS = ("logistic4", "logistic5", "linear", "none")
_N_PARAMS = {"logistic4": 4, "logistic5": 5, "linear": 2, "none": 0}
_MAX_STEEPNESS = 1e3  # in standardised units: a transition narrower than 1e-3 std is a step
_BOX = 100.0  # bound on the other logistic parameters, in standardised units


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
    else:  # logistic5: amplitude, slope (its sign rides on the amplitude), centre, linear, offset
        amp = sign * np.ptp(yz)
        starts = [[amp, 1.0, 0.0, 0.0, 0.0], [amp, 4.0, 0.0, 0.0, 0.0]]
        bounds = ([-_BOX, 0.0, -_BOX, -_BOX, -_BOX], [_BOX, _MAX_STEEPNESS, _BOX, _BOX, _BOX])
    return [np.clip(p0, *bounds) for p0 in starts], bounds


def _to_raw(kind: str, b: np.ndarray, mx: float, sx: float, my: float,
            sy: float) -> tuple[float, ...]:
    """Parameters fitted on z = (x - mx) / sx, (y - my) / sy, expressed on raw x and y."""
    if kind == "logistic4":
        out = (my + sy * b[0], my + sy * b[1], mx + sx * b[2], sx * abs(b[3]))
    else:
        out = (sy * b[0], b[1] / sx, mx + sx * b[2], sy * b[3] / sx,
               my + sy * (b[4] - b[3] * mx / sx))
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


def check_fit(fit: str) -> None:
    if fit not in FITS:
        raise ConfigError(f"unknown fit {fit!r}; choose one of {', '.join(FITS)}")


def min_points(fit: str) -> int:
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
    check_fit(kind)
    p, t = check_pair(preds, target, min_points(kind))
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
    warnings.warn(f"{kind} fit {reason}; falling back to a linear fit", EvaluationWarning,
                  stacklevel=2)
    return _linear_map(p, t, f"linear ({kind} fit {reason})")
