"""The frozen-feature cache: backbone features computed once per image, reused by every run.

An entry is keyed by the image's content hash and by a spec hash that covers the backbone,
its exact weights, the transform, the crop, the scales and the pooling; a changed image or
backbone therefore never returns stale features. Entries are written atomically (temporary
file + rename) and carry a checksum of their data, so a half-written or corrupted entry is
detected, reported and recomputed instead of being read back.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.numpy import save_file
from torch.utils.data import DataLoader, Dataset

from mixiqa.data.transforms import CPU_BATCH_PIXELS, Transform, same_shape_groups
from mixiqa.progress import progress

# 2: no reduced-size JPEG decoding unless the spec resizes;
# 3: centre crops resampled straight from the source box
CACHE_VERSION = 3


def default_cache_dir() -> Path:
    """``$MIXIQA_CACHE`` or ``~/.cache/mixiqa``: the cache outlives runs and checkouts."""
    return Path(os.environ.get("MIXIQA_CACHE", Path.home() / ".cache" / "mixiqa")) / "features"


@dataclass(frozen=True)
class FeatureSpec:
    """What a cached feature vector is.

    Attributes:
        backbone: Backbone name (``efficientnet_lite0``).
        weights: Weight source as given to :func:`create_backbone`.
        short: Resize of the short side before cropping (None: keep the image size).
        crop: Centre-crop size (None: the whole resized image).
        scales: Image scales to extract at, e.g. (1.0, 0.5) as in Re-IQA.
        pooling: ``avg`` (global average of the last feature map) or ``meanstd`` (per-channel
            mean and std of every stage: low-level statistics matter for quality).
        max_short: Shrink an image whose short side is larger to this (None: no limit).
            With ``short`` and ``crop`` None, images up to this size keep their native
            pixels (distortions intact) while a 12-megapixel photo is brought to the scale
            the model was trained at.
        tail: 0 for pooled features; k > 0 for the cached rows of partial fine-tuning (the
            fixed stages' statistics and the map entering the last k blocks, see
            :mod:`mixiqa.models.tail`).
    """

    backbone: str = "efficientnet_lite0"
    weights: str = "offline"
    short: int | None = None
    crop: int | None = 384
    scales: tuple[float, ...] = (1.0,)
    pooling: str = "avg"
    max_short: int | None = None
    tail: int = 0

    def key(self, weights_id: str) -> str:
        d = asdict(self)
        if not d["tail"]:
            del d["tail"]       # pooled features keep the keys they had before tails existed
        blob = json.dumps({**d, "weights_id": weights_id, "v": CACHE_VERSION}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def file_hash(path: str) -> str:
    """sha256 of a file's bytes: features follow the content, not the name."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def stage_stats(f: torch.Tensor) -> list[torch.Tensor]:
    """One stage map (B, C, h, w) -> [mean (B, C), std (B, C)] over its positions."""
    flat = f.flatten(2)
    return [flat.mean(-1), flat.std(-1, unbiased=False)]


def pool_features(backbone, x: torch.Tensor, pooling: str) -> torch.Tensor:
    """(B, 3, H, W) -> (B, D) pooled features."""
    if pooling == "avg":
        f = backbone.forward_features(x)
        return f.mean(dim=(2, 3)) if f.ndim == 4 else f.mean(dim=1)   # (B, C)
    if pooling in ("meanstd", "meanstd+avg"):
        if pooling == "meanstd":
            stages, extra = backbone.forward_stages(x), []
        else:    # plus the last map's average: the content (semantic) features, one pass
            stages, final = backbone.forward_stages_and_features(x)
            extra = [final.mean(dim=(2, 3)) if final.ndim == 4 else final.mean(dim=1)]
        parts = [p for f in stages for p in stage_stats(f)]
        return torch.cat(parts + extra, dim=1)               # (B, 2 * sum C_i [+ C])
    raise ValueError(f"unknown pooling '{pooling}' (avg, meanstd or meanstd+avg)")


@torch.inference_mode()
def compute_features(backbone, images: torch.Tensor, spec: FeatureSpec) -> torch.Tensor:
    """(B, 3, H, W) normalised crops -> (B, D) features at every scale, concatenated."""
    if spec.tail:
        from mixiqa.models.tail import tail_rows

        return tail_rows(backbone, images, spec)
    outs = [pool_features(backbone, at_scale(images, s), spec.pooling) for s in spec.scales]
    return torch.cat(outs, dim=1).float()


