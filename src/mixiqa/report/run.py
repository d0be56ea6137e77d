"""Report sections of one training run (``mixiqa train`` output) and of a synthetic benchmark.

A run folder holds ``results.json`` and ``split_NN/`` folders (``result.json``,
``predictions.csv``, ``model/``); see :func:`mixiqa.experiment.run_experiment`. Whatever a
folder lacks (an interrupted split, a model that cannot be loaded) becomes a note in the
report rather than an error, so a report can always be made of what is there.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from mixiqa.errors import DataError, MixiqaError
from mixiqa.report.plots import (plot_mapper_curves, plot_pooled_srcc, plot_scatter,
                                 plot_training_curves)
from mixiqa.report.render import Plot, Section, Table, fmt

METRICS = ("srcc", "plcc", "krcc", "rmse")


# ----------------------------------------------------------------------------- reading


def read_json(path: Path) -> dict:
    """A JSON file, with a DataError naming it when it is not valid JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"cannot read '{path}': {err}; re-run the command that wrote it") from err


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV file as dicts (``predictions.csv``, ``raw.csv``)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except OSError as err:
        raise DataError(f"cannot read '{path}': {err}; re-run the command that wrote it") from err


def split_dirs(run: Path) -> list[Path]:
    """The run's ``split_NN`` folders, in order."""
    return sorted(p for p in run.glob("split_*") if p.is_dir())


Runs = Path | tuple[Path, ...]     # one run folder, or several of one recipe on other seeds


def runs_label(run: Runs) -> str:
    """A run, or several joined by commas, as the user named them."""
    return str(run) if isinstance(run, Path) else ",".join(str(p) for p in run)


def finished_splits(run: Runs) -> dict[int, Path]:
    """Seed -> folder of each finished split (its ``result.json`` names the seed; folders
    are numbered by position, so a run of seeds [10, 11] has split_00 and split_01).

    ``run`` may be several run folders of one recipe made on different seeds (a recipe run
    in parts: seeds 10-12 in one folder, 13-15 in another), read as one run of all of them;
    a seed finished in two of them is an error."""
    if not isinstance(run, Path):
        found: dict[int, Path] = {}
        for part in run:
            for seed, d in finished_splits(part).items():
                if seed in found:
                    raise DataError(f"seed {seed} is finished in both '{found[seed].parent}' "
                                    f"and '{part}': join only runs made on different seeds")
                found[seed] = d
        return found
    found = {}
    for d in split_dirs(run):
        if (d / "result.json").is_file():
            found[int(read_json(d / "result.json")["seed"])] = d
    return found


def finished_seeds(run: Runs) -> list[int]:
    """The seeds ``run`` finished, in order; a DataError naming it where there are none (a
    mistyped folder, or a run not yet done), so callers never work on zero splits."""
    seeds = sorted(finished_splits(run))
    if not seeds:
        raise DataError(f"{runs_label(run)} has no finished split (no split_*/result.json): "
                        "name a finished `mixiqa train` run folder")
    return seeds


def test_predictions(run: Runs, seed: int, dataset: str) -> dict[str, tuple[float, float]]:
    """Image name -> (prediction on the dataset's scale, MOS) for one split's test rows;
    ``run`` as in :func:`finished_splits`."""
    splits = finished_splits(run)
    if seed not in splits:
        raise DataError(f"{runs_label(run)} has no finished split with seed {seed} (finished "
                        f"seeds: {sorted(splits) or 'none'}): is it a finished `mixiqa train` "
                        "run?")
    return {r["name"]: (float(r["pred"]), float(r["score"]))
            for r in read_rows(splits[seed] / "predictions.csv") if r["dataset"] == dataset}


