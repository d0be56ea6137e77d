"""``mixiqa bench``: every method on the SAME splits of every dataset group and protocol.

    mixiqa bench configs/bench_example.yaml --out runs/bench [--resume] [--set k=v] [--only a,b]

The bench folder::

    bench.yaml                          the resolved bench (base experiment inlined)
    splits/<group>__<protocol>/         split_NN.json, then splits.json (the index) last
    cells/<method>__<group>__<protocol>/ a run folder: config.yaml, split_NN/, results.json
    raw.csv, raw.json                   one row per cell x split x test dataset
    table.md, table.csv, table.tex      medians over splits (IQR), weighted mean
    summary.json                        per cell: medians, weighted mean, seconds; config,
                                        date, machine

Splits are built once per (group, protocol) and loaded, never rebuilt, on resume; a cell
with a ``results.json`` is kept; inside an unfinished cell the runner keeps finished
splits. Every output is rewritten atomically after each cell, so an interrupted bench
still has the tables of its finished cells.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import yaml

from mixiqa import __version__
from mixiqa.bench.config import BenchConfig, Cell, config_differences, dataset_name, plain
from mixiqa.bench.load import load_bench_config
from mixiqa.bench.runners import RUNNERS, get_runner, needs_features, no_features
from mixiqa.bench.tables import write_atomic, write_tables
from mixiqa.config import ExperimentConfig, config_from_dict
from mixiqa.errors import ConfigError
from mixiqa.progress import progress

__all__ = ["RUNNERS", "no_features", "BenchConfig", "load_bench_config", "run_bench",
           "add_bench_command", "cmd_bench"]


class _Shared:
    """What cells share inside one process: prepared rows/features and the splits."""

    def __init__(self, out: Path, log):
        self.out, self.log = out, log
        self.preps: dict[str, object] = {}
        self.splits: dict[str, list] = {}

    def prep(self, cfg: ExperimentConfig, features: bool, device: str):
        """``prepare`` once per (datasets, feature recipe); rows only for feature-less
        runners. A fine-tuned backbone is trained in place, so it is never shared."""
        from mixiqa.experiment import Prepared, feature_spec, load_data, prepare

        m = cfg.model
        key = json.dumps({"datasets": [asdict(d) for d in cfg.datasets], "features": features,
                          "model": [m.backbone, m.weights, m.freeze, cfg.train.cache_dir,
                                    asdict(feature_spec(cfg))] if features else None},
                         sort_keys=True, default=str)
        if key not in self.preps:
            made = (prepare(cfg, device, self.log) if features
                    else Prepared(load_data(cfg), None, None, {}))
            if features and not m.freeze:
                return made
            self.preps[key] = made
        return self.preps[key]

    def splits_for(self, cell: Cell, cfg: ExperimentConfig, manifest) -> list:
        """The (group, protocol)'s splits: loaded when saved, else built once and saved."""
        from mixiqa.data.splits import Split
        from mixiqa.experiment import build_splits

        key = f"{cell.group_name}__{cell.protocol.name}"
        if key not in self.splits:
            folder = self.out / "splits" / key
            index = folder / "splits.json"
            if index.exists():
                files = json.loads(index.read_text())["files"]
                self.splits[key] = [Split.load(folder / f) for f in files]
            else:
                splits = build_splits(cfg, manifest)
                folder.mkdir(parents=True, exist_ok=True)
                files = [f"split_{i:02d}.json" for i in range(len(splits))]
                for s, f in zip(splits, files):
                    s.save(folder / (f + ".tmp"))
                    os.replace(folder / (f + ".tmp"), folder / f)
                write_atomic(index, json.dumps({"group": list(cell.group), "protocol":
                                                cell.protocol.name, "files": files}, indent=1))
                self.splits[key] = splits
        return self.splits[key]


def run_bench(bench: BenchConfig, out: str | Path, resume: bool = False,
              only: list[str] | None = None, log=print) -> dict:
    """Run every unfinished cell of the grid (or of the ``only`` method labels).

    Returns:
        The summary written to ``summary.json``.

    Raises:
        ConfigError: ``out`` holds files and ``resume`` is off, or holds a bench made with
            another config (the differences are named).
    """
    out = Path(out)
    cells = bench.cells(only)
    check_out_dir(bench, out, resume)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "bench.yaml", yaml.safe_dump(bench.to_dict(), sort_keys=False))
    for reason in bench.skipped():
        log(f"skipped {reason}")
    shared = _Shared(out, log)
    for cell in progress(cells, desc="bench", unit="cell"):
        done = out / "cells" / cell.name / "results.json"
        if done.exists():
            log(f"{cell.name}: finished before, kept")
            continue
        res = run_cell(bench, cell, out / "cells" / cell.name, shared, resume)
        scores = ", ".join(f"{ds} SRCC {m['srcc']:.3f}" for ds, m in res["per_dataset"].items())
        log(f"{cell.name}: {scores} ({res['timings']['seconds']:.0f} s)")
        write_outputs(bench, out)
    return write_outputs(bench, out)


def run_cell(bench: BenchConfig, cell: Cell, folder: Path, shared: _Shared,
             resume: bool) -> dict:
    """Prepare (shared), split (shared), run the cell's runner, write its ``results.json``."""
    from mixiqa.experiment import resolve_device, summarize

    cfg = bench.cell_config(cell)
    runner = get_runner(cell.method.runner)
    device = resolve_device(cfg.train.device)
    t0 = time.perf_counter()
    prep = shared.prep(cfg, needs_features(runner), device)
    splits = shared.splits_for(cell, cfg, prep.manifest)
    t1 = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    cfg.save(folder / "config.yaml")
    results = runner(cfg, prep, splits, folder, resume, device)
    seconds = time.perf_counter() - t1
    summary = summarize(results)
    summary.update({
        "timings": {"seconds": seconds, "prepare_seconds": t1 - t0, "total_seconds": seconds},
        "config": cfg.to_dict(), "mixiqa_version": __version__,
        "seeds": [r["seed"] for r in results], "device": device,
        "bench_cell": {"method": cell.method.label, "group": cell.group_name,
                       "protocol": cell.protocol.name, "runner": cell.method.runner}})
    write_atomic(folder / "results.json", json.dumps(summary, indent=1, default=str))
    return summary


