"""A partly fine-tuned backbone on the CPU: the native SIND recipe with EfficientNet-Lite0's
last block trainable, against the same recipe frozen, on the same splits.

    uv run python benchmarks/partial_finetune.py --seeds 6 --lr-mult 1.0   # ~12 min a split

The recipe (configs/native.yaml, method SIND, split80 of configs/bench_real.yaml) pools the
mean and standard deviation of five stage maps at full and half scale. Lite0's last block
(``blocks.6``: one inverted-residual layer, 192 -> 320 channels, 0.6 M weights) makes the
fifth map from the 16 x 16 output of ``blocks.5``. That output is computed once per image and
scale and kept (fp16, ~0.6 GB for the 4627 shared images, ~10 min); training then runs only
the last block, its pooling, the head and the mappers, through the package's own training
loop (``train_split``). ``frozen`` uses the same kept maps with the block fixed, so the two
variants differ in the block's trainability alone. BatchNorm statistics of the block stay
as pretrained (eval mode); its weights train at ``lr * backbone_lr_mult``.

The same training is the package's ``model.train_tail`` recipe (configs/native_tail.yaml,
``mixiqa train``); this script keeps the paired comparison, both arms on one set of kept maps.

A dozen images whose native size is not 500 or 512 pixels (odd BIQ2021 crops, two large
CLIVE photos) have ``blocks.5`` maps of another size; they are resampled to 16 x 16 (8 x 8
at half scale) before being kept, which changes only their last-stage statistics.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from mixiqa.config import load_config
from mixiqa.data.transforms import Transform
from mixiqa.errors import run_command
from mixiqa.experiment import (build_splits, evaluate_split, feature_spec, load_data,
                               model_meta, post_fit)
from mixiqa.features import CropSet, compute_features, stage_stats as stats
from mixiqa.methods import get_method
from mixiqa.models.backbones import create_backbone
from mixiqa.models.iqa import IQAModel, build_model
from mixiqa.progress import progress
from mixiqa.train import FeatureInputs, fit_scales, predict, torch_threads, train_split

TRUNK_STAGES = (0, 1, 2, 4)        # blocks whose maps are fixed: stages 1-4 of the recipe
MAP_SIZES = ((16, 16), (8, 8))     # blocks.5 output at full and half scale (500-512 px)
C5 = 192                           # blocks.5 channels


def trunk(model: nn.Module, x: torch.Tensor, size) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised images (B, 3, H, W) -> the fixed stages' statistics (B, 384) and the
    blocks.5 map (B, 192, *size)."""
    h = model.bn1(model.conv_stem(x))
    parts = []
    for i in range(6):
        h = model.blocks[i](h)
        if i in TRUNK_STAGES:
            parts += stats(h)
    if tuple(h.shape[-2:]) != size:
        h = F.interpolate(h, size=size, mode="bilinear", antialias=True, align_corners=False)
    return torch.cat(parts, 1), h


@torch.inference_mode()
def extract(paths: list[str], backbone, spec, out: Path) -> tuple[np.ndarray, np.ndarray]:
    """Per image: fixed statistics (N, 768) float32 and blocks.5 maps (N, 192*(256+64))
    float16, both scales; kept in ``out`` and read back from there on the next run."""
    f_stats, f_maps = out / "trunk_stats.npy", out / "trunk_maps.npy"
    if f_stats.exists() and f_maps.exists():
        return np.load(f_stats), np.load(f_maps, mmap_mode="r")
    tf = Transform(spec.short, spec.crop, "center", 1, tuple(backbone.mean),
                   tuple(backbone.std), spec.max_short)
    loader = DataLoader(CropSet(paths, tf), batch_size=1, num_workers=1, collate_fn=list)
    model = backbone.model
    st = np.zeros((len(paths), 768), np.float32)
    mp = np.zeros((len(paths), C5 * sum(h * w for h, w in MAP_SIZES)), np.float16)
    for i, (img,) in enumerate(progress(loader, total=len(paths), desc="blocks.5 maps")):
        x = tf.normalize(img[None]).contiguous(memory_format=torch.channels_last)
        s_parts, m_parts = [], []
        for scale, size in zip((1.0, 0.5), MAP_SIZES):
            xs = x if scale == 1.0 else F.interpolate(x, scale_factor=scale, mode="bilinear",
                                                      antialias=True, align_corners=False)
            s, m = trunk(model, xs, size)
            s_parts.append(s[0])
            m_parts.append(m[0].flatten())
        st[i] = torch.cat(s_parts).numpy()
        mp[i] = torch.cat(m_parts).numpy().astype(np.float16)
    for f, a in ((f_stats, st), (f_maps, mp)):
        tmp = f.with_suffix(".tmp.npy")
        np.save(tmp, a)
        tmp.replace(f)
    return st, mp


