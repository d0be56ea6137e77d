"""Score alignment methods on a synthetic build: does q rank ALL images by latent quality?

:func:`alignment_scores` reads a run folder's per-split ``predictions.csv``;
:func:`run_synth_benchmark` runs several methods on the same cached features and the
same content splits, then writes ``synth_results.json`` and ``synth_table.md``.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from mixiqa.data.manifest import Manifest
from mixiqa.errors import DataError
from mixiqa.evaluate import srcc
from mixiqa.synth.build import (LATENT_FIELDS, read_csv, select_and_annotate, write_annotations,
                                write_csv)
from mixiqa.synth.spec import SynthSpec, load_spec, swap_transforms


def read_latent(latent_csv: str | Path) -> dict[str, float]:
    """Image file name -> latent quality (file names are unique in a build)."""
    path = Path(latent_csv)
    if not path.is_file():
        raise DataError(f"Latent table '{path}' not found; it is written by `mixiqa synth build` "
                        "as DIR/latent.csv.")
    table: dict[str, float] = {}
    for row in read_csv(path):
        key = Path(row["path"]).name
        if key in table:
            raise DataError(f"{path}: image file name '{key}' appears twice; the table must "
                            "come from one build.")
        table[key] = row["latent"]
    return table


def _split_table(pred_csv: Path, latent: dict[str, float]) -> dict[str, np.ndarray]:
    """Columns of one split's predictions joined with the latent quality."""
    with open(pred_csv, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    missing = [r["path"] for r in rows if Path(r["path"]).name not in latent]
    if missing or not rows:
        raise DataError(f"{pred_csv}: {len(missing)} of {len(rows)} test images are not in the "
                        f"latent table (e.g. {missing[:2]}). Was this run made on that build?")
    sign = np.array([1.0 if r["higher_better"] in ("1", "True", "true") else -1.0 for r in rows])
    return {"dataset": np.array([r["dataset"] for r in rows]),
            "q": np.array([float(r["q"]) for r in rows]),
            # oriented: higher = better
            "score": sign * np.array([float(r["score"]) for r in rows]),
            "latent": np.array([latent[Path(r["path"]).name] for r in rows])}


def alignment_scores(run_dir: str | Path, latent_csv: str | Path) -> dict:
    """Pooled and per-dataset alignment of a run's proxy scores q, median over splits.

    Returns:
        ``pooled_srcc``: SRCC of q against the latent quality over the test images of ALL
        datasets together (one number per split, then the median); ``per_dataset``: for
        each dataset the median SRCC of q against its (oriented) synthetic score and
        against the latent quality; ``pooled_srcc_splits``; ``n_splits``.

    Raises:
        DataError: no ``split_NN/predictions.csv`` in ``run_dir``, or images the latent
            table does not know.
    """
    latent = read_latent(latent_csv)
    files = sorted(Path(run_dir).glob("split_*/predictions.csv"))
    if not files:
        raise DataError(f"No split_NN/predictions.csv under '{run_dir}'. Point at a finished "
                        "run folder (mixiqa train ... --out RUN).")
    pooled, per = [], {}
    for f in files:
        t = _split_table(f, latent)
        pooled.append(srcc(t["q"], t["latent"]))
        for name in map(str, dict.fromkeys(t["dataset"])):
            m = t["dataset"] == name
            d = per.setdefault(name, {"srcc_score": [], "srcc_latent": [], "n": []})
            d["srcc_score"].append(srcc(t["q"][m], t["score"][m]))
            d["srcc_latent"].append(srcc(t["q"][m], t["latent"][m]))
            d["n"].append(int(m.sum()))
    med = lambda v: float(np.median(v))   # noqa: E731
    return {"pooled_srcc": med(pooled), "pooled_srcc_splits": [float(p) for p in pooled],
            "per_dataset": {n: {k: med(v) for k, v in d.items()} for n, d in per.items()},
            "n_splits": len(files)}


def reannotate(synth_dir: str | Path, spec: SynthSpec, out: str | Path) -> Path:
    """Rate a build's images again under another spec (e.g. swapped transforms) into ``out``.

    The windows and content stay those of ``spec``; images are not copied: the new
    ``scores.csv`` files point at the build's images by absolute path.
    """
    synth_dir, out = Path(synth_dir), Path(out)
    candidates = read_csv(synth_dir / "candidates.csv")
    kept, _ = select_and_annotate(spec, candidates)
    out.mkdir(parents=True, exist_ok=True)
    write_annotations(spec, kept, out, image_root=synth_dir)
    write_csv(out / "latent.csv", [{**r, "path": str((synth_dir / r["path"]).absolute())}
                                   for r in kept], LATENT_FIELDS)
    meta = {"spec": spec.to_dict(), "derived_from": str(synth_dir.absolute())}
    (out / "synth.json").write_text(json.dumps(meta, indent=1))
    return out


def swapped_build(synth_dir: str | Path, a: str, b: str, out: str | Path) -> Path:
    """``synth_dir`` re-rated with datasets ``a`` and ``b`` trading transforms, in ``out``."""
    spec = load_spec(Path(synth_dir) / "synth.json")
    return reannotate(synth_dir, swap_transforms(spec, a, b), out)


def oracle_manifest(manifest: Manifest, latent: dict[str, float]) -> Manifest:
    """The same rows with every score replaced by 10 x the latent quality (one MOS scale).

    Trained on it, a method faces no alignment problem at all: what it reaches is the
    ceiling set by how well the features predict the latent quality on unseen content.
    """
    return Manifest([replace(r, score=10.0 * latent[Path(r.path).name], higher_better=True,
                             score_min=0.0, score_max=10.0, std=None) for r in manifest])


def run_synth_benchmark(synth_dir: str | Path, methods: list[str], n_splits: int,
                        out: str | Path, overrides: tuple[str, ...] | list[str] = (),
                        resume: bool = False, oracle: str | None = None, log=print) -> dict:
    """Every method on the same features and content splits; alignment per method.

    Args:
        synth_dir: A build folder (with experiment.yaml and latent.csv).
        methods: Names registered in :data:`mixiqa.methods.METHODS`.
        n_splits: Content splits (seeds 0..n-1).
        out: Results folder: ``out/<method>/split_NN/...``, ``synth_results.json``,
            ``synth_table.md``.
        overrides: ``key.sub=value`` config overrides (e.g. ``train.epochs=10``).
        resume: Reuse finished splits of an earlier run into the same ``out``.
        oracle: Also train this method on the latent quality itself (row
            ``oracle:<method>``, see :func:`oracle_manifest`): the learnability ceiling.
    """
    from mixiqa.config import load_config
    from mixiqa.experiment import build_splits, prepare, resolve_device, run_splits, summarize
    from mixiqa.methods import get_method

    synth_dir, out = Path(synth_dir), Path(out)
    for m in [*methods, *([oracle] if oracle else [])]:
        get_method(m)   # fail before any work on a misspelt name
    cfg = load_config(synth_dir / "experiment.yaml",
                      [f"split.seeds={list(range(n_splits))}", *overrides])
    out.mkdir(parents=True, exist_ok=True)
    cfg.save(out / "config.yaml")
    device = resolve_device(cfg.train.device)
    t0 = time.perf_counter()
    prep = prepare(cfg, device, log=log)
    splits = build_splits(cfg, prep.manifest)
    runs = [(m, m, prep) for m in methods]
    if oracle:
        truth = replace(prep, manifest=oracle_manifest(prep.manifest,
                                                       read_latent(synth_dir / "latent.csv")))
        runs.append((f"oracle:{oracle}", oracle, truth))
    table = {}
    for label, name, data in runs:
        c = copy.deepcopy(cfg)
        c.method.name = name
        folder = out / label.replace(":", "_")
        t = time.perf_counter()
        res = run_splits(c, data, splits, folder, resume, device, log=lambda *a: None)
        seconds = _training_seconds(folder, time.perf_counter() - t, resume)
        table[label] = {"alignment": alignment_scores(folder, synth_dir / "latent.csv"),
                        "test": summarize(res)["per_dataset"], "seconds": round(seconds, 1)}
        log(f"{label}: pooled alignment SRCC {table[label]['alignment']['pooled_srcc']:.3f} "
            f"({seconds:.0f} s)")
    doc = {"synth_dir": str(synth_dir.absolute()), "n_splits": len(splits),
           "seeds": list(cfg.split.seeds), "device": device, "methods": table,
           "timings": {**prep.timings, "total_seconds": round(time.perf_counter() - t0, 1)},
           "config": cfg.to_dict()}
    _write_atomic(out / "synth_results.json", json.dumps(doc, indent=1, default=str))
    _write_atomic(out / "synth_table.md", markdown_table(doc))
    return doc


def _training_seconds(folder: Path, elapsed: float, resume: bool) -> float:
    """Training time of a method's splits, summed over resumed sessions (seconds.json)."""
    path = folder / "seconds.json"
    before = json.loads(path.read_text())["seconds"] if resume and path.exists() else 0.0
    _write_atomic(path, json.dumps({"seconds": before + elapsed}))
    return before + elapsed


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def markdown_table(doc: dict) -> str:
    """method | pooled alignment SRCC | per-dataset SRCC vs its score (vs latent) | seconds."""
    methods = doc["methods"]
    names = list(dict.fromkeys(n for m in methods.values() for n in m["alignment"]["per_dataset"]))
    head = (["method", "pooled alignment SRCC"] + [f"{n} SRCC score (latent)" for n in names]
            + ["seconds"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, m in methods.items():
        per = m["alignment"]["per_dataset"]
        cells = [f"{per[n]['srcc_score']:.3f} ({per[n]['srcc_latent']:.3f})" if n in per else "-"
                 for n in names]
        lines.append(f"| {method} | {m['alignment']['pooled_srcc']:.3f} | " + " | ".join(cells)
                     + f" | {m['seconds']:.0f} |")
    note = (f"\nMedians over {doc['n_splits']} content split(s); pooled = SRCC of q against the "
            "latent quality over the test images of all datasets together.\n")
    return "\n".join(lines) + "\n" + note
