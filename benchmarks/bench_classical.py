"""NIQE, BRISQUE (standard LIVE model) and BRISQUE refit on the shared CLIVE and BIQ2021.

Measured, not asserted; the numbers go to benchmarks/classical.md. Per-image values are
cached (``--cache-dir``), so a second run only refits and evaluates.

Protocols:
- whole sets: the standard NIQE/BRISQUE need no training, so they are scored on all 627
  CLIVE images and on all BIQ2021 official test rows present (679), as papers report them;
- CLIVE, ten random 60/20/20 splits (seeds 0-9): all three methods on each test part,
  medians over splits (the refit trains on each split's training part, C/gamma chosen on
  its validation part);
- BIQ2021, official split (test rows present; validation = 10 % of the present training
  rows, seed 0); the refit trains on the other training rows, or ``--max-train`` of them.

Usage::

    .venv/bin/python benchmarks/bench_classical.py --workers 2 --out runs/bench-classical
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from mixiqa.classical.runner import METHODS, score_paths
from mixiqa.classical.runner import run_classical
from mixiqa.config import ExperimentConfig, MethodConfig, TrainConfig
from mixiqa.data.datasets import load_manifest
from mixiqa.data.splits import make_splits
from mixiqa.errors import run_command
from mixiqa.evaluate import evaluate
from mixiqa.experiment import summarize

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PUBLISHED = {("biq2021", "niqe"): (0.267, 0.298), ("biq2021", "brisque"): (0.604, 0.694)}


def load(data: Path) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the subsets: "dropped N missing images" is expected
        clive = load_manifest("clive", data / "CLIVE", allow_missing=True, show_progress=False)
        biq = load_manifest("biq2021", data / "BIQ2021", allow_missing=True, show_progress=False)
    return {"clive": clive, "biq2021": biq}


def whole_set(rows, method: str, workers: int, cache: str) -> dict:
    """SRCC/PLCC of q = -score over all given rows, and seconds spent."""
    t0 = time.perf_counter()
    score = score_paths([r.path for r in rows], method, workers, cache)
    seconds = time.perf_counter() - t0
    y = np.array([r.score for r in rows])
    ok = np.isfinite(score)
    m = evaluate(-score[ok], y[ok], fit="logistic4").as_dict()
    return {"srcc": m["srcc"], "plcc": m["plcc"], "n": int(ok.sum()), "seconds": seconds}


def split_runs(name: str, manifest, splits: list, args) -> dict:
    out = {}
    for method in METHODS:
        kwargs = ({"max_train": args.max_train}
                  if method == "brisque-refit" and args.max_train else {})
        cfg = ExperimentConfig(name=f"classical-{name}-{method}",
                               method=MethodConfig(name=method, mapper_kwargs=kwargs),
                               train=TrainConfig(workers=args.workers, cache_dir=args.cache_dir))
        t0 = time.perf_counter()
        results = run_classical(cfg, SimpleNamespace(manifest=manifest, feats=None), splits,
                                Path(args.out) / name / method, resume=True, device="cpu",
                                log=lambda m: None)
        summary = summarize(results)["per_dataset"][name]
        out[method] = {"srcc": summary["srcc"], "plcc": summary["plcc"], "n": summary["n"],
                       "n_splits": len(results), "seconds": time.perf_counter() - t0,
                       "selected": [r["selected"] for r in results],
                       "val_srcc": [r["val_srcc"] for r in results]}
        print(f"{name:8s} {method:14s} SRCC {out[method]['srcc']:.3f} "
              f"PLCC {out[method]['plcc']:.3f} ({len(results)} split(s), "
              f"{out[method]['seconds']:.0f} s)", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--max-train", type=int, default=None,
                    help="cap on BIQ2021 training rows for the refit (default: all)")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "mixiqa" / "features"))
    ap.add_argument("--out", default="runs/bench-classical")
    args = ap.parse_args()
    data = load(args.data)
    clive, biq = data["clive"], data["biq2021"]
    biq_test = biq.where(split="test")
    report: dict = {"whole": {}, "splits": {}, "args": {k: str(v) for k, v in vars(args).items()}}
    for name, rows in (("clive", clive), ("biq2021", biq_test)):
        for method in ("niqe", "brisque"):
            r = report["whole"][f"{name}/{method}"] = whole_set(rows, method, args.workers,
                                                                args.cache_dir)
            print(f"whole {name:8s} {method:8s} SRCC {r['srcc']:.3f} PLCC {r['plcc']:.3f} "
                  f"n={r['n']} ({r['seconds']:.0f} s)", flush=True)
    clive_splits = [make_splits(clive, "random", ratios=(0.6, 0.2, 0.2), seed=s)[0]
                    for s in range(args.seeds)]
    report["splits"]["clive"] = split_runs("clive", clive, clive_splits, args)
    biq_splits = make_splits(biq, "official", val_ratio=0.1, seed=0)
    report["splits"]["biq2021"] = split_runs("biq2021", biq, biq_splits, args)
    report["published"] = {f"{d}/{m}": v for (d, m), v in PUBLISHED.items()}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "summary.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    sys.exit(run_command(main, Path(__file__).name))
