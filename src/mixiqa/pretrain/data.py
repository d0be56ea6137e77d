"""Re-IQA's quality-aware views: distorted versions of an image, each seen as crop pairs.

For one source image: the pristine version plus distorted ones (distinct distortion types
at random levels, some with a second distortion composed on top), each at every scale
(full, half); from each (version, scale) two crops whose areas overlap. The two crops of
one (version, scale) are a positive pair; every other crop in the batch or the queue is a
negative, so the encoder learns to tell distortions (and their levels) apart, not contents.

Every view is drawn from a generator seeded by (seed, sample index): the batches do not
depend on the number of worker processes, and a resumed run sees the same ones.

Reference: Saha et al., "Re-IQA: Unsupervised Learning for Image Quality Assessment in
the Wild", CVPR 2023.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from mixiqa.data.transforms import open_rgb, resize_short
from mixiqa.errors import DataError
from mixiqa.pretrain.config import PretrainConfig

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
Box = tuple[int, int]  # (top, left) of a crop x crop square


def find_images(root: str | Path) -> list[str]:
    """Every image file under ``root`` (recursive), sorted; scores are never read."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"Image folder '{root}' not found; pass --images with a folder of "
                        "images (any depth), e.g. ../shared/data.")
    paths = sorted(str(p) for p in root.rglob("*")
                   if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise DataError(f"No image files ({', '.join(sorted(IMAGE_SUFFIXES))}) under '{root}'.")
    return paths


def overlapping_boxes(h: int, w: int, crop: int, rng: np.random.Generator,
                      overlap: tuple[float, float] = (0.1, 0.3)) -> tuple[Box, Box]:
    """Two ``crop`` x ``crop`` boxes inside an h x w image sharing a fraction of their area.

    The shared fraction is drawn from ``overlap``; where the image is too small for that
    little overlap, the least overlap the image allows is used.
    """
    c = crop
    assert h >= c and w >= c, "the caller upscales images smaller than the crop"
    # shared area = ax * ay; both boxes must fit side by side: c + (c - ax) <= w
    ax_min, ay_min = max(1, 2 * c - w), max(1, 2 * c - h)
    least = ax_min * ay_min / c**2
    area = rng.uniform(max(overlap[0], least), max(overlap[1], least)) * c**2
    ax = rng.uniform(max(ax_min, area / c), min(c, area / ay_min))
    ax = int(np.clip(round(ax), ax_min, c))
    ay = int(np.clip(round(area / ax), ay_min, c))
    dy, dx = c - ay, c - ax                                   # offset of one box to the other
    top, left = int(rng.integers(0, h - c - dy + 1)), int(rng.integers(0, w - c - dx + 1))
    sy, sx = rng.integers(0, 2, size=2)                       # which box is above / left
    first = (top + dy * int(sy), left + dx * int(sx))
    second = (top + dy * (1 - int(sy)), left + dx * (1 - int(sx)))
    return first, second


def overlap_fraction(a: Box, b: Box, crop: int) -> float:
    """Shared area of two crop boxes as a fraction of one box."""
    dy, dx = abs(a[0] - b[0]), abs(a[1] - b[1])
    return max(0, crop - dy) * max(0, crop - dx) / crop**2


def make_versions(img: np.ndarray, rng: np.random.Generator, n: int,
                  compose_prob: float = 0.0) -> list[tuple[np.ndarray, list[tuple[str, int]]]]:
    """The pristine image and ``n - 1`` distorted versions, with what was done to each.

    Distorted versions get distinct distortion types (while the library has enough) at
    random levels 1..5; with probability ``compose_prob`` a second, different type is
    applied on top (Re-IQA's occasional compositions).

    Args:
        img: (H, W, 3) float32 in [0, 1].

    Returns:
        ``[(image, [(name, level), ...]), ...]``, the pristine one first with ``[]``.
    """
    from mixiqa.distortions import distort, distortion_names

    names = distortion_names()
    types = rng.permutation(len(names))
    out = [(img, [])]
    for i in range(n - 1):
        first = names[types[i % len(names)]]
        steps = [(first, int(rng.integers(1, 6)))]
        if rng.random() < compose_prob and len(names) > 1:
            second = names[(types[i % len(names)] + rng.integers(1, len(names))) % len(names)]
            steps.append((second, int(rng.integers(1, 6))))
        x = img
        for name, level in steps:
            x = distort(x, name, level, rng)
        out.append((np.ascontiguousarray(x, dtype=np.float32), steps))
    return out


@dataclass
class Views:
    """The views of one source image, ``K = versions x scales`` (version-major).

    Attributes:
        crops: (K, 2, 3, crop, crop) float tensor in [0, 1]: crops[k, 0] and crops[k, 1]
            are a positive pair.
        boxes: (top, left) of both crops of each view, in its scaled version's pixels.
        labels: The distortions of each view's version (``[]``: pristine).
        scales: The scale of each view.
    """

    crops: torch.Tensor
    boxes: list[tuple[Box, Box]]
    labels: list[list[tuple[str, int]]]
    scales: list[float]


def load_image(path: str, cfg: PretrainConfig) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1], resized so the smallest scale still holds a crop."""
    im = open_rgb(path, min_side=cfg.image_short)
    if cfg.image_short:
        im = resize_short(im, cfg.image_short)
    need = math.ceil(cfg.crop / min(cfg.scales))
    if min(im.size) < need:
        im = resize_short(im, need)
    return np.asarray(im, dtype=np.float32) / 255


def make_views(img: np.ndarray, rng: np.random.Generator, cfg: PretrainConfig) -> Views:
    """Versions of ``img`` (see :func:`make_versions`) x scales x a positive crop pair."""
    c = cfg.crop
    crops, boxes, labels, scales = [], [], [], []
    for version, steps in make_versions(img, rng, cfg.versions, cfg.compose_prob):
        full = torch.from_numpy(version).permute(2, 0, 1)[None]       # (1, 3, H, W)
        for s in cfg.scales:
            x = full if s == 1.0 else F.interpolate(full, scale_factor=s, mode="bilinear",
                                                    antialias=True, align_corners=False)
            x = x[0].clamp(0, 1)                                       # (3, h, w)
            pair = overlapping_boxes(x.shape[1], x.shape[2], c, rng, cfg.overlap)
            crops.append(torch.stack([x[:, t:t + c, l:l + c] for t, l in pair]))  # (2, 3, c, c)
            boxes.append(pair)
            labels.append(steps)
            scales.append(s)
    return Views(torch.stack(crops), boxes, labels, scales)


class QualityViews(Dataset):
    """Sample ``k`` -> normalised views of one image, (K, 2, 3, crop, crop).

    Sample indices run on over epochs: ``k // len(paths)`` is the epoch, whose image order
    is a permutation seeded by (seed, epoch), so any step's batch can be rebuilt alone.
    """

    def __init__(self, paths: list[str], cfg: PretrainConfig, mean, std):
        self.paths, self.cfg = list(paths), cfg
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    def __len__(self) -> int:
        return 2**62  # indices are global sample counters, not positions in ``paths``

    def path_of(self, k: int) -> str:
        epoch, j = divmod(k, len(self.paths))
        order = np.random.default_rng([self.cfg.seed, epoch]).permutation(len(self.paths))
        return self.paths[order[j]]

    def __getitem__(self, k: int) -> torch.Tensor:
        rng = np.random.default_rng([self.cfg.seed, 1, k])
        views = make_views(load_image(self.path_of(k), self.cfg), rng, self.cfg)
        return (views.crops - self.mean) / self.std                    # (K, 2, 3, c, c)
