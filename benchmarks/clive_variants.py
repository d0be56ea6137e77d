"""CLIVE feature variants under the closed-form regressor: does any cheap change to the
frozen native features lift CLIVE towards the 0.80 goal?

    uv run python benchmarks/clive_variants.py          # ~35 min first run, ~8 min cached
    uv run python benchmarks/clive_variants.py --encoder runs/reiqa-pretrain/encoder.safetensors

Gaussian kernel ridge on CLIVE ALONE (the best CLIVE model of closed_form.py), the splits of
configs/bench_real.yaml (seeds 0-9). Each variant chooses its kernel width and penalty on
split60 VALIDATION SRCC; the test medians of split60 and split80 are reported. Variants:

- ``base``: the recipe's 2048 numbers (mean and std of five stages, scales 1.0 and 0.5);
- ``crop224``: the same pooling of a 224 centre crop of the image resized to a 256 short
  side (the quickstart's input) instead of the native-resolution image: why the recipe
  keeps native resolution;
- ``+avg``: the last map's global average appended (``pooling: meanstd+avg``, 4608 numbers);
- ``eqblock``: every (stage, statistic, scale) block weighted equally in the kernel
  distance instead of every number (the wide late stages dominate ``base``);
- ``logstd``: log of the standard-deviation features (they are skewed);
- ``flip``: training rows doubled with the features of horizontally flipped images, test
  predictions averaged over the image and its flip;
- ``crops``: the same with the four corner crops and the centre crop (3/4 of each side;
  five more rows per training image, test predictions averaged over the six views);
- ``+s0.25`` / ``+s1.5``: the features at one more scale appended;
- ``+brisque``: BRISQUE's 36 natural-scene statistics appended (hand-made, distortion-aware);
- ``lite2`` / ``+lite2``: the same recipe through the larger EfficientNet-Lite2 (offline
  weights too), alone and appended to ``base``;
- ``+quality`` (with ``--encoder RUN/encoder.safetensors`` from ``mixiqa pretrain``): the
  same features of the Re-IQA quality encoder appended (benchmarks/reiqa.md).

Then a learning curve of ``base`` at split80 (fractions of each split's training rows),
to read what training on all 627 images (the shipped model) can be expected to give.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from closed_form import gaussian, solve
from mixiqa.classical.runner import row_values
from mixiqa.config import load_config
from mixiqa.errors import ConfigError, DataError, run_command
from mixiqa.evaluate import srcc
from mixiqa.experiment import build_splits, feature_spec, prepare
from mixiqa.features import extract_features
from mixiqa.models.backbones import create_backbone
from mixiqa.train import oriented

GAMMAS = (0.25, 0.5, 1.0, 2.0)
ALPHAS = (0.01, 0.03, 0.1, 0.3)
CHANNELS = (16, 24, 40, 112, 320)     # EfficientNet-Lite0's five stages
VARIANTS = ("base", "crop224", "+avg", "eqblock", "logstd", "flip", "crops", "+s0.25",
            "+s1.5")
CROP_FRAC = 0.75                      # crops variant: side of each crop / side of image


def blocks(n_scales: int) -> list[tuple[int, int, str]]:
    """(start, end, 'mean' | 'std') column ranges of the meanstd layout, scale by scale."""
    out, o = [], 0
    for _ in range(n_scales):
        for c in CHANNELS:
            out += [(o, o + c, "mean"), (o + c, o + 2 * c, "std")]
            o += 2 * c
    return out


def kernel(a: np.ndarray, b: np.ndarray, gamma: float, eq: bool) -> np.ndarray:
    """Gaussian kernel; with ``eq`` each block's squared distance is divided by its width
    and the blocks averaged, so every block has the same say."""
    if not eq:
        return gaussian(a, b, gamma)
    bl = blocks(2)
    d2 = np.zeros((len(a), len(b)))
    for s, e, _ in bl:
        x, z = a[:, s:e], b[:, s:e]
        d2 += np.maximum((x * x).sum(1)[:, None] + (z * z).sum(1)[None] - 2 * x @ z.T, 0) / (e - s)
    return np.exp(-gamma * d2 / len(bl))


def clive_srcc(x, views, y, splits, part, variant, grid, frac=1.0, seed=0):
    """{(gamma, alpha): [SRCC per split]} on the ``part`` rows (CLIVE indices).

    ``views[variant]`` (if any) lists features of altered copies of every image, (627, D)
    each: their rows join the training rows with the image's score, and a test prediction
    is the average over the image and its copies.
    """
    rng = np.random.default_rng(seed)
    extra = views.get(variant, [])
    res: dict = {}
    for tr, ev in splits:
        tr = rng.permutation(tr)[: int(round(frac * len(tr)))] if frac < 1 else tr
        x_tr = np.vstack([x[tr]] + [v[tr] for v in extra])
        y_tr = np.tile(y[tr], 1 + len(extra))
        mu, sd = x_tr.mean(0), x_tr.std(0) + 1e-6
        z_tr, t = (x_tr - mu) / sd, (y_tr - y_tr.mean()) / y_tr.std()
        eq = variant == "eqblock"
        for g in grid[0]:
            k_tr = kernel(z_tr, z_tr, g, eq)
            k_ev = sum(kernel((v[ev] - mu) / sd, z_tr, g, eq) for v in [x] + extra)
            k_ev /= 1 + len(extra)      # KRR is linear in the kernel row: averaged predictions
            for a in grid[1]:
                p = k_ev @ solve(k_tr, t, a)
                res.setdefault((g, a), []).append(srcc(p, y[ev]))
    return res


def crop_boxes(w: int, h: int) -> list[tuple[int, int, int, int]]:
    """The four corner crops and the centre crop, each CROP_FRAC of the image's sides."""
    cw, ch = int(w * CROP_FRAC), int(h * CROP_FRAC)
    corners = [(0, 0), (w - cw, 0), (0, h - ch), (w - cw, h - ch), ((w - cw) // 2, (h - ch) // 2)]
    return [(x0, y0, x0 + cw, y0 + ch) for x0, y0 in corners]


def altered_copies(paths: list[str], folder: Path, alter, tag: str) -> list[str]:
    """PNG copies (lossless, so the features see only the alteration) of ``alter(image)``."""
    out = []
    for i, p in enumerate(paths):
        q = folder / f"{tag}_{i:05d}.png"
        alter(Image.open(p).convert("RGB")).save(q)
        out.append(str(q))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/native.yaml")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--out", default="runs/clive-variants")
    ap.add_argument("--encoder", help="Re-IQA quality encoder: adds the +quality variant")
    args = ap.parse_args()
    if args.encoder and not Path(args.encoder).is_file():   # before minutes of loading
        raise ConfigError(f"--encoder '{args.encoder}' is not a file; give the "
                          "encoder.safetensors written by `mixiqa pretrain` (benchmarks/reiqa.md).")
    seeds = f"split.seeds={list(range(args.seeds))}"
    cfg = load_config(args.config, [seeds])
    prep = prepare(cfg, "cpu", log=lambda *a: None)
    manifest = prep.manifest
    clive = np.array([r.dataset == "clive" for r in manifest])
    idx = {k: i for i, k in enumerate(k for k, c in zip(manifest.keys(), clive) if c)}
    clive_rows = [r for r, c in zip(manifest, clive) if c]
    paths = [r.path for r in clive_rows]
    y = oriented(manifest)[clive]
    base = prep.feats.numpy()[clive].astype(np.float64)            # (627, 2048)
    spec = feature_spec(cfg)

    def recipe(**change) -> np.ndarray:                           # (627, D) with spec changed
        return extract_features(paths, prep.backbone, replace(spec, **change),
                                cache_root=cfg.train.cache_dir).astype(np.float64)

    extra = {f"+s{s}": recipe(scales=(s,)) for s in (0.25, 1.5)}   # (627, 1024) each

    def copies_features(alter, tag: str) -> np.ndarray:           # (627, 2048)
        with tempfile.TemporaryDirectory() as tmp:
            return extract_features(altered_copies(paths, Path(tmp), alter, tag), prep.backbone,
                                    spec, cache_root=cfg.train.cache_dir).astype(np.float64)

    views = {"flip": [copies_features(ImageOps.mirror, "flip")],
             "crops": [copies_features(lambda im, j=j: im.crop(crop_boxes(*im.size)[j]),
                                       f"crop{j}") for j in range(5)]}
    variants = VARIANTS
    if args.encoder:   # the same recipe through the self-supervised quality encoder
        enc = create_backbone(cfg.model.backbone, weights=args.encoder)
        extra["+quality"] = extract_features(paths, enc, replace(spec, weights=args.encoder),
                                             cache_root=cfg.train.cache_dir)
        variants += ("+quality",)
    lite2 = load_config(args.config, [seeds, "model.backbone=efficientnet_lite2"])
    x_lite2 = extract_features(paths, create_backbone("efficientnet_lite2"), feature_spec(lite2),
                               cache_root=cfg.train.cache_dir).astype(np.float64)  # (627, 2240)
    variants += ("lite2", "+lite2", "+brisque")
    extra["+brisque"] = row_values(clive_rows, "brisque", cfg)    # (627, 36)
    if not np.isfinite(extra["+brisque"]).all():   # the warning above named the files
        raise DataError("BRISQUE failed on some CLIVE images (see the warning); restore them "
                        "from the official release and rerun.")
    feats = {"base": base, "eqblock": base,
             "crop224": recipe(short=256, crop=224, max_short=None),   # (627, 2048)
             "+avg": recipe(pooling="meanstd+avg"),                     # (627, 4608)
             "flip": base, "crops": base,
             "logstd": base.copy(), "lite2": x_lite2, "+lite2": np.hstack([base, x_lite2]),
             **{k: np.hstack([base, v]) for k, v in extra.items()}}
    for s, e, kind in blocks(2):
        if kind == "std":
            feats["logstd"][:, s:e] = np.log(feats["logstd"][:, s:e] + 1e-3)

    def rows(ratios: str, part: str) -> list:
        sp = build_splits(load_config(args.config, [f"split.ratios={ratios}", seeds]), manifest)
        return [(np.array([idx[k] for k in s.train if k in idx]),
                 np.array([idx[k] for k in getattr(s, part) if k in idx])) for s in sp]

    val60, test60, test80 = rows("[0.6,0.2,0.2]", "val"), rows("[0.6,0.2,0.2]", "test"), \
        rows("[0.8,0.0,0.2]", "test")
    print(f"CLIVE alone, Gaussian KRR, seeds 0-{args.seeds - 1}\n")
    print("| variant | chosen (gamma, alpha) | median val | split60 test | split80 test |\n"
          "|---|---|---|---|---|")
    summary = {}
    for v in variants:
        val = clive_srcc(feats[v], views, y, val60, "val", v, (GAMMAS, ALPHAS))
        best = max(val, key=lambda k: np.median(val[k]))
        one = ([best[0]], [best[1]])
        t60 = np.median(clive_srcc(feats[v], views, y, test60, "test", v, one)[best])
        t80 = np.median(clive_srcc(feats[v], views, y, test80, "test", v, one)[best])
        summary[v] = {"gamma": best[0], "alpha": best[1], "val": float(np.median(val[best])),
                      "split60": float(t60), "split80": float(t80)}
        print(f"| {v} | {best} | {np.median(val[best]):.3f} | {t60:.3f} | {t80:.3f} |",
              flush=True)
    g, a = summary["base"]["gamma"], summary["base"]["alpha"]
    print(f"\nlearning curve, base, split80, gamma {g}, alpha {a}\n\n"
          "| training images | median SRCC | mean SRCC |\n|---|---|---|")
    summary["curve"] = {}
    for frac in (0.4, 0.6, 0.8, 1.0):
        r = clive_srcc(base, views, y, test80, "test", "base", ([g], [a]), frac)[(g, a)]
        n = int(round(frac * len(test80[0][0])))
        summary["curve"][n] = {"median": float(np.median(r)), "mean": float(np.mean(r))}
        print(f"| {n} | {np.median(r):.3f} | {np.mean(r):.3f} |", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "clive_variants.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    sys.exit(run_command(main, Path(__file__).name))
