"""Report sections of a benchmark folder (``mixiqa bench`` output): methods compared.

A bench folder holds ``summary.json`` (``{"cells": {name: {"method", "group", "protocol",
"per_dataset", "weighted", "n_splits", "seconds"}}}``), ``raw.csv`` (one row per cell x
split x test dataset) and ``cells/<name>/``, each a run folder. The comparison is drawn
per protocol and dataset group, since SRCCs of different protocols are not comparable.
"""

from __future__ import annotations

from pathlib import Path

from mixiqa.errors import DataError
from mixiqa.progress import progress
from mixiqa.report.plots import plot_method_bars, plot_split_boxes
from mixiqa.report.render import Plot, Section, Table, fmt, slug
from mixiqa.report.run import read_json, read_rows, split_result, training_plot

Key = tuple[str, str]  # (protocol, group)


def load_cells(bench: Path) -> dict[str, dict]:
    """``summary.json``'s cells, checked to be a mapping of cell name -> dict."""
    cells = read_json(bench / "summary.json").get("cells")
    if not isinstance(cells, dict) or not all(isinstance(c, dict) for c in cells.values()):
        raise DataError(f"'{bench / 'summary.json'}' has no 'cells' mapping of cell name -> "
                        "results; re-run `mixiqa bench` to rewrite it")
    return cells


def cell_dir(bench: Path, name: str, cell: dict) -> Path:
    """A cell's run folder: its recorded ``folder``, else ``cells/<name>``."""
    return bench / str(cell.get("folder") or f"cells/{name}")


def split_srcc(bench: Path, cells: dict[str, dict]) -> tuple[dict[Key, dict], list[str]]:
    """Per-split test SRCC: (protocol, group) -> method -> dataset -> [srcc of each split].

    From ``raw.csv``; without it, the medians of ``summary.json`` stand in (one value each).
    """
    out: dict[Key, dict] = {}
    notes: list[str] = []
    raw = bench / "raw.csv"
    if raw.is_file():
        for r in read_rows(raw):
            try:
                value = float(r["srcc"])
            except (KeyError, TypeError, ValueError):
                continue  # an undefined (empty) SRCC: nothing to draw
            key = (r.get("protocol", "?"), r.get("group", "?"))
            per = out.setdefault(key, {}).setdefault(r.get("method", "?"), {})
            per.setdefault(r.get("dataset", "?"), []).append(value)
        return out, notes
    notes.append("no raw.csv: bars show the medians of summary.json, without spread")
    for c in cells.values():
        key = (str(c.get("protocol", "?")), str(c.get("group", "?")))
        per = out.setdefault(key, {}).setdefault(str(c.get("method", "?")), {})
        for ds, m in (c.get("per_dataset") or {}).items():
            if isinstance(m.get("srcc"), (int, float)):
                per.setdefault(ds, []).append(float(m["srcc"]))
    return out, notes


def bench_facts(bench: Path, cells: dict[str, dict],
                srcc: dict[Key, dict]) -> list[tuple[str, str]]:
    """What was compared: methods, groups, protocols, test datasets, backbone, time."""
    def distinct(key: str) -> str:
        return ", ".join(dict.fromkeys(str(c.get(key, "?")) for c in cells.values()))

    datasets = dict.fromkeys(ds for per in srcc.values() for m in per.values() for ds in m)
    facts = [("cells", str(len(cells))), ("methods", distinct("method")),
             ("dataset groups", distinct("group")), ("protocols", distinct("protocol")),
             ("test datasets", ", ".join(datasets) or "?"),
             ("splits per cell", distinct("n_splits"))]
    first = next((d for n, c in cells.items() if ((d := cell_dir(bench, n, c)) / "results.json")
                  .is_file()), None)
    if first is not None:
        model = (read_json(first / "results.json").get("config") or {}).get("model") or {}
        frozen = "frozen, cached features" if model.get("freeze") else "fine-tuned"
        facts.append(("backbone", f"{model.get('backbone', '?')} ({model.get('weights')} "
                                  f"weights, {frozen})"))
    seconds = sum(float(c.get("seconds") or 0) for c in cells.values())
    facts.append(("time", f"{seconds:.0f} s over all cells"))
    return facts


