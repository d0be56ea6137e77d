"""Where does the multitask kernel's CLIVE accuracy come from, and do two mixed models
average into a better one?

    uv run python benchmarks/mixing_probes.py        # ~3 min with the Lite0 features cached
    uv run python benchmarks/mixing_probes.py --bench runs/bench-real   # + the ensemble rows

Multitask Gaussian KRR of closed_form.py (kernel k(x, x') (1 + lam [same dataset]), rows
weighted so each dataset counts the same), each dataset at the kernel width and penalty
closed_form.py chose for it on split60 VALIDATION SRCC, on the splits of
configs/bench_real.yaml (seeds 0-9), test medians. Two probes:

- ``lam``: the weight of the per-dataset part, 0.5 / 2 (closed_form.py's) / 8, and the
  prediction split into its two parts: ``full`` (shared + the dataset's own function, what
  closed_form.py reports) and ``shared`` (the shared function alone, the part that would
  fit mixiqa's one-regressor-plus-monotonic-mappers design);
- ``ensemble`` (with ``--bench``, a finished ``mixiqa bench configs/bench_real.yaml`` run):
  the SIND MLP's test predictions of that run (the same split files) averaged with the
  multitask KRR's, after standardising each (``zavg``) or as ranks (``rankavg``). Equal
  weights, fixed beforehand: nothing is tuned on test rows.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
from scipy.stats import rankdata

from closed_form import NAMES, dataset_weights, gaussian, solve, split_rows
from mixiqa.config import load_config
from mixiqa.errors import DataError, run_command
from mixiqa.evaluate import srcc
from mixiqa.experiment import build_splits, prepare
from mixiqa.train import oriented

CHOSEN = {"clive": (0.5, 0.03), "biq2021": (1.0, 0.3)}   # (gamma, alpha), closed_form.py
LAMBDAS = (0.5, 2.0, 8.0)
PROTOCOLS = (("split60", "[0.6,0.2,0.2]"), ("split80", "[0.8,0.0,0.2]"))


def multitask_parts(z_tr, z_ev, dom_tr, dom_ev, t, gamma, alpha, lam):
    """Test predictions (m,) of the multitask KRR: the shared part and the full one."""
    k_tr, k_ev = gaussian(z_tr, z_tr, gamma), gaussian(z_ev, z_tr, gamma)
    same_tr = dom_tr[:, None] == dom_tr[None]          # (n, n)
    same_ev = dom_ev[:, None] == dom_tr[None]          # (m, n)
    c = solve(k_tr * (1 + lam * same_tr), t, alpha, dataset_weights(dom_tr))
    return k_ev @ c, (k_ev * (1 + lam * same_ev)) @ c


def sind_q(bench: Path, protocol: str, i: int) -> dict[str, float]:
    """{manifest key: q} of the SIND MLP on split ``i``'s test rows of a bench run."""
    f = bench / "cells" / f"sind__clive+biq2021__{protocol}" / f"split_{i:02d}" / "predictions.csv"
    if not f.is_file():
        raise DataError(f"{f} is missing: run `uv run mixiqa bench configs/bench_real.yaml "
                        f"--out {bench}` first, or leave out --bench")
    with f.open() as fh:
        return {f"{r['dataset']}/{r['name']}": float(r["q"]) for r in csv.DictReader(fh)}


def zs(v: np.ndarray) -> np.ndarray:
    return (v - v.mean()) / v.std()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/native.yaml")
    ap.add_argument("--bench", type=Path, default=None,
                    help="a finished bench_real.yaml run: adds the ensemble rows")
    ap.add_argument("--out", default="runs/closed-form")
    args = ap.parse_args()
    seeds = "split.seeds=[0,1,2,3,4,5,6,7,8,9]"
    prep = prepare(load_config(args.config, [seeds]), "cpu", log=lambda *a: None)
    feats, manifest = prep.feats.numpy().astype(np.float64), prep.manifest
    pos = {k: i for i, k in enumerate(manifest.keys())}
    y, dom = oriented(manifest), np.array([r.dataset for r in manifest])
    res: dict = {}                     # (protocol, dataset, row) -> [SRCC per split]
    for protocol, ratios in PROTOCOLS:
        cfg = load_config(args.config, [f"split.ratios={ratios}", seeds])
        for i, split in enumerate(build_splits(cfg, manifest)):
            tr, ev, z_tr, z_ev, t = split_rows(feats, y, dom, pos, split, "test")
            q = sind_q(args.bench, protocol, i) if args.bench else None
            for n, (gamma, alpha) in CHOSEN.items():
                m = dom[ev] == n
                for lam in LAMBDAS:
                    shared, full = multitask_parts(z_tr, z_ev, dom[tr], dom[ev], t, gamma,
                                                   alpha, lam)
                    for part, p in (("shared", shared), ("full", full)):
                        res.setdefault((protocol, n, f"lam {lam:g} {part}"), []).append(
                            srcc(p[m], y[ev][m]))
                    if q is None or lam != 2.0:
                        continue
                    s = np.array([q[k] for k, mk in zip(split.test, m) if mk])
                    k = full[m]
                    for row, p in (("SIND MLP", s), ("zavg", zs(k) + zs(s)),
                                   ("rankavg", rankdata(k) + rankdata(s))):
                        res.setdefault((protocol, n, row), []).append(srcc(p, y[ev][m]))
    rows = sorted({r for _, _, r in res}, key=lambda r: (not r.startswith("lam"), r))
    print("| multitask KRR | split60 CLIVE | split60 BIQ2021 | split80 CLIVE | split80 BIQ2021 "
          "|\n|---|---|---|---|---|")
    for r in rows:
        cells = [np.median(res[(p, n, r)]) for p, _ in PROTOCOLS for n in NAMES]
        print(f"| {r} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "mixing_probes.json").write_text(json.dumps(
        {"seeds": list(range(10)), "chosen": CHOSEN,
         "srcc": {" / ".join(k): v for k, v in res.items()}}, indent=1))


if __name__ == "__main__":
    sys.exit(run_command(main, Path(__file__).name))
