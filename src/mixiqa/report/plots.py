"""The report's figures: one PNG per figure, drawn with matplotlib's object API.

No pyplot: each figure gets its own Agg canvas, so drawing a report never touches the
caller's global backend (a notebook's inline backend keeps working) and nothing is set up
at import. Inputs are plain rows (dicts from ``predictions.csv`` / ``raw.csv``) and
numbers; which figures a report holds is decided in :mod:`mixiqa.report`.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from mixiqa.errors import MixiqaError

DPI = 110
GREY = "#9a9a9a"


# ----------------------------------------------------------------------------- canvas


def new_figure(n_panels: int, ncols: int = 3, panel: tuple[float, float] = (4.6, 3.7)):
    """A figure on its own Agg canvas with ``n_panels`` axes in a grid (extras removed).

    Returns:
        ``(figure, axes)`` with ``axes`` a flat list of length ``n_panels``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ncols = max(1, min(n_panels, ncols))
    nrows = max(1, math.ceil(n_panels / ncols))
    fig = Figure(figsize=(panel[0] * ncols, panel[1] * nrows), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)  # the Agg backend, for this figure only
    axes = list(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for ax in axes[n_panels:]:
        ax.remove()
    return fig, axes[:n_panels]


def save_figure(fig, path: Path) -> Path:
    """Write ``fig`` as PNG atomically (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp")
    fig.savefig(tmp, format="png", dpi=DPI)
    os.replace(tmp, path)
    return path


def _column(rows: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
    return np.array([float(r[key]) for r in rows], dtype=np.float64)


def _by_dataset(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    out: dict[str, list] = {}
    for r in rows:
        out.setdefault(r["dataset"], []).append(r)
    return out


# ------------------------------------------------------------------ one run's figures


def plot_mapper_curves(model, rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Each training dataset's learned mapper g_k(q) over the proxy range, one panel each.

    The q range is that of the test predictions, padded 5%; the dataset's theoretical score
    range is shaded, and its test images (q, score) are drawn in grey to show the fit.

    Args:
        model: An :class:`~mixiqa.models.iqa.IQAModel` (no backbone needed).
        rows: ``predictions.csv`` rows of the same split.
        path: Where the PNG goes.
    """
    import torch

    q = _column(rows, "q")
    pad = 0.05 * max(float(np.ptp(q)), 1e-6)
    grid = torch.linspace(float(q.min()) - pad, float(q.max()) + pad, 256)  # (256,)
    per = _by_dataset(rows)
    fig, axes = new_figure(len(model.datasets))
    for ax, ds in zip(axes, model.datasets):
        with torch.no_grad():
            curve = model.to_dataset_scale(grid, ds).float().cpu().numpy()  # (256,) on ds scale
        scale = model.scales[ds]
        ax.axhspan(scale.score_min, scale.score_max, color="tab:green", alpha=0.10,
                   label=f"score range [{scale.score_min:.4g}, {scale.score_max:.4g}]")
        for y in (scale.score_min, scale.score_max):
            ax.axhline(y, color="tab:green", ls="--", lw=0.8)
        if ds in per:
            ax.scatter(_column(per[ds], "q"), _column(per[ds], "score"), s=9, color=GREY,
                       alpha=0.55, lw=0, label=f"test images (n={len(per[ds])})")
        ax.plot(grid.numpy(), curve, color="tab:blue", lw=2, label=f"g(q) [{ds}]")
        direction = "" if scale.higher_better else "\nDMOS: lower is better"
        ax.set_title(f"{ds}: learned mapper{direction}", fontsize=10)
        ax.set_xlabel("proxy quality q (higher is better)")
        ax.set_ylabel(f"{ds} score")
        ax.legend(fontsize=8, loc="best")
        ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_scatter(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Per test dataset: q against the human score, with the fitted 4-parameter logistic.

    The title gives SRCC and PLCC as the run reports them (scores oriented so higher is
    better, PLCC after the logistic, both from :func:`mixiqa.evaluate.evaluate`); the curve
    is that same :func:`~mixiqa.evaluate.fit_map` logistic, drawn on the raw scores.
    """
    from mixiqa.evaluate import evaluate

    per = _by_dataset(rows)
    fig, axes = new_figure(len(per))
    for ax, (ds, part) in zip(axes, per.items()):
        q, y = _column(part, "q"), _column(part, "score")
        higher = str(part[0].get("higher_better", "1")) not in ("0", "False", "false")
        ax.scatter(q, y, s=10, alpha=0.6, lw=0, color="tab:blue", label="test images")
        title = f"{ds} (n={len(q)})"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a fallback fit is named in the legend instead
            try:
                m = evaluate(q, y if higher else -y)  # oriented: as the run's metrics
                title += f"\nSRCC {m.srcc:.3f}   PLCC {m.plcc:.3f}"
                if m.mapping is not None:  # None when the scores are constant
                    xs = np.linspace(q.min(), q.max(), 200)
                    curve = m.mapping(xs) if higher else -m.mapping(xs)  # back to raw DMOS
                    ax.plot(xs, curve, color="tab:red", lw=2, label=f"fit: {m.fit}")
            except MixiqaError as err:  # too few images, constant predictions
                title += f"\nno fit: {err}"[:80]
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("proxy quality q")
        ax.set_ylabel(f"{ds} {'MOS' if higher else 'DMOS (lower is better)'}")
        ax.legend(fontsize=8, loc="best")
        ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_training_curves(histories: Mapping[str, Sequence[Mapping[str, Any]]], path: Path,
                         title: str = "Training curves") -> Path:
    """Loss and validation SRCC against epoch, one line per split or per benchmark cell.

    The epoch with the best validation SRCC (what checkpoint selection keeps) is starred.
    """
    fig, (ax_loss, ax_val) = new_figure(2, ncols=2, panel=(5.6, 3.9))
    losses = [h["loss"] for hist in histories.values() for h in hist if h.get("loss") is not None]
    for i, (label, hist) in enumerate(histories.items()):
        color = f"C{i % 10}"
        ep = [h["epoch"] for h in hist if h.get("loss") is not None]
        ax_loss.plot(ep, [h["loss"] for h in hist if h.get("loss") is not None],
                     color=color, marker="o", ms=3, label=label)
        val = [(h["epoch"], h["val_srcc"]) for h in hist if h.get("val_srcc") is not None]
        if val:
            ex, vy = zip(*val)
            ax_val.plot(ex, vy, color=color, marker="o", ms=3, label=label)
            best = int(np.argmax(vy))
            ax_val.plot(ex[best], vy[best], "*", color=color, ms=13, mec="black", mew=0.6)
    log = bool(losses) and min(losses) > 0 and max(losses) / min(losses) > 20
    if log:
        ax_loss.set_yscale("log")  # different methods' losses differ by orders of magnitude
    ax_loss.set(xlabel="epoch", ylabel="training loss",
                title="Training loss (log scale)" if log else "Training loss")
    ax_val.set(xlabel="epoch", ylabel="validation SRCC",
               title="Validation SRCC (star: best epoch)")
    for ax in (ax_loss, ax_val):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8, loc="best")
        else:
            ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(title)
    return save_figure(fig, path)


# ------------------------------------------------------------------ comparisons


def plot_method_bars(srcc: Mapping[str, Mapping[str, Sequence[float]]], path: Path,
                     title: str) -> Path:
    """Grouped bars: median SRCC per method (bars) for each test dataset (groups).

    Args:
        srcc: Method -> test dataset -> SRCC of each split.
        path: Where the PNG goes.
        title: Figure title (which protocol and dataset group).

    Error bars span the interquartile range over splits (none with a single split).
    """
    methods = list(srcc)
    datasets = list(dict.fromkeys(ds for per in srcc.values() for ds in per))
    width = 0.8 / max(len(methods), 1)
    x = np.arange(len(datasets), dtype=np.float64)
    fig, (ax,) = new_figure(1, panel=(max(6.0, 1.1 + 0.45 * len(methods) * len(datasets)), 4.4))
    lows = [0.0]
    for i, method in enumerate(methods):
        vals = [np.asarray(srcc[method].get(ds, []), dtype=np.float64) for ds in datasets]
        q1, med, q3 = (np.array([np.percentile(v, p) if v.size else np.nan for v in vals])
                       for p in (25, 50, 75))
        bars = ax.bar(x + (i - (len(methods) - 1) / 2) * width, med, width * 0.92,
                      yerr=np.vstack([med - q1, q3 - med]), capsize=3, label=method,
                      color=f"C{i % 10}", error_kw={"lw": 1, "ecolor": "black"})
        if len(methods) * len(datasets) <= 24:
            ax.bar_label(bars, fmt="%.3f", fontsize=7, padding=2)
        lows.append(float(np.nanmin(q1)) if np.isfinite(q1).any() else 0.0)
    ax.set_xticks(x, datasets)
    ax.set_ylim(min(lows) - 0.05 if min(lows) < 0 else 0.0, 1.08)  # room for the labels
    ax.set(xlabel="test dataset", ylabel="median SRCC over splits (bars: IQR)", title=title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(title="method", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return save_figure(fig, path)


def plot_split_boxes(srcc: Mapping[str, Mapping[str, Sequence[float]]], path: Path,
                     title: str) -> Path:
    """Per test dataset: a box of each method's per-split SRCC, with the splits as dots."""
    methods = list(srcc)
    datasets = list(dict.fromkeys(ds for per in srcc.values() for ds in per))
    fig, axes = new_figure(len(datasets), panel=(max(4.0, 0.9 * len(methods) + 1.5), 3.9))
    jitter = np.random.default_rng(0)  # fixed: the same report twice gives the same picture
    for ax, ds in zip(axes, datasets):
        data = [np.asarray(srcc[m].get(ds, []), dtype=np.float64) for m in methods]
        pos = [i for i, d in enumerate(data) if d.size]
        boxes = ax.boxplot([data[i] for i in pos], positions=pos, widths=0.6, showfliers=False,
                           patch_artist=True, medianprops={"color": "black", "lw": 1.5})
        for i, box in zip(pos, boxes["boxes"]):  # the method's colour, as in the bar chart
            box.set(facecolor=f"C{i % 10}", alpha=0.25)
        for i in pos:
            ax.scatter(i + jitter.uniform(-0.15, 0.15, data[i].size), data[i], s=12,
                       color=f"C{i % 10}", alpha=0.8, zorder=3)
        ax.set_xticks(range(len(methods)), methods, rotation=30, ha="right")
        ax.set(title=f"{ds}", ylabel="SRCC per split")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title)
    return save_figure(fig, path)


def plot_pooled_srcc(pooled: Mapping[str, float], path: Path) -> Path:
    """Synthetic benchmark: pooled alignment SRCC per method, best on top."""
    items = sorted(pooled.items(), key=lambda kv: kv[1])
    fig, (ax,) = new_figure(1, panel=(6.4, 1.2 + 0.42 * len(items)))
    bars = ax.barh([k for k, _ in items], [v for _, v in items], color="tab:blue")
    ax.bar_label(bars, fmt="%.3f", fontsize=8, padding=3)
    lo = min([0.0] + [v for _, v in items])
    ax.set_xlim(lo - 0.05 if lo < 0 else 0.0, 1.08)
    ax.set(xlabel="pooled SRCC of the aligned scores (all datasets together)",
           title="Synthetic benchmark: alignment across scales")
    ax.grid(axis="x", alpha=0.3)
    return save_figure(fig, path)