def averaged_srcc(runs: list[Runs], dataset: str, seeds: list[int]) -> list[float] | None:
    """Per-seed test SRCC of the mean of ``runs``' predictions on ``dataset``'s scale (one
    run: that run alone), what an ensemble of the runs' split models scores; None where a
    run has no test rows of ``dataset``. Runs must share their splits (same test images);
    each may be a tuple of folders, as in :func:`finished_splits`."""
    from scipy.stats import spearmanr

    out = []
    for seed in seeds:
        preds = [test_predictions(r, seed, dataset) for r in runs]
        if not all(preds):
            return None
        for r, p in zip(runs[1:], preds[1:]):
            if p.keys() != preds[0].keys():
                raise DataError(f"{runs_label(runs[0])} and {runs_label(r)} test different "
                                f"{dataset} images at seed {seed}: average only runs made "
                                "with the same splits.")
        names = sorted(preds[0])
        out.append(float(spearmanr([sum(p[n][0] for p in preds) for n in names],
                                   [preds[0][n][1] for n in names])[0]))
    return out


def pick_split(run: Path, index: int) -> Path:
    """``run/split_{index:02d}``, or a DataError listing the splits there are."""
    path = run / f"split_{index:02d}"
    if not path.is_dir():
        have = ", ".join(str(int(p.name[6:])) for p in split_dirs(run) if p.name[6:].isdigit())
        raise DataError(f"'{run}' has no split {index} (folder {path.name}); "
                        f"pass --split one of: {have or 'none, the run has no split folders'}")
    return path


def split_result(run: Path, summary: dict, index: int) -> dict | None:
    """One split's result dict: its ``result.json``, else the copy inside ``results.json``."""
    path = run / f"split_{index:02d}" / "result.json"
    if path.is_file():
        return read_json(path)
    splits = summary.get("splits") or []
    return splits[index] if index < len(splits) else None


# ------------------------------------------------------------------------- sections


def config_facts(summary: dict) -> list[tuple[str, str]]:
    """What was run, from the run's saved config: datasets, method, protocol, backbone."""
    cfg = summary.get("config") or {}
    split, model = cfg.get("split") or {}, cfg.get("model") or {}
    method, train = cfg.get("method") or {}, cfg.get("train") or {}
    datasets = ", ".join(f"{d.get('name')} ({d.get('root')})" for d in cfg.get("datasets") or [])
    protocol = f"{split.get('protocol', '?')}, ratios {split.get('ratios')}"
    if split.get("test_datasets"):
        protocol += f", test on {', '.join(split['test_datasets'])}"
    frozen = "frozen, cached features" if model.get("freeze") else "fine-tuned"
    facts = [("experiment", str(cfg.get("name", "?"))), ("datasets", datasets or "?"),
             ("method", f"{method.get('name', '?')}{_kwargs(method.get('mapper_kwargs'))}"),
             ("protocol", protocol),
             ("seeds", f"{summary.get('seeds')} ({summary.get('n_splits', '?')} split(s))"),
             ("backbone", f"{model.get('backbone', '?')} ({model.get('weights')} weights, "
                          f"{frozen})"),
             ("head", f"{model.get('head', '?')}{_kwargs(model.get('head_kwargs'))}"),
             ("training", f"{train.get('epochs')} epochs, batch {train.get('batch_size')}, "
                          f"lr {train.get('lr')}, {train.get('scheduler')} schedule")]
    seconds = (summary.get("timings") or {}).get("total_seconds")
    extra = f", {seconds:.0f} s" if isinstance(seconds, (int, float)) else ""
    facts.append(("run on", f"{summary.get('device', '?')}{extra}, mixiqa "
                            f"{summary.get('mixiqa_version', '?')}"))
    return facts


def _kwargs(options: dict | None) -> str:
    """``{"hidden": [256]}`` -> `` (hidden=[256])``; empty for no options."""
    return f" ({', '.join(f'{k}={v}' for k, v in options.items())})" if options else ""


