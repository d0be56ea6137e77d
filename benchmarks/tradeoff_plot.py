"""Where each mixed-training method sits between CLIVE and BIQ2021: median test SRCC on one
dataset against the other, with single-dataset training as reference lines, and the paired
comparison of every method with linear rescaling printed as a table.

    uv run mixiqa bench configs/bench_tradeoff.yaml --out runs/bench-tradeoff          # ~30 min
    uv run mixiqa bench configs/bench_real_single.yaml --out runs/bench-real-single    # ~15 min
    uv run python benchmarks/tradeoff_plot.py runs/bench-tradeoff runs/bench-real-single \\
        --png benchmarks/tradeoff_frozen.png

Reads the benches' ``raw.csv`` (per split and dataset test SRCC); every bench must have run
the same protocol on the same seeds, so that a seed is the same CLIVE test part in all of
them. Nothing is fitted here.

``--pick NAME=label,label,...`` adds a row NAME that takes, split by split, the listed
variant with the best validation SRCC (each split's ``result.json``: the mean over datasets
of the validation SRCC of its selected checkpoint, the same criterion that chose the
checkpoint), and reports that variant's test SRCC. It needs a protocol with validation
parts (``--protocol split60``); test rows play no part in the choice.

    uv run python benchmarks/tradeoff_plot.py runs/bench-tradeoff runs/bench-real-single \
        --protocol split60 --pick "sind-val=sind,sind-huber1,sind-clive0.5"

``--mean NAME=label,label`` adds a row NAME scored by the mean of the listed methods'
test predictions on each dataset's scale (each split's ``predictions.csv``), what an
ensemble of their split models gives (``mixiqa ensemble``); e.g. a SIND and a
linear-rescaling model against two linear-rescaling models of other draws:

    uv run python benchmarks/tradeoff_plot.py runs/bench-tradeoff runs/bench-real-single \
        --mean "sind+linear=sind,linear" --mean "linear+linear=linear,linear-seed1"
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from mixiqa.errors import DataError, run_command
from mixiqa.report.plots import new_figure, save_figure
from mixiqa.report.run import averaged_srcc, read_rows

DATASETS = ("clive", "biq2021")


def per_seed(benches: list[Path], protocol: str) -> tuple[dict, dict]:
    """(label, dataset) -> {seed: test SRCC}, and (label, seed) -> the split's folder; a
    one-dataset group's label is ``<name> alone``."""
    out: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    folders: dict[tuple[str, int], Path] = {}
    for bench in benches:
        raw = bench / "raw.csv"
        if not raw.is_file():
            raise DataError(f"{raw} not found: pass the folder of a finished `mixiqa bench`.")
        for r in read_rows(raw):
            if r["protocol"] != protocol:
                continue
            label = r["method"] if "+" in r["group"] else f"{r['group']} alone"
            out[(label, r["dataset"])][int(r["seed"])] = float(r["srcc"])
            folders[(label, int(r["seed"]))] = \
                bench / "cells" / r["cell"] / f"split_{int(r['split']):02d}"
    if not out:
        raise DataError(f"no rows of protocol {protocol!r} in {[str(b) for b in benches]}.")
    return out, folders


def pick_on_validation(srcc: dict, folders: dict, name: str, labels: list[str]) -> list[str]:
    """Add row ``name``: per seed, the test SRCC of the label with the best validation SRCC.
    Returns the label picked for each seed, in seed order."""
    missing = [m for m in labels if (m, "clive") not in srcc]
    if missing:
        raise DataError(f"--pick {name}: {missing} not among these benches' methods.")
    seeds = sorted(set.intersection(*(set(srcc[(m, d)]) for m in labels for d in DATASETS)))
    picked = []
    for seed in seeds:
        val = {}
        for m in labels:
            v = json.loads((folders[(m, seed)] / "result.json").read_text()).get("val_srcc")
            if v is None:
                raise DataError(f"{folders[(m, seed)]} has no validation SRCC: --pick needs a "
                                f"protocol with a validation part (e.g. --protocol split60).")
            val[m] = v
        best = max(labels, key=lambda m: val[m])          # first listed wins a tie
        picked.append(best)
        for d in DATASETS:
            srcc[(name, d)][seed] = srcc[(best, d)][seed]
    return picked


def mean_of(srcc: dict, folders: dict, name: str, labels: list[str]) -> None:
    """Add row ``name``: per seed, the test SRCC of the mean of the labels' predictions on
    each dataset's scale (``predictions.csv``), what an ensemble of their models scores."""
    missing = [m for m in labels if (m, "clive") not in srcc]
    if missing:
        raise DataError(f"--mean {name}: {missing} not among these benches' methods.")
    seeds = sorted(set.intersection(*(set(srcc[(m, d)]) for m in labels for d in DATASETS)))
    for d in DATASETS:
        for seed in seeds:
            cells = [folders[(m, seed)].parent for m in labels]   # run-like cell folders
            srcc[(name, d)][seed] = averaged_srcc(cells, d, [seed])[0]


