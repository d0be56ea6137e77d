"""Bench outputs: raw per-split rows and the paper-style table (markdown, CSV, LaTeX).

The table has one row per cell, in blocks of (protocol, dataset group); each test dataset
gets its median SRCC and PLCC over splits with the interquartile range (IQR) over splits,
and the last columns are the mean over test datasets weighted by test-image count (the
medians' weighted mean, as MonotonicIQA reports it).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path

RAW_COLUMNS = ["cell", "method", "group", "protocol", "split", "seed", "dataset", "n",
               "srcc", "plcc", "krcc", "rmse"]
NOTE = ("Median over splits, with the interquartile range (IQR) over splits in brackets; "
        "PLCC after a 4-parameter logistic fit; weighted = mean over test datasets weighted "
        "by test-image count; best of each (protocol, group) block in bold.")


def write_atomic(path: Path, text: str) -> None:
    """Write a whole file or nothing: a reader never sees half of it."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def raw_rows(cells: dict[str, dict]) -> list[dict]:
    """One row per cell x split x test dataset, from each cell's ``results.json``."""
    rows = []
    for name, c in cells.items():
        for i, split in enumerate(c["splits"]):
            for ds, m in split["test"].items():
                rows.append({"cell": name, "method": c["method"], "group": c["group"],
                             "protocol": c["protocol"], "split": i, "seed": split.get("seed"),
                             "dataset": ds, "n": m.get("n"),
                             **{k: m.get(k) for k in ("srcc", "plcc", "krcc", "rmse")}})
    return rows


