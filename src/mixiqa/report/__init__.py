"""``mixiqa report``: an HTML and a markdown report, with PNG plots, of a run or a benchmark.

Given a run folder (``mixiqa train``), it shows what was run, the results table, each
dataset's learned mapper curve g_k(q) with its score range, q against MOS with the fitted
logistic, and the training curves. Given a benchmark folder (``mixiqa bench``), it compares
the methods: tables of every cell, grouped bar charts of median SRCC with the spread over
splits, and training curves. A synthetic-benchmark folder (``synth_results.json``) adds a
chart of pooled alignment SRCC per method.

Layout of the output (default ``SOURCE/report``)::

    report.html    plain HTML + CSS; images referenced as plots/*.png
    report.md      the same tables and image links
    plots/*.png    one figure per file

Example::

    from mixiqa.report import write_report
    write_report("runs/quick")            # -> runs/quick/report/report.html
"""

from __future__ import annotations

import datetime
from pathlib import Path

from mixiqa import __version__
from mixiqa.errors import DataError
from mixiqa.report.render import Section, render_html, render_markdown, write_atomic

KINDS = {"bench": "summary.json", "run": "results.json", "synth": "synth_results.json"}


def detect(source: Path) -> str:
    """What a folder holds: "bench", "run" or "synth" (first match in that order).

    Raises:
        DataError: ``source`` is not a folder, or holds none of the three result files.
    """
    if not source.is_dir():
        raise DataError(f"'{source}' is not a folder; pass a run folder (mixiqa train --out) "
                        "or a benchmark folder (mixiqa bench)")
    for kind, file in KINDS.items():
        if (source / file).is_file():
            return kind
    raise DataError(f"'{source}' is neither a run nor a benchmark folder: expected "
                    "results.json (written by `mixiqa train`), summary.json (`mixiqa bench`) "
                    "or synth_results.json (the synthetic benchmark) in it")


def build_sections(source: Path, out: Path, kind: str, split: int = 0) -> list[Section]:
    """The report's sections for a folder of the given kind; draws the plots into ``out``."""
    from mixiqa.report.bench import bench_sections
    from mixiqa.report.run import run_sections, synth_section

    sections = {"bench": bench_sections, "run": run_sections,
                "synth": lambda *a: []}[kind](source, out, split)
    synth = synth_section(source, out, split)
    return sections + ([synth] if synth else [])


def write_report(source: str | Path, out: str | Path | None = None, split: int = 0) -> Path:
    """Write ``report.html``, ``report.md`` and ``plots/*.png`` for a run or benchmark folder.

    Args:
        source: A run folder (``results.json``), a benchmark folder (``summary.json``) or a
            synthetic-benchmark folder (``synth_results.json``).
        out: Output folder; default ``source/report``.
        split: Which split's model, predictions and training curves to draw in detail.

    Returns:
        The path of ``report.html``.

    Raises:
        DataError: ``source`` is none of those folders, or names a split it does not have.
    """
    source = Path(source)
    out = Path(out) if out is not None else source / "report"
    kind = detect(source)
    if split < 0:
        raise DataError(f"--split must be a split number (0, 1, ...), got {split}")
    sections = build_sections(source, out, kind, split)
    noun = {"bench": "benchmark", "run": "run", "synth": "synthetic benchmark"}[kind]
    title = f"mixiqa {noun} report: {source.resolve().name}"
    stamp = datetime.datetime.now().isoformat(timespec="seconds")
    subtitle = f"Source: {source.resolve()} | made {stamp} by mixiqa {__version__}"
    _remove_stale_plots(out / "plots", {p.file for s in sections for p in s.plots})
    write_atomic(out / "report.md", render_markdown(title, subtitle, sections))
    return write_atomic(out / "report.html", render_html(title, subtitle, sections))


def _remove_stale_plots(folder: Path, keep: set[str]) -> None:
    """Delete PNGs of an earlier report (e.g. of a cell since removed) this one does not show."""
    for png in folder.glob("*.png"):
        if f"plots/{png.name}" not in keep:
            png.unlink()


# ---- CLI --------------------------------------------------------------------------------


def add_report_command(sub) -> None:
    """Add ``mixiqa report RUN_OR_BENCH [--out DIR] [--split N]`` to the subparsers."""
    p = sub.add_parser("report", help="HTML + markdown report with plots of a run or benchmark",
                       description="Write report.html, report.md and plots/*.png: results "
                                   "tables, mapper curves, q-vs-MOS scatter with the fitted "
                                   "logistic, method comparison and training curves.")
    p.add_argument("source", metavar="RUN_OR_BENCH",
                   help="run folder (mixiqa train --out) or benchmark folder (mixiqa bench)")
    p.add_argument("--out", help="output folder (default: RUN_OR_BENCH/report)")
    p.add_argument("--split", type=int, default=0,
                   help="split whose model and predictions are plotted (default 0)")
    p.set_defaults(func=cmd_report)


def cmd_report(args) -> int:
    """Write the report and print where it is."""
    path = write_report(args.source, args.out, split=args.split)
    n = len(list((path.parent / "plots").glob("*.png")))
    print(f"report: {path} ({n} plots; markdown: {path.with_suffix('.md')})")
    return 0
