"""Build a synthetic alignment benchmark: render, measure, select, annotate, write.

Layout of a build folder DIR::

    DIR/sources/<id>.png               pristine sources (size x size)
    DIR/<dataset>/images/<id>_<type>_<level>.png   distorted images (lossless PNG)
    DIR/<dataset>/scores.csv           image,score,std,group,distortion (mixiqa's csv dataset)
    DIR/candidates.csv                 every rendered image with its latent quality
    DIR/latent.csv                     the images the datasets keep: path,latent,dataset,...
    DIR/synth.json                     the full spec, seed, sources, windows and counts
    DIR/experiment.yaml                ``mixiqa train DIR/experiment.yaml --out RUN``

Rendering is resumable: an image already on disk is read back, not rendered again.
"""

from __future__ import annotations

import csv
import json
import os
import warnings
import zlib
from pathlib import Path

import numpy as np
import yaml

from mixiqa import __version__
from mixiqa.distortions import distort, from_pil, to_pil
from mixiqa.errors import ConfigError
from mixiqa.progress import progress
from mixiqa.synth.sources import latent_quality, load_source
from mixiqa.synth.spec import SynthSpec

CANDIDATE_FIELDS = ["name", "path", "latent", "dataset", "group", "distortion", "level"]
LATENT_FIELDS = ["path", "latent", "dataset", "group", "distortion", "level"]
MIN_GROUPS = 4   # content protocol 0.6/0.2/0.2 needs 4 sources per dataset


def assign_sources(spec: SynthSpec, ids: list[str]) -> dict[str, list[str]]:
    """Deal the sources (shuffled by seed) round-robin to the datasets: content-disjoint."""
    order = np.random.default_rng([spec.seed, zlib.crc32(b"sources")]).permutation(len(ids))
    out: dict[str, list[str]] = {d.name: [] for d in spec.datasets}
    for i, j in enumerate(order):
        out[spec.datasets[i % len(spec.datasets)].name].append(ids[j])
    return {k: sorted(v) for k, v in out.items()}


def _save_png(img: np.ndarray, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    to_pil(img).save(tmp, format="PNG", compress_level=1)   # lossless; level 1 is fast
    os.replace(tmp, path)   # a crash never leaves a half-written image behind


def _load_png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return from_pil(im)


def render_source(spec: SynthSpec, src: str, ref: np.ndarray, dataset: str,
                  out: Path) -> list[dict]:
    """Every (type, level) version of one source, saved and scored against it."""
    ds = spec.dataset(dataset)
    folder = out / dataset / "images"
    jobs = [(t, lv) for t in ds.distortions for lv in range(1, 6)]
    if spec.include_pristine:
        jobs.append(("pristine", 0))
    images = []
    for t, lv in jobs:
        path = folder / f"{src}_{t}_{lv}.png"
        if not path.exists():
            rng = np.random.default_rng([spec.seed, zlib.crc32(f"{src}/{t}/{lv}".encode())])
            _save_png(ref if lv == 0 else distort(ref, t, lv, rng), path)
        images.append(_load_png(path))        # what the model will see: the 8-bit PNG
    latent = np.clip(latent_quality(ref, np.stack(images), spec.latent), 0.0, 1.0)   # (N,)
    latent[[lv == 0 for _, lv in jobs]] = 1.0   # identical to the reference, float32 noise aside
    return [{"name": f"images/{src}_{t}_{lv}.png", "path": f"{dataset}/images/{src}_{t}_{lv}.png",
             "latent": float(q), "dataset": dataset, "group": src, "distortion": t,
             "level": lv} for (t, lv), q in zip(jobs, latent)]


def render_all(spec: SynthSpec, origins: list[str], out: Path) -> tuple[list[dict], dict]:
    """Render every source of every dataset; returns the candidate rows and the assignment."""
    ids = [f"s{i:03d}" for i in range(len(origins))]
    assignment = assign_sources(spec, ids)
    owner = {s: d for d, srcs in assignment.items() for s in srcs}
    (out / "sources").mkdir(parents=True, exist_ok=True)
    for d in spec.datasets:
        (out / d.name / "images").mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    for src, origin in progress(list(zip(ids, origins)), desc="rendering sources"):
        ref_path = out / "sources" / f"{src}.png"
        if not ref_path.exists():
            _save_png(load_source(origin, spec.size), ref_path)
        rows += render_source(spec, src, _load_png(ref_path), owner[src], out)
    return rows, assignment


def select_and_annotate(spec: SynthSpec, candidates: list[dict]) -> tuple[list[dict], dict]:
    """Keep each dataset's quantile window of the latent quality and rate it on its scale.

    The windows are quantiles of the latent quality over ALL rendered images, so they
    place the datasets on one common axis; inside its window a dataset's raters use
    their whole scale (u = 0 at the window's bottom, 1 at its top), as real datasets do.
    """
    latent = np.array([c["latent"] for c in candidates])
    kept, windows = [], {}
    for ds in spec.datasets:
        lo, hi = (float(np.quantile(latent, w)) for w in ds.window)
        rows = sorted((c for c in candidates if c["dataset"] == ds.name
                       and lo <= c["latent"] <= hi), key=lambda c: c["name"])
        windows[ds.name] = {"quantiles": list(ds.window), "latent": [lo, hi], "n": len(rows)}
        if len(rows) < 2:
            raise ConfigError(f"Synthetic dataset '{ds.name}' keeps {len(rows)} image(s) in its "
                              f"window {ds.window}; widen the window or give it more sources "
                              "or distortion types.")
        u = (np.array([r["latent"] for r in rows]) - lo) / max(hi - lo, 1e-12)
        rng = np.random.default_rng([spec.seed, zlib.crc32(ds.name.encode())])
        mos, std = ds.annotate(u, rng)
        kept += [{**r, "score": float(m), "std": float(s)} for r, m, s in zip(rows, mos, std)]
    return kept, windows


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["latent"], r["level"] = float(r["latent"]), int(r["level"])
    return rows


def write_annotations(spec: SynthSpec, kept: list[dict], out: Path,
                      image_root: Path | None = None) -> None:
    """Per dataset ``<out>/<name>/scores.csv``, and ``<out>/experiment.yaml``.

    Args:
        image_root: Build folder the images live in when ``out`` is another folder (a
            re-annotation, e.g. swapped transforms): the image column is then absolute.
    """
    for ds in spec.datasets:
        folder = out / ds.name
        folder.mkdir(parents=True, exist_ok=True)
        rows = [{**r, "image": r["name"] if image_root is None
                 else str((image_root / r["path"]).absolute()),
                 "score": f"{r['score']:.6g}", "std": f"{r['std']:.6g}"}
                for r in kept if r["dataset"] == ds.name]
        write_csv(folder / "scores.csv", rows, ["image", "score", "std", "group", "distortion"])
    (out / "experiment.yaml").write_text(yaml.safe_dump(experiment_dict(spec), sort_keys=False))


def experiment_dict(spec: SynthSpec) -> dict:
    """The experiment config of a build: csv datasets, content splits, frozen features."""
    sets = [{"name": "csv", "root": ds.name,
             "options": {"file": "scores.csv", "name": ds.name, "higher_better": ds.higher_better,
                         "score_range": f"{ds.score_range[0]:g},{ds.score_range[1]:g}"}}
            for ds in spec.datasets]
    from mixiqa.config import quickstart_recipe

    return {"name": "synth", "datasets": sets,
            "split": {"protocol": "content", "ratios": [0.6, 0.2, 0.2], "seeds": [0]},
            **quickstart_recipe()}


def check_render_key(spec: SynthSpec, origins: list[str], out: Path) -> None:
    """Refuse to resume into a folder rendered with other sources, sizes or seeds."""
    key = {"origins": origins, "seed": spec.seed, "size": spec.size,
           "include_pristine": spec.include_pristine}
    path = out / "render.json"
    if path.exists():
        old = json.loads(path.read_text())
        if old != key:
            raise ConfigError(f"'{out}' holds a build of other sources, size or seed; its "
                              "images would be reused wrongly. Choose a new --out folder.")
        return
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(key, indent=1))