def cells_table(cells: dict[str, dict], metric: str) -> Table:
    """One row per cell: its median ``metric`` per test dataset and the weighted mean."""
    datasets = list(dict.fromkeys(ds for c in cells.values()
                                  for ds in (c.get("per_dataset") or {})))
    rows = []
    for name, c in cells.items():
        per, weighted = c.get("per_dataset") or {}, c.get("weighted") or {}
        rows.append([name, str(c.get("method", "?")), str(c.get("group", "?")),
                     str(c.get("protocol", "?")), str(c.get("n_splits", "?")),
                     *(fmt((per.get(ds) or {}).get(metric)) for ds in datasets),
                     fmt(weighted.get(metric))])
    return Table(["cell", "method", "group", "protocol", "splits", *datasets, "weighted"], rows,
                 f"Median test {metric.upper()} over splits, per cell")


def comparison_plots(srcc: dict[Key, dict]) -> list[tuple[Key, str, str]]:
    """Which figures to draw: (key, kind, file) for the bars and, with spread, the boxes."""
    todo = []
    for key, per in srcc.items():
        name = f"{slug(key[0])}_{slug(key[1])}"
        todo.append((key, "bars", f"plots/compare_{name}.png"))
        if any(len(v) > 1 for m in per.values() for v in m.values()):
            todo.append((key, "boxes", f"plots/splits_{name}.png"))
    return todo


def comparison_section(srcc: dict[Key, dict], out: Path) -> Section:
    """Grouped bars of median SRCC (IQR error bars) and per-split boxes, per protocol x group."""
    section = Section("Method comparison")
    for (protocol, group), kind, file in comparison_plots(srcc):
        title = f"protocol {protocol}, datasets {group}"
        if kind == "bars":
            plot_method_bars(srcc[(protocol, group)], out / file, f"Median test SRCC: {title}")
            caption = (f"Median test SRCC per method and test dataset ({title}); error bars: "
                       "interquartile range over splits.")
        else:
            plot_split_boxes(srcc[(protocol, group)], out / file, f"SRCC per split: {title}")
            caption = f"Test SRCC of every split, per method ({title}); boxes: quartiles."
        section.plots.append(Plot(file, caption))
    return section


def training_section(bench: Path, cells: dict[str, dict], out: Path, split: int) -> Section:
    """Training curves of one split of every cell, one figure per protocol x group."""
    groups: dict[Key, dict[str, list]] = {}
    missing = []
    for name, c in progress(cells.items(), total=len(cells), desc="report: cells"):
        run = cell_dir(bench, name, c)
        res = split_result(run, read_json(run / "results.json"), split) \
            if (run / "results.json").is_file() else None
        if not res or not res.get("history"):
            missing.append(name)
            continue
        key = (str(c.get("protocol", "?")), str(c.get("group", "?")))
        groups.setdefault(key, {})[str(c.get("method", name))] = res["history"]
    section = Section("Training", text=[f"Split {split:02d} of each cell; a cell's own report "
                                        "(mixiqa report BENCH/cells/CELL) shows its mapper "
                                        "curves and scatter plots."])
    for (protocol, group), hist in groups.items():
        section.plots += training_plot(hist, out, f"training_{slug(protocol)}_{slug(group)}",
                                       f"method; protocol {protocol}, datasets {group}")
    if missing:
        section.notes.append(f"no training history for split {split} of: {', '.join(missing)}")
    return section


def bench_sections(bench: Path, out: Path, split: int = 0) -> list[Section]:
    """Every section of a benchmark's report."""
    cells = load_cells(bench)
    srcc, notes = split_srcc(bench, cells)
    results = Section("Results", tables=[cells_table(cells, "srcc"), cells_table(cells, "plcc")])
    comparison = comparison_section(srcc, out)
    comparison.notes += notes
    return [Section("What was compared", facts=bench_facts(bench, cells, srcc)), results,
            comparison, training_section(bench, cells, out, split)]