def results_table(summary: dict) -> Table:
    """Median metrics per test dataset over splits, and the image-weighted mean."""
    per, weighted = summary.get("per_dataset") or {}, summary.get("weighted")
    many = (summary.get("n_splits") or 1) > 1
    header = ["dataset", "n test", "SRCC", "PLCC", "KRCC", "RMSE"] + (["SRCC IQR"] if many else [])
    rows = [[ds, str(m.get("n", "")), *(fmt(m.get(k)) for k in METRICS)]
            + ([fmt(m.get("srcc_iqr"))] if many else []) for ds, m in per.items()]
    if weighted:
        rows.append(["weighted mean", str(weighted.get("n_images", "")),
                     *(fmt(weighted.get(k)) for k in METRICS)] + (["-"] if many else []))
    n = summary.get("n_splits", "?")
    return Table(header, rows, f"Test results: median over {n} split(s); RMSE in each "
                               "dataset's own units; weighted mean by test images")


def per_split_table(run: Path, summary: dict) -> Table:
    """Test SRCC of every split, and its validation SRCC (the selection criterion)."""
    names = list(summary.get("per_dataset") or {})
    rows = []
    for i in range(summary.get("n_splits") or 0):
        res = split_result(run, summary, i) or {}
        test = res.get("test") or {}
        rows.append([f"split {i:02d}", str(res.get("seed", "?")),
                     *(fmt((test.get(ds) or {}).get("srcc")) for ds in names),
                     fmt(res.get("val_srcc"))])
    return Table(["split", "seed", *(f"{ds} SRCC" for ds in names), "val SRCC"], rows,
                 "Test SRCC per split")


def load_mappers(folder: Path):
    """A split's model for its mappers; the backbone is built only if the file holds one.

    ``load_model(..., with_backbone=False)`` rejects a fine-tuned model's file (its backbone
    weights are "unexpected"), so such a model is loaded whole.
    """
    from mixiqa.models.iqa import load_model, read_meta

    return load_model(folder, with_backbone=bool(read_meta(folder).get("backbone_in_file")))


def split_plots(split: Path, out: Path, prefix: str) -> tuple[list[Plot], list[str]]:
    """Mapper curves and the q-vs-MOS scatter of one split; notes for what cannot be drawn."""
    preds = split / "predictions.csv"
    if not preds.is_file():
        return [], [f"{split.name}: no predictions.csv (the split did not finish), so no "
                    "mapper or scatter plots"]
    rows = read_rows(preds)
    if not rows:
        return [], [f"{split.name}: predictions.csv is empty"]
    plots, notes = [], []
    try:
        model = load_mappers(split / "model")
        plot_mapper_curves(model, rows, out / f"plots/{prefix}mapper_curves.png")
        plots.append(Plot(f"plots/{prefix}mapper_curves.png",
                          f"{split.name}: each training dataset's learned mapper g_k(q) over "
                          "the test images' q range (+5%); shaded: the dataset's score range; "
                          "grey: test images (q, score)."))
    except (MixiqaError, OSError, RuntimeError) as err:
        notes.append(f"{split.name}: mapper curves not drawn: cannot load the model ({err})")
    plot_scatter(rows, out / f"plots/{prefix}scatter.png")
    plots.append(Plot(f"plots/{prefix}scatter.png",
                      f"{split.name}: proxy quality q against each test image's human score, "
                      "with the fitted 4-parameter logistic (VQEG); SRCC/PLCC in the titles."))
    return plots, notes


def training_plot(histories: dict[str, list], out: Path, name: str, what: str) -> list[Plot]:
    """The training-curve figure of several histories, or nothing when none is recorded."""
    histories = {k: h for k, h in histories.items() if h}
    if not histories:
        return []
    plot_training_curves(histories, out / f"plots/{name}.png",
                         f"Training curves, one line per {what}")
    return [Plot(f"plots/{name}.png", f"Training loss and validation SRCC per epoch, one line "
                                      f"per {what}; star: the epoch kept (best validation SRCC).")]