class LastBlock(nn.Module):
    """blocks.6 on kept blocks.5 maps: packed rows (B, 768 + 192*320) -> the recipe's 2048
    features (B, 2048), in its order (per scale: stages 1-5, mean then std)."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = copy.deepcopy(block).eval()   # BatchNorm on pretrained statistics

    def train(self, mode: bool = True) -> "LastBlock":
        return super().train(False)            # BatchNorm statistics stay as pretrained

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, out, at = x.shape[0], [], 768
        for k, (h, w) in enumerate(MAP_SIZES):
            m = x[:, at:at + C5 * h * w].reshape(b, C5, h, w)
            at += C5 * h * w
            out += [x[:, 384 * k:384 * (k + 1)], *stats(self.block(m))]
        return torch.cat(out, 1)


class PartialModel(IQAModel):
    """The recipe's model with its backbone replaced by :class:`LastBlock`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(self.backbone(x))


class PackedInputs:
    """Kept trunk outputs of every row, packed per batch; the training loop's inputs."""

    frozen = False

    def __init__(self, st: np.ndarray, mp: np.ndarray, idx: dict[str, np.ndarray]):
        self.st, self.mp, self.idx = torch.from_numpy(st), mp, idx

    def rows(self, ii: np.ndarray) -> torch.Tensor:
        return torch.cat([self.st[ii], torch.from_numpy(self.mp[ii].astype(np.float32))], 1)

    def train_batches(self, sampler):
        for b in sampler:
            b = np.asarray(b)
            yield self.rows(self.idx["train"][b]), b

    def eval_batches(self, part: str, batch_size: int = 256):
        ii = self.idx[part]
        for s in range(0, len(ii), batch_size):
            yield self.rows(ii[s:s + batch_size])


def recipe_features(block: LastBlock, inputs: PackedInputs, n: int) -> torch.Tensor:
    """(N, 2048) features with the pretrained block: what the frozen recipe caches."""
    with torch.inference_mode():
        return torch.cat([block(inputs.rows(np.arange(s, min(s + 256, n))))
                          for s in range(0, n, 256)])


