"""IQA evaluation: SRCC, KRCC, PLCC, RMSE, the VQEG logistic fit, and aggregation.

A functional core on 1-D scores (numpy arrays, lists or CPU tensors), torchmetrics-style:
``srcc(preds, target)``. :func:`evaluate` computes all four metrics at once, PLCC and RMSE
after mapping the predictions onto the target (MOS) scale with a fitted monotonic
logistic, as the field reports them. :func:`median_over_splits` and :func:`weighted_mean`
give the summary numbers of the papers: the median over random splits, and the
test-image-count-weighted mean over datasets.

Undefined metrics (constant predictions or targets) are ``nan`` with a reason and an
:class:`EvaluationWarning`; a logistic fit that fails falls back to a linear one and says so.

Modules: ``metrics`` (the four metrics and their input checks), ``fitting`` (the logistic
map), and this one (:class:`Metrics` in one call, and the aggregation over splits and
datasets). Every public name is importable from ``mixiqa.evaluate``.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from mixiqa.errors import DataError
from mixiqa.evaluate.fitting import (FITS, FittedMap, check_fit, fit_map, logistic4, logistic5,
                                     min_points)
from mixiqa.evaluate.metrics import (HIGHER_IS_BETTER, METRIC_NAMES, MIN_POINTS,
                                     EvaluationWarning, check_pair, constant_reason, krcc, plcc,
                                     rmse, srcc)

__all__ = ["EvaluationWarning", "FITS", "FittedMap", "HIGHER_IS_BETTER", "METRIC_NAMES",
           "MIN_POINTS", "Metrics", "evaluate", "fit_map", "krcc", "logistic4", "logistic5",
           "median_over_splits", "plcc", "rmse", "srcc", "weighted_mean"]


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
    check_fit(fit)
    p, t = check_pair(preds, target, min_points(fit))
    if reason := constant_reason(p, t):
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
        out["fit"] = (next(iter(fits)) if len(fits) == 1 else
                      "; ".join(f"{k} x{v}" for k, v in fits.items()))
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
        raise DataError("weights must be non-negative image counts with a positive sum, "
                        f"got {dict(weights)}")
    rows = {k: _as_row(per_dataset[k], f"dataset {k!r}") for k in names}
    used = [m for m in metrics if all(m in row for row in rows.values())]
    if not used:
        raise DataError(f"no metric among {list(metrics)} is present for every dataset")
    out: dict[str, Any] = {m: float(np.dot(w, [rows[k][m] for k in names]) / w.sum()) for m in used}
    out.update(n_images=sum(weights[k] for k in names), n_datasets=len(names))
    return out