def grid_grown(old: dict, new: dict) -> bool:
    """True when bench ``new`` is ``old`` with methods, dataset groups or protocols added and
    nothing else changed, so that every cell ``old`` finished is a cell of ``new`` as it was."""
    if any(old.get(k) != new.get(k) for k in ("name", "experiment", "set")):
        return False
    return all(entry in new.get(k, []) for k in ("methods", "datasets", "protocols")
               for entry in old.get(k, []))


def with_current_defaults(saved: dict) -> dict:
    """A saved bench.yaml with its experiment read by today's config loader: a config field
    added since the bench was started shows at its default (the old behaviour), not as a
    difference."""
    try:
        experiment = plain(config_from_dict(saved["experiment"]).to_dict())
    except (ConfigError, KeyError, TypeError):
        return saved                      # not readable today: compared as saved
    return {**saved, "experiment": experiment}


def check_out_dir(bench: BenchConfig, out: Path, resume: bool) -> None:
    """Refuse a non-empty folder without ``resume``, and a different bench with it (a grid
    that only grew is the same bench: its finished cells are kept, the new ones run)."""
    if not out.exists() or not any(out.iterdir()):
        return
    if not resume:
        raise ConfigError(f"Bench folder '{out}' is not empty. Pass --resume to continue the "
                          "bench there, or give a new --out folder.")
    saved = out / "bench.yaml"
    if not saved.is_file():
        raise ConfigError(f"'{out}' holds files but no bench.yaml, so it is not a bench "
                          "folder. Give a new --out folder.")
    before = with_current_defaults(yaml.safe_load(saved.read_text()))
    diffs = config_differences(before, bench.to_dict())
    if diffs and not grid_grown(before, bench.to_dict()):
        shown = "; ".join(diffs[:5]) + ("; ..." if len(diffs) > 5 else "")
        raise ConfigError(f"Cannot resume '{out}': its bench.yaml differs from this config "
                          f"({len(diffs)} difference(s): {shown}). Resume with the same file "
                          "and --set values (methods, dataset groups and protocols may be "
                          "added), or give a new --out folder.")


def finished_cells(bench: BenchConfig, out: Path) -> dict[str, dict]:
    """Every finished cell of the full grid, in table order (protocol, group, method)."""
    rank = {k: i for i, k in enumerate([p.name for p in bench.protocols])}
    labels = [m.label for m in bench.methods]
    cells = sorted(bench.cells(), key=lambda c: (rank[c.protocol.name],
                                                 bench.groups.index(c.group),
                                                 labels.index(c.method.label)))
    found = {}
    for c in cells:
        path = out / "cells" / c.name / "results.json"
        if path.exists():
            r = json.loads(path.read_text())
            found[c.name] = {"method": c.method.label, "group": c.group_name,
                             "protocol": c.protocol.name, "runner": c.method.runner,
                             "per_dataset": r["per_dataset"], "weighted": r["weighted"],
                             "n_splits": r["n_splits"], "seconds": r["timings"]["seconds"],
                             "folder": f"cells/{c.name}", "splits": r["splits"]}
    return found


def write_outputs(bench: BenchConfig, out: Path) -> dict:
    """Rewrite raw.*, table.* and summary.json from the finished cells on disk."""
    cells = finished_cells(bench, out)
    order = [dataset_name(d) for d in bench.experiment["datasets"]]
    write_tables(out, cells, order)
    summary = {"cells": {k: {f: v for f, v in c.items() if f != "splits"}
                         for k, c in cells.items()},
               "n_cells": len(bench.cells()), "skipped": bench.skipped(),
               "spread": "IQR over splits (<metric>_iqr, with _q1/_q3/_min/_max)",
               "config": bench.to_dict(), "mixiqa_version": __version__,
               "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "machine": machine()}
    write_atomic(out / "summary.json", json.dumps(summary, indent=1, default=str))
    return summary


def machine() -> dict:
    """Where the bench ran, for the record (no host name)."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "gpu": gpu}


# ---- CLI ----------------------------------------------------------------------------

def add_bench_command(sub) -> None:
    """Add ``mixiqa bench`` to the CLI's subparsers."""
    p = sub.add_parser("bench", help="run methods x dataset groups x protocols on shared splits",
                       description="Run a bench grid (see configs/bench_example.yaml): every "
                                   "method on the same splits; writes per-split raw results, "
                                   "the median table (markdown, CSV, LaTeX) and summary.json.")
    p.add_argument("config", help="bench YAML file")
    p.add_argument("--out", required=True, help="bench folder")
    p.add_argument("--resume", action="store_true",
                   help="continue the bench in --out; finished cells and splits are kept")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="experiment override for every cell, e.g. train.epochs=5 (repeatable)")
    p.add_argument("--only", default="", metavar="LABEL,...",
                   help="run only these method labels (tables list every finished cell)")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args) -> int:
    bench = load_bench_config(args.config, args.set)
    only = [s.strip() for s in args.only.split(",") if s.strip()] or None
    run_bench(bench, args.out, resume=args.resume, only=only)
    print((Path(args.out) / "table.md").read_text())
    print(f"bench folder: {args.out} (table.md/.csv/.tex, raw.csv, summary.json, cells/)")
    return 0
