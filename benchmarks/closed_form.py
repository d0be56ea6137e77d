"""Closed-form references on the cached native features: Gaussian kernel ridge (KRR) for
each dataset alone, pooled, and multi-task, on the splits of configs/bench_real.yaml.

    uv run python benchmarks/closed_form.py                       # Lite0 features (~6 min)
    uv run python benchmarks/closed_form.py --backbone efficientnet_lite0 efficientnet_lite2

What the MLP and kernel heads of the package are measured against: the frozen-feature
regressor of the field (SVR/KRR on pretrained features) with its hyper-parameters chosen
on VALIDATION SRCC of the split60 protocol, then scored on the test rows of split60 and
split80 (seeds 0-9). Models, all on features standardised with the training part:

- ``alone``: one KRR per dataset on its own scores;
- ``pooled``: one KRR on every training row, targets standardised within each dataset (the
  closed-form twin of linear rescaling), rows weighted so each dataset counts the same;
- ``multitask``: kernel ``k(x, x') (1 + lam [same dataset])``: a shared function plus one
  per dataset, fitted jointly (Evgeniou & Pontil, KDD 2004).

Several backbones concatenate their features. Features come from the cache (extracted on
first use: ~12 min for Lite0, ~15 min for Lite2 on a 2-core CPU).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.linalg import cho_factor, cho_solve

from mixiqa.config import load_config
from mixiqa.errors import run_command
from mixiqa.evaluate import srcc
from mixiqa.experiment import build_splits, prepare
from mixiqa.train import oriented

GAMMAS = (0.5, 1.0)          # k = exp(-gamma ||z - z'||^2 / D), as the kernel head
ALPHAS = (0.03, 0.1, 0.3)    # ridge penalty
LAMBDA = 2.0                 # multitask: weight of the per-dataset part
NAMES = ("clive", "biq2021")


def gaussian(a: np.ndarray, b: np.ndarray, gamma: float) -> np.ndarray:
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T
    return np.exp(-gamma / a.shape[1] * np.maximum(d2, 0))


def solve(k: np.ndarray, t: np.ndarray, alpha: float, w: np.ndarray | None = None):
    """Dual coefficients c (n,) of min sum_i w_i (f(x_i) - t_i)^2 + alpha |f|^2:
    (K + alpha W^-1) c = t; every w_i = 1 when ``w`` is None."""
    reg = np.eye(len(t)) if w is None else np.diag(1 / w)
    return cho_solve(cho_factor(k + alpha * reg), t)


def solve_all(k: np.ndarray, t: np.ndarray, w: np.ndarray) -> dict[float, np.ndarray]:
    """``solve`` for every alpha of the grid."""
    return {a: solve(k, t, a, w) for a in ALPHAS}


def dataset_weights(dom_tr: np.ndarray) -> np.ndarray:
    """Row weights (n,) that give every dataset the same total say."""
    w = np.ones(len(dom_tr))
    for n in NAMES:
        w[dom_tr == n] = len(dom_tr) / (len(NAMES) * (dom_tr == n).sum())
    return w


def split_rows(feats, y, dom, pos, split, part: str):
    """Row indices, standardised features and targets of one split.

    Returns ``tr`` (n,), ``ev`` (m,), ``z_tr`` (n, D), ``z_ev`` (m, D) (features standardised
    with the training rows) and ``t`` (n,): each dataset's training scores standardised.
    """
    tr = np.array([pos[k] for k in split.train])
    ev = np.array([pos[k] for k in getattr(split, part)])
    mu, sd = feats[tr].mean(0), feats[tr].std(0) + 1e-6
    t = y[tr].copy()
    for n in NAMES:
        m = dom[tr] == n
        t[m] = (t[m] - t[m].mean()) / t[m].std()
    return tr, ev, (feats[tr] - mu) / sd, (feats[ev] - mu) / sd, t


def fit_predict(model: str, z_tr, z_ev, dom_tr, dom_ev, t, gamma) -> dict[float, np.ndarray]:
    """Predictions on the evaluation rows for every alpha."""
    k_tr, k_ev = gaussian(z_tr, z_tr, gamma), gaussian(z_ev, z_tr, gamma)
    if model == "alone":
        out = {a: np.zeros(len(z_ev)) for a in ALPHAS}
        for n in NAMES:
            m, me = dom_tr == n, dom_ev == n
            for a, c in solve_all(k_tr[np.ix_(m, m)], t[m], np.ones(m.sum())).items():
                out[a][me] = k_ev[np.ix_(me, m)] @ c
        return out
    w = dataset_weights(dom_tr)
    if model == "multitask":
        k_tr = k_tr * (1 + LAMBDA * (dom_tr[:, None] == dom_tr[None]))
        k_ev = k_ev * (1 + LAMBDA * (dom_ev[:, None] == dom_tr[None]))
    return {a: k_ev @ c for a, c in solve_all(k_tr, t, w).items()}


def run(feats, manifest, splits, part: str, grid) -> dict:
    """Per (model, gamma, alpha): per-dataset SRCC lists over splits on ``part`` rows."""
    pos = {k: i for i, k in enumerate(manifest.keys())}
    y = oriented(manifest)
    dom = np.array([r.dataset for r in manifest])
    res: dict = {}
    for split in splits:
        tr, ev, z_tr, z_ev, t = split_rows(feats, y, dom, pos, split, part)
        for model, gamma in grid:
            for a, p in fit_predict(model, z_tr, z_ev, dom[tr], dom[ev], t, gamma).items():
                for n in NAMES:
                    m = dom[ev] == n
                    res.setdefault((model, gamma, a), {}).setdefault(n, []).append(
                        srcc(p[m], y[ev][m]))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/native.yaml")
    ap.add_argument("--backbone", nargs="+", default=["efficientnet_lite0"])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--out", default="runs/closed-form")
    args = ap.parse_args()
    seeds = f"split.seeds={list(range(args.seeds))}"
    parts, manifest = [], None
    for b in args.backbone:
        cfg = load_config(args.config, [f"model.backbone={b}", seeds])
        prep = prepare(cfg, "cpu", log=lambda *a: None)
        parts.append(prep.feats.numpy().astype(np.float64))
        manifest = prep.manifest
    feats = np.concatenate(parts, axis=1)
    splits = {p: build_splits(load_config(args.config, [f"split.ratios={r}", seeds]), manifest)
              for p, r in (("split60", "[0.6,0.2,0.2]"), ("split80", "[0.8,0.0,0.2]"))}
    label = " + ".join(args.backbone)
    print(f"features: {label} ({feats.shape[1]} numbers); seeds 0-{args.seeds - 1}\n")
    print("| model | chosen on validation | split60 CLIVE | split60 BIQ2021 | split80 CLIVE "
          "| split80 BIQ2021 |\n|---|---|---|---|---|---|")
    summary = {}
    for model in ("alone", "pooled", "multitask"):
        val = run(feats, manifest, splits["split60"], "val", [(model, g) for g in GAMMAS])
        # one setting per dataset: its own median validation SRCC chooses
        best = {n: max(val, key=lambda k: np.median(val[k][n])) for n in NAMES}
        row = {"chosen": {n: {"gamma": best[n][1], "alpha": best[n][2]} for n in NAMES}}
        for p in ("split60", "split80"):
            grid = sorted({(model, best[n][1]) for n in NAMES})
            test = run(feats, manifest, splits[p], "test", grid)
            row[p] = {n: float(np.median(test[best[n]][n])) for n in NAMES}
        summary[model] = row
        chosen = "; ".join(f"{n}: gamma {best[n][1]}, alpha {best[n][2]}" for n in NAMES)
        print(f"| {model} | {chosen} | {row['split60']['clive']:.3f} | "
              f"{row['split60']['biq2021']:.3f} | {row['split80']['clive']:.3f} | "
              f"{row['split80']['biq2021']:.3f} |", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"closed_form_{'+'.join(args.backbone)}.json").write_text(
        json.dumps({"features": label, "seeds": list(range(args.seeds)), **summary}, indent=1))


if __name__ == "__main__":
    sys.exit(run_command(main, Path(__file__).name))