def paired_vs(srcc: dict, label: str, base: str, dataset: str) -> tuple[float, int, int]:
    """Median paired difference label - base over their common seeds, seeds up, seed count."""
    a, b = srcc[(label, dataset)], srcc[(base, dataset)]
    seeds = sorted(set(a) & set(b))
    diffs = [a[s] - b[s] for s in seeds]
    return statistics.median(diffs), sum(d > 0 for d in diffs), len(seeds)


def plot(srcc: dict, mixed: list[str], png: Path, picks: tuple = (), means: tuple = (),
         floor: float = 0.6) -> list[str]:
    """Scatter of the medians, the ``picks`` and ``means`` rows larger and edged; returns
    the methods left off (an SRCC below ``floor``)."""
    fig, (ax,) = new_figure(1, panel=(8.6, 5.4))
    med = {k: statistics.median(v.values()) for k, v in srcc.items()}
    shown = [m for m in mixed if min(med[(m, d)] for d in DATASETS) >= floor]
    # 15 filled shapes, then thin ones (tri, plus, cross): up to 20 methods stay distinct
    markers = iter(list("osD^vP*Xph<>8Hd") + ["1", "2", "3", "+", "x"] * 2)
    pick_markers, mean_markers = iter("*dP" * 4), iter("*dP" * 4)
    for label in shown:
        # SIND variants vs the rest; two methods' models averaged in green
        family = "C2" if label in means else "C1" if label.startswith("sind") else "C0"
        big = label in picks or label in means
        note = (" (chosen on validation)" if label in picks
                else " (two models averaged)" if label in means else "")
        edge = {"edgecolors": "black"} if big else {}   # thin markers take no edge colour
        ax.scatter([med[(label, "clive")]], [med[(label, "biq2021")]], color=family,
                   marker=next(mean_markers if label in means
                               else pick_markers if big else markers), s=110 if big else 40,
                   zorder=4 if big else 3, label=label + note, **edge)
    for name, line, text in (("clive", ax.axvline, "CLIVE alone"),
                             ("biq2021", ax.axhline, "BIQ2021 alone")):
        if (f"{name} alone", name) in med:
            line(med[(f"{name} alone", name)], color="grey", ls="--", lw=0.8, label=text)
    ax.set_xlabel("CLIVE test SRCC (median of the splits)")
    ax.set_ylabel("BIQ2021 test SRCC (median of the splits)")
    left_off = sorted(set(mixed) - set(shown))
    ax.set_title("Mixed CLIVE + BIQ2021 training (orange: SIND variants"
                 + ("; green: two models averaged)" if means else ")")
                 + (f"; off the chart: {', '.join(left_off)}" if left_off else ""), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    save_figure(fig, png)
    return left_off


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("benches", nargs="+", type=Path, help="finished `mixiqa bench` folders")
    ap.add_argument("--protocol", default="split80")
    ap.add_argument("--base", default="linear", help="the method every row is paired with")
    ap.add_argument("--png", type=Path, help="write the scatter plot here")
    ap.add_argument("--pick", action="append", default=[], metavar="NAME=LABEL,LABEL,...",
                    help="a row that takes, per split, the variant best on validation")
    ap.add_argument("--mean", action="append", default=[], metavar="NAME=LABEL,LABEL,...",
                    help="a row scoring the mean of the labels' predictions (an ensemble)")
    args = ap.parse_args(argv)

    def run() -> int:
        srcc, folders = per_seed(args.benches, args.protocol)
        for spec in args.pick:
            name, _, labels = spec.partition("=")
            if not name or not labels:
                raise DataError(f"--pick wants NAME=label,label,...; got {spec!r}.")
            picked = pick_on_validation(srcc, folders, name, labels.split(","))
            print(f"{name}: picked per seed {', '.join(picked)}")
        for spec in args.mean:
            name, _, labels = spec.partition("=")
            if not name or not labels:
                raise DataError(f"--mean wants NAME=label,label,...; got {spec!r}.")
            mean_of(srcc, folders, name, labels.split(","))
        labels = list(dict.fromkeys(label for label, _ in srcc))
        mixed = [m for m in labels if not m.endswith(" alone")
                 and all((m, d) in srcc for d in DATASETS)]
        if args.base not in mixed:
            raise DataError(f"--base {args.base!r} is not a mixed method of these benches "
                            f"({', '.join(mixed)}).")
        print(f"| method | CLIVE SRCC | vs {args.base} | BIQ2021 SRCC | vs {args.base} |")
        print("|---|---|---|---|---|")
        for label in labels:
            cells = []
            for d in DATASETS:
                if (label, d) not in srcc:
                    cells += ["-", "-"]
                    continue
                cells.append(f"{statistics.median(srcc[(label, d)].values()):.3f}")
                if label in mixed and label != args.base:
                    diff, up, n = paired_vs(srcc, label, args.base, d)
                    cells.append(f"{diff:+.3f} ({up} of {n})")
                else:
                    cells.append("-")
            print(f"| {label} | " + " | ".join(cells) + " |")
        if args.png:
            plot(srcc, mixed, args.png, picks=tuple(p.partition("=")[0] for p in args.pick),
                 means=tuple(m.partition("=")[0] for m in args.mean))
            print(f"wrote {args.png}")
        return 0

    return run_command(run)


if __name__ == "__main__":
    sys.exit(main())
