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

    uv run python benchmarks/average_runs.py --groups runs/lin+runs/lin-b runs/sind+runs/lin

compares groups of runs instead, each scored by its runs' mean prediction (a group of one
is that run alone), paired against the first group: e.g. a SIND + linear-rescaling pair
against two linear-rescaling models, so that both sides are ensembles of the same size.
A member may be several folders of one recipe trained on different seeds, joined by
commas (``runs/s10-sind,runs/s13-sind``): they are read as one run of all their seeds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from mixiqa.errors import run_command
from mixiqa.report.run import Runs, averaged_srcc, finished_seeds


def paired(a: Runs, b: Runs, dataset: str, seeds: list[int]) -> tuple[list, list] | None:
    """Per-seed SRCC of run ``a`` alone and of the mean of ``a`` and ``b``; None where either
    run has no test rows of ``dataset``."""
    alone, both = averaged_srcc([a], dataset, seeds), averaged_srcc([a, b], dataset, seeds)
    return None if alone is None or both is None else (alone, both)


def member(text: str) -> Runs:
    """One group member: a run folder, or several joined by commas (one recipe, other seeds)."""
    parts = tuple(Path(p) for p in text.split(","))
    return parts[0] if len(parts) == 1 else parts


def member_name(run: Runs) -> str:
    return run.name if isinstance(run, Path) else ",".join(p.name for p in run)


def compare_groups(groups: list[list[Runs]], datasets: list[str], seeds: list[int]) -> None:
    """Each group's median SRCC (its runs' mean prediction), and paired against the first
    group: the median per-seed difference and on how many seeds the group is higher."""
    for dataset in datasets:
        base = averaged_srcc(groups[0], dataset, seeds)
        for g in groups:
            v = averaged_srcc(g, dataset, seeds)
            if v is None or base is None:
                continue
            label = "+".join(member_name(r) for r in g)
            d = [y - x for x, y in zip(base, v)]
            vs = ("(baseline)" if g is groups[0] else
                  f"paired {statistics.median(d):+.3f}, higher on {sum(x > 0 for x in d)} "
                  f"of {len(d)}")
            print(f"{dataset:8s} {label:40s} {statistics.median(v):.3f}  {vs}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=member, nargs="?", help="the first finished run (or several "
                    "folders of one recipe on other seeds, joined by ',')")
    ap.add_argument("others", type=member, nargs="*", help="runs to average with it, one by one")
    ap.add_argument("--groups", nargs="+", metavar="RUN+RUN",
                    help="instead: groups of runs joined by '+', each scored by its runs' "
                    "mean prediction and paired against the first group; a run may be "
                    "several folders of one recipe on other seeds, joined by ','")
    ap.add_argument("--datasets", nargs="+", default=["clive", "biq2021"])
    ap.add_argument("--seeds", type=int, nargs="+", help="split seeds (default: the first "
                    "run's finished ones)")
    a = ap.parse_args(argv)
    if a.groups:
        groups = [[member(p) for p in g.split("+")] for g in a.groups]
        compare_groups(groups, a.datasets, a.seeds or finished_seeds(groups[0][0]))
        return
    if a.run is None or not a.others:
        ap.error("name a run and the runs to average with it, or --groups")
    a.seeds = a.seeds or finished_seeds(a.run)
    for dataset in a.datasets:
        for other in a.others:
            res = paired(a.run, other, dataset, a.seeds)
            if res is None:
                continue
            alone, both = res
            d = [y - x for x, y in zip(alone, both)]
            print(f"{dataset:8s} + {member_name(other):28s} alone {statistics.median(alone):.3f}  "
                  f"averaged {statistics.median(both):.3f}  paired {statistics.median(d):+.3f}, "
                  f"higher on {sum(x > 0 for x in d)} of {len(d)}")


if __name__ == "__main__":
    sys.exit(run_command(main, Path(__file__).name))