def build_synth(origins: list[str], out: str | Path, spec: SynthSpec) -> dict:
    """Render, measure, select and annotate; write every file of the build folder.

    Args:
        origins: Source images (see :func:`mixiqa.synth.sources.resolve_sources`).
        out: The build folder; images already in it are reused (resume).
        spec: The benchmark's definition (:func:`mixiqa.synth.spec.default_spec`).

    Returns:
        The content of ``synth.json``.
    """
    spec.check()
    out = Path(out)
    if len(origins) < len(spec.datasets):
        raise ConfigError(f"{len(origins)} source image(s) for {len(spec.datasets)} datasets; "
                          "each dataset needs its own content. Add sources or use fewer datasets.")
    check_render_key(spec, origins, out)
    candidates, assignment = render_all(spec, origins, out)
    few = [d for d, s in assignment.items() if len(s) < MIN_GROUPS]
    if few:
        warnings.warn(f"Datasets {few} have fewer than {MIN_GROUPS} sources: too few for the "
                      "content protocol's 0.6/0.2/0.2 split of experiment.yaml.", stacklevel=2)
    write_csv(out / "candidates.csv", candidates, CANDIDATE_FIELDS)
    kept, windows = select_and_annotate(spec, candidates)
    write_annotations(spec, kept, out)
    write_csv(out / "latent.csv", kept, LATENT_FIELDS)
    doc = {"mixiqa_version": __version__, "spec": spec.to_dict(),
           "sources": [{"id": f"s{i:03d}", "origin": o} for i, o in enumerate(origins)],
           "assignment": assignment, "windows": windows,
           "diagnostics": diagnostics(spec, kept)}
    tmp = out / "synth.json.tmp"
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, out / "synth.json")
    return doc


def diagnostics(spec: SynthSpec, kept: list[dict]) -> dict:
    """How misaligned the scales are, and how noisy the raters: reference points.

    ``pooled_srcc_rescaled_scores``: SRCC of the latent quality with each dataset's scores
    min-max rescaled (DMOS flipped) and pooled: what perfect per-dataset predictions with
    naive rescaling would reach. ``score_vs_latent_srcc``: per dataset, the rater-noise
    ceiling of any predictor's within-dataset SRCC against the latent quality.
    """
    from scipy.stats import spearmanr

    latent = np.array([r["latent"] for r in kept])
    rescaled = np.zeros(len(kept))
    per = {}
    for ds in spec.datasets:
        m = np.array([r["dataset"] == ds.name for r in kept])
        s = np.array([r["score"] for r in kept])[m] * (1 if ds.higher_better else -1)
        rescaled[m] = (s - s.min()) / max(s.max() - s.min(), 1e-12)
        per[ds.name] = round(float(spearmanr(s, latent[m])[0]), 4)
    return {"pooled_srcc_rescaled_scores": round(float(spearmanr(rescaled, latent)[0]), 4),
            "score_vs_latent_srcc": per, "images": len(kept)}