def at_scale(images: torch.Tensor, s: float) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 3, ~sH, ~sW), antialiased, channels-last (the convolutions' fast
    layout on a CPU): one scale of a feature spec."""
    x = images if s == 1.0 else F.interpolate(images, scale_factor=s, mode="bilinear",
                                              antialias=True, align_corners=False)
    return x.contiguous(memory_format=torch.channels_last)


def _features_of(backbone, images: list[torch.Tensor], spec: FeatureSpec,
                 transform: Transform) -> torch.Tensor:
    """A list of uint8 (3, H, W) crops -> (B, D), in order. Images of one size share a
    forward pass; without a crop (native resolution) sizes differ and cannot be stacked."""
    out: list = [None] * len(images)
    p = next(backbone.parameters(), None)
    cpu = p is None or p.device.type == "cpu"
    for idx in same_shape_groups(images, CPU_BATCH_PIXELS if cpu else None):
        x = transform.normalize(torch.stack([images[i] for i in idx]))
        for i, f in zip(idx, compute_features(backbone, x, spec)):
            out[i] = f
    return torch.stack(out)


class CropSet(Dataset):
    """Decodes and crops in worker processes so the model never waits for JPEG decoding."""

    def __init__(self, paths: Sequence[str], transform: Transform):
        self.paths, self.transform = list(paths), transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform.pixels(self.paths[i])                    # uint8 (3, H, W)


class FeatureCache:
    """On-disk cache of pooled backbone features, one small safetensors file per image."""

    def __init__(self, spec: FeatureSpec, weights_id: str, root: str | Path | None = None):
        self.spec = spec
        self.folder = Path(root or default_cache_dir()) / spec.key(weights_id)
        self.folder.mkdir(parents=True, exist_ok=True)
        meta = self.folder / "spec.json"
        if not meta.exists():
            _atomic_write_text(meta, json.dumps({**asdict(spec), "weights_id": weights_id},
                                                indent=1))

    def path(self, content_hash: str) -> Path:
        return self.folder / content_hash[:2] / f"{content_hash}.safetensors"

    def get(self, content_hash: str) -> np.ndarray | None:
        """The cached vector, or None if absent or damaged (damage is warned about)."""
        p = self.path(content_hash)
        if not p.exists():
            return None
        try:
            from safetensors import safe_open

            with safe_open(str(p), "np") as f:
                checksum = (f.metadata() or {}).get("sha256")
                x = f.get_tensor("features")
            if checksum != hashlib.sha256(x.tobytes()).hexdigest():
                raise ValueError("checksum mismatch")
            return x
        except (SafetensorError, ValueError, OSError, KeyError) as e:
            warnings.warn(f"feature cache entry '{p}' is damaged ({e}); recomputing it.")
            return None

    def put(self, content_hash: str, x: np.ndarray) -> None:
        p = self.path(content_hash)
        p.parent.mkdir(exist_ok=True)
        x = np.ascontiguousarray(x, dtype=np.float32)
        tmp = p.with_suffix(f".tmp{os.getpid()}")
        save_file({"features": x}, str(tmp),
                  metadata={"sha256": hashlib.sha256(x.tobytes()).hexdigest()})
        os.replace(tmp, p)  # atomic: readers see the old state or the whole new file


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


@dataclass
class ExtractStats:
    total: int = 0
    cached: int = 0
    computed: int = 0
    seconds_forward: float = 0.0
    seconds_total: float = 0.0


def extract_features(paths: Sequence[str], backbone, spec: FeatureSpec,
                     cache_root: str | Path | None = None, batch_size: int = 32,
                     workers: int | None = None, show_progress: bool = True,
                     stats: ExtractStats | None = None) -> np.ndarray:
    """Features of every image, (N, D) float32, from the cache where possible.

    Images not in the cache are decoded in ``workers`` processes while the backbone runs,
    and every new vector is stored before the call returns.
    """
    import time

    t0 = time.perf_counter()
    stats = stats if stats is not None else ExtractStats()
    cache = FeatureCache(spec, backbone.weights_id, cache_root)
    hashes = [file_hash(p) for p in paths]
    feats: list[np.ndarray | None] = [cache.get(h) for h in hashes]
    todo = [i for i, f in enumerate(feats) if f is None]
    stats.total, stats.cached, stats.computed = len(paths), len(paths) - len(todo), len(todo)
    if todo:
        workers = min(2, os.cpu_count() or 1) if workers is None else workers
        tf = Transform(spec.short, spec.crop, "center", 1, tuple(backbone.mean),
                       tuple(backbone.std), spec.max_short)
        loader = DataLoader(CropSet([paths[i] for i in todo], tf),
                            batch_size=batch_size, num_workers=workers, collate_fn=list,
                            persistent_workers=False, prefetch_factor=4 if workers else None)
        backbone.eval().to(memory_format=torch.channels_last)  # ~1.6x faster convs on CPU
        done = 0
        for batch in progress(loader, total=len(loader), desc="extracting features",
                              enable=show_progress):
            t = time.perf_counter()
            out = _features_of(backbone, batch, spec, tf).numpy()       # (B, D)
            stats.seconds_forward += time.perf_counter() - t
            for row in out:
                i = todo[done]
                cache.put(hashes[i], row)
                feats[i] = row
                done += 1
    stats.seconds_total = time.perf_counter() - t0
    return np.stack(feats).astype(np.float32)