def to_csv(rows: list[dict], columns: list[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, columns, lineterminator="\n")
    w.writeheader()
    w.writerows({k: _csv_value(r.get(k)) for k in columns} for r in rows)
    return buf.getvalue()


def _csv_value(v):
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else v


def table_rows(cells: dict[str, dict], datasets: list[str]) -> list[dict]:
    """Flat table rows: ``<ds>_srcc``, ``<ds>_srcc_iqr``, ``<ds>_plcc``... per test dataset."""
    rows = []
    for name, c in cells.items():
        row = {"protocol": c["protocol"], "group": c["group"], "method": c["method"],
               "cell": name, "n_splits": c["n_splits"], "seconds": c.get("seconds")}
        per = c["per_dataset"]
        for ds in datasets:
            m = per.get(ds, {})
            row.update({f"{ds}_n": m.get("n"), f"{ds}_srcc": m.get("srcc"),
                        f"{ds}_srcc_iqr": m.get("srcc_iqr"), f"{ds}_plcc": m.get("plcc"),
                        f"{ds}_plcc_iqr": m.get("plcc_iqr")})
        w = c.get("weighted") or (next(iter(per.values())) if len(per) == 1 else {})
        row.update(weighted_srcc=w.get("srcc"), weighted_plcc=w.get("plcc"))
        rows.append(row)
    return rows


def table_columns(datasets: list[str]) -> list[str]:
    per = [f"{ds}_{k}" for ds in datasets for k in ("n", "srcc", "srcc_iqr", "plcc", "plcc_iqr")]
    return ["protocol", "group", "method", "cell", "n_splits", *per, "weighted_srcc",
            "weighted_plcc", "seconds"]


def _metric_columns(datasets: list[str]) -> list[tuple[str, str, str | None]]:
    """(header, value key, spread key) of every shown metric column."""
    cols = [(f"{ds} {m.upper()}", f"{ds}_{m}", f"{ds}_{m}_iqr")
            for ds in datasets for m in ("srcc", "plcc")]
    return cols + [("weighted SRCC", "weighted_srcc", None),
                   ("weighted PLCC", "weighted_plcc", None)]


def _best(rows: list[dict], key: str) -> set[int]:
    """Indices of the rows holding the highest value of ``key`` in their block."""
    best = set()
    for block in dict.fromkeys((r["protocol"], r["group"]) for r in rows):
        idx = [i for i, r in enumerate(rows) if (r["protocol"], r["group"]) == block
               and _finite(r.get(key))]
        if len(idx) > 1:
            top = max(rows[i][key] for i in idx)
            best |= {i for i in idx if rows[i][key] == top}
    return best


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _cells_text(rows: list[dict], datasets: list[str], bold, spread) -> list[list[str]]:
    cols = _metric_columns(datasets)
    best = {key: _best(rows, key) for _, key, _ in cols}
    out = []
    for i, r in enumerate(rows):
        line = []
        for _, key, iqr in cols:
            v = r.get(key)
            text = "-" if v is None else f"{v:.3f}"
            text = bold(text) if i in best[key] else text
            if iqr and _finite(r.get(iqr)):
                text = spread(text, f"{r[iqr]:.3f}")
            line.append(text)
        out.append(line)
    return out


def to_markdown(rows: list[dict], datasets: list[str]) -> str:
    head = ["protocol", "group", "method", *(h for h, _, _ in _metric_columns(datasets)),
            "splits"]
    body = _cells_text(rows, datasets, lambda t: f"**{t}**", lambda t, s: f"{t} ({s})")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r, vals in zip(rows, body):
        cells = [r["protocol"], r["group"], r["method"], *vals, str(r["n_splits"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\n{NOTE}\n"


def to_latex(rows: list[dict], datasets: list[str]) -> str:
    """A booktabs tabular (``\\usepackage{booktabs}``), blocks separated by rules."""
    groups = [*datasets, "weighted"]
    lines = [f"% {NOTE}", "\\begin{tabular}{lll" + "cc" * len(groups) + "}", "\\toprule",
             "protocol & group & method & " + " & ".join(
                 f"\\multicolumn{{2}}{{c}}{{{_tex(g)}}}" for g in groups) + " \\\\",
             "".join(f"\\cmidrule(lr){{{4 + 2 * i}-{5 + 2 * i}}}" for i in range(len(groups))),
             " & & & " + " & ".join(["SRCC & PLCC"] * len(groups)) + " \\\\", "\\midrule"]
    body = _cells_text(rows, datasets, lambda t: f"\\textbf{{{t}}}",
                       lambda t, s: f"{t}\\,{{\\scriptsize({s})}}")
    block = None
    for r, vals in zip(rows, body):
        if block is not None and block != (r["protocol"], r["group"]):
            lines.append("\\midrule")
        block = (r["protocol"], r["group"])
        lines.append(" & ".join([_tex(r["protocol"]), _tex(r["group"]), _tex(r["method"]),
                                 *vals]) + " \\\\")
    return "\n".join([*lines, "\\bottomrule", "\\end{tabular}"]) + "\n"


def _tex(s: str) -> str:
    for a, b in (("\\", "\\textbackslash{}"), ("_", "\\_"), ("&", "\\&"), ("%", "\\%"),
                 ("#", "\\#"), ("$", "\\$")):
        s = s.replace(a, b)
    return s


def tested_datasets(cells: dict[str, dict], order: list[str]) -> list[str]:
    """Every test dataset of the cells, in ``order`` first (the base config's order)."""
    seen = dict.fromkeys(ds for c in cells.values() for ds in c["per_dataset"])
    return [d for d in order if d in seen] + [d for d in seen if d not in order]


def write_tables(out: Path, cells: dict[str, dict], order: list[str]) -> str:
    """Write raw.csv/json and table.md/csv/tex for the finished cells; return the markdown."""
    raw = raw_rows(cells)
    write_atomic(out / "raw.csv", to_csv(raw, RAW_COLUMNS))
    write_atomic(out / "raw.json", json.dumps(raw, indent=1))
    datasets = tested_datasets(cells, order)
    rows = table_rows(cells, datasets)
    md = to_markdown(rows, datasets)
    write_atomic(out / "table.md", md)
    write_atomic(out / "table.csv", to_csv(rows, table_columns(datasets)))
    write_atomic(out / "table.tex", to_latex(rows, datasets))
    return md
