"""Average two finished ``mixiqa train`` runs' test predictions, split by split, and compare
with the first run alone: what a two-model ensemble would give, at no training cost.

    uv run python benchmarks/average_runs.py runs/nt-bf16-e20 runs/nt-linear-bf16-e20 ...

Both runs must share their splits (same config but the method, same seeds; split folders
are matched by the seed in their ``result.json``). For each seed and dataset the ensemble
score of a test image is the mean of the two runs' ``pred`` columns of
``split_*/predictions.csv``: each is already on that dataset's own MOS scale (the run's
mappers, fitted on training rows only), so nothing is fitted or tuned on test rows. Prints,
per dataset and second run, the first run's median SRCC, the ensemble's, and the paired
median difference with the number of seeds on which the ensemble is higher.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from scipy.stats import spearmanr

from mixiqa.errors import DataError, run_command
from mixiqa.report.run import finished_splits, read_rows


def test_predictions(run: Path, seed: int, dataset: str) -> dict[str, tuple[float, float]]:
    """Image name -> (prediction on the dataset's scale, MOS) for one split's test rows."""
    splits = finished_splits(run)
    if seed not in splits:
        raise DataError(f"{run} has no finished split with seed {seed} (finished seeds: "
                        f"{sorted(splits) or 'none'}): is it a finished `mixiqa train` run?")
    return {r["name"]: (float(r["pred"]), float(r["score"]))
            for r in read_rows(splits[seed] / "predictions.csv") if r["dataset"] == dataset}


def paired(a: Path, b: Path, dataset: str, seeds: list[int]) -> tuple[list, list] | None:
    """Per-seed SRCC of run ``a`` alone and of the mean of ``a`` and ``b``; None where either
    run has no test rows of ``dataset``."""
    alone, both = [], []
    for seed in seeds:
        pa, pb = test_predictions(a, seed, dataset), test_predictions(b, seed, dataset)
        if not pa or not pb:
            return None
        if pa.keys() != pb.keys():
            raise DataError(f"{a} and {b} test different {dataset} images at seed {seed}: "
                            "average only runs made with the same splits.")
        names = sorted(pa)
        mos = [pa[n][1] for n in names]
        alone.append(float(spearmanr([pa[n][0] for n in names], mos)[0]))
        both.append(float(spearmanr([pa[n][0] + pb[n][0] for n in names], mos)[0]))
    return alone, both


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="the first finished run")
    ap.add_argument("others", type=Path, nargs="+", help="runs to average with it, one by one")
    ap.add_argument("--datasets", nargs="+", default=["clive", "biq2021"])
    ap.add_argument("--seeds", type=int, nargs="+", help="split seeds (default: the first "
                    "run's finished ones)")
    a = ap.parse_args(argv)
    a.seeds = a.seeds or sorted(finished_splits(a.run))
    for dataset in a.datasets:
        for other in a.others:
            res = paired(a.run, other, dataset, a.seeds)
            if res is None:
                continue
            alone, both = res
            d = [y - x for x, y in zip(alone, both)]
            print(f"{dataset:8s} + {other.name:28s} alone {statistics.median(alone):.3f}  "
                  f"averaged {statistics.median(both):.3f}  paired {statistics.median(d):+.3f}, "
                  f"higher on {sum(x > 0 for x in d)} of {len(d)}")


if __name__ == "__main__":
    sys.exit(run_command(main, Path(__file__).name))