def run_variant(cfg, variant: str, split, manifest, feats, packed, backbone, out: Path):
    """One training of one split; the test SRCC/PLCC per dataset."""
    method = get_method(cfg.method.name)
    rows = dict(zip(("train", "val", "test"), split.apply(manifest)))
    torch.manual_seed(cfg.train.seed * 1000 + (split.seed or 0))
    scales = fit_scales(rows["train"], method.targets)
    meta = model_meta(cfg, method, list(scales), feats.shape[1], backbone.weights_id, True)
    base = build_model(meta, scales, with_backbone=False)
    pos = {k: i for i, k in enumerate(manifest.keys())}
    idx = {p: np.array([pos[k] for k in r.keys()], dtype=np.int64) for p, r in rows.items()}
    base.feature_norm.fit(feats[idx["train"]])
    if variant == "frozen":
        model = base
        inputs = FeatureInputs({p: feats[i] for p, i in idx.items()}, model.feature_norm)
    else:
        model = PartialModel(base.head, dict(base.mappers), scales, meta,
                             backbone=LastBlock(backbone.model.blocks[6]),
                             feature_norm=base.feature_norm)
        inputs = PackedInputs(packed[0], packed[1], idx)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with torch_threads(cfg.train.threads):
        train_split(cfg, model, inputs, rows, out, resume=True, log=lambda *a: None)
        post_fit(model, method, inputs, rows["train"], "cpu")
        q = predict(model, inputs, "test", "cpu")
    res = evaluate_split(model, q, rows["test"])
    return {n: {"srcc": r["srcc"], "plcc": r["plcc"]} for n, r in res.items()} | {
        "seconds": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/native.yaml")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--lr-mult", type=float, default=0.1, help="block lr = lr * this")
    ap.add_argument("--out", default="runs/partial-finetune")
    ap.add_argument("--limit", type=int, help="every k-th image only, ~this many (a smoke run)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = load_config(args.config, [
        "method.name=sind", "split.ratios=[0.8,0.0,0.2]",
        f"split.seeds={list(range(args.seeds))}", f"train.epochs={args.epochs}",
        f"train.backbone_lr_mult={args.lr_mult}", "train.threads=2"])
    manifest = load_data(cfg)
    if args.limit:
        manifest = manifest.subset(range(0, len(manifest), max(1, len(manifest) // args.limit)))
    backbone = create_backbone(cfg.model.backbone, weights=cfg.model.weights)
    # one layout for extraction and the kept block alike, whether the maps are kept or not
    backbone.model.eval().to(memory_format=torch.channels_last)
    spec = feature_spec(cfg)
    paths = [r.path for r in manifest]
    packed = extract(paths, backbone, spec, out)
    feats = recipe_features(LastBlock(backbone.model.blocks[6]), PackedInputs(*packed, {}),
                            len(paths))
    # the kept maps must give the package's own features (fp16 storage: ~1e-3 apart)
    x = Transform(spec.short, spec.crop, "center", 1, tuple(backbone.mean),
                  tuple(backbone.std), spec.max_short)
    ref = compute_features(backbone.eval(), x.normalize(x.pixels(paths[0])[None]), spec)[0]
    gap = float((ref - feats[0]).abs().max() / ref.abs().max())
    print(f"features of {paths[0]}: largest relative gap to compute_features {gap:.1e}")
    assert gap < 1e-2, "the kept maps do not reproduce the recipe's features"
    results = json.loads((out / "results.json").read_text()) if (
        out / "results.json").exists() else {}
    splits = build_splits(cfg, manifest)
    for split in splits:
        for variant in ("frozen", "last block trained"):
            key = f"{variant} / seed {split.seed}"
            if key in results:
                continue
            sdir = out / f"seed{split.seed}_{variant.split()[0]}"
            results[key] = run_variant(cfg, variant, split, manifest, feats, packed,
                                       backbone, sdir)
            print(key, json.dumps(results[key]), flush=True)
            (out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"\nsplit80, SIND, {args.epochs} epochs, block lr x {args.lr_mult}; "
          f"seeds 0-{args.seeds - 1}, medians (per-seed values)\n")
    print("| backbone | CLIVE SRCC | BIQ2021 SRCC | minutes a split |\n|---|---|---|---|")
    for variant in ("frozen", "last block trained"):
        rs = [results[f"{variant} / seed {s.seed}"] for s in splits]
        cells = [f"{np.median([r[n]['srcc'] for r in rs]):.3f} ("
                 + ", ".join(f"{r[n]['srcc']:.3f}" for r in rs) + ")"
                 for n in ("clive", "biq2021")]
        mins = np.median([r["seconds"] for r in rs]) / 60
        print(f"| {variant} | {cells[0]} | {cells[1]} | {mins:.1f} |")


if __name__ == "__main__":
    sys.exit(run_command(main, Path(__file__).name))