def run_sections(run: Path, out: Path, split: int = 0) -> list[Section]:
    """Every section of a run's report; ``split`` picks the split whose model is drawn."""
    summary = read_json(run / "results.json")
    chosen = pick_split(run, split)
    results = Section("Results", tables=[results_table(summary)])
    if (summary.get("n_splits") or 0) > 1:
        results.tables.append(per_split_table(run, summary))
    plots, notes = split_plots(chosen, out, "")
    model = Section(f"Model of {chosen.name}", plots=plots, notes=notes)
    hist = {f"split {i:02d} (seed {r.get('seed')})": r.get("history") or []
            for i in range(summary.get("n_splits") or 0) if (r := split_result(run, summary, i))}
    curves = Section("Training", plots=training_plot(hist, out, "training_curves", "split"))
    if not curves.plots:
        curves.notes.append("no training history recorded in the split results")
    return [Section("What was run", facts=config_facts(summary)), results, model, curves]


def _alignment(entry: Any) -> tuple[float | None, dict]:
    """(pooled SRCC, per-dataset entries) of one method, at its top level or in "alignment"."""
    if not isinstance(entry, dict):
        return None, {}
    inner = entry.get("alignment") if isinstance(entry.get("alignment"), dict) else entry
    pooled = inner.get("pooled_srcc", entry.get("pooled_srcc"))
    per = inner.get("per_dataset") or entry.get("per_dataset") or {}
    return (float(pooled) if isinstance(pooled, (int, float)) else None,
            per if isinstance(per, dict) else {})


def _srcc_of(entry: Any, key: str = "srcc") -> Any:
    """A per-dataset entry: a number, or a dict with ``srcc`` (or ``srcc_score``)."""
    if isinstance(entry, dict):
        return entry.get(key, entry.get("srcc_score")) if key == "srcc" else entry.get(key)
    return entry if isinstance(entry, (int, float)) and key == "srcc" else None


def synth_section(folder: Path, out: Path, split: int = 0) -> Section | None:
    """The synthetic benchmark's pooled alignment SRCC per method, if ``synth_results.json``.

    Tolerant of missing keys: a method without a pooled value gets a table row, no bar.
    The methods' training curves come from ``folder/<method>/split_NN/result.json``.
    """
    path = folder / "synth_results.json"
    if not path.is_file():
        return None
    methods = read_json(path).get("methods") or {}
    aligned = {m: _alignment(v) for m, v in methods.items()}
    pooled = {m: p for m, (p, _) in aligned.items() if p is not None}
    datasets = list(dict.fromkeys(ds for _, per in aligned.values() for ds in per))
    latent = any(_srcc_of(e, "srcc_latent") is not None for _, per in aligned.values()
                 for e in per.values())
    header = ["method", "pooled SRCC", *(f"{ds} SRCC" for ds in datasets)]
    header += [f"{ds} SRCC vs latent" for ds in datasets] if latent else []
    rows = [[m, fmt(p), *(fmt(_srcc_of(per.get(ds))) for ds in datasets)]
            + ([fmt(_srcc_of(per.get(ds), "srcc_latent")) for ds in datasets] if latent else [])
            for m, (p, per) in aligned.items()]
    section = Section("Synthetic benchmark", tables=[Table(header, rows, (
        "Alignment on synthetic data with a known latent quality: pooled = SRCC of q against "
        "the latent quality over all datasets' test images together; per dataset: SRCC of q "
        "against that dataset's own scores"))])
    if pooled:
        plot_pooled_srcc(pooled, out / "plots/synth_pooled_srcc.png")
        section.plots.append(Plot("plots/synth_pooled_srcc.png",
                                  "Pooled alignment SRCC per method: one proxy scale for all "
                                  "datasets, ranked together against the true quality."))
    else:
        section.notes.append(f"{path.name} holds no pooled_srcc values to chart")
    hist = {m: (read_json(f).get("history") or [])
            for m in methods if (f := folder / m / f"split_{split:02d}" / "result.json").is_file()}
    section.plots += training_plot(hist, out, "synth_training_curves", "method (synthetic data)")
    return section
