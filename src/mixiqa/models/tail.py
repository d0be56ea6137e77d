"""Partial fine-tuning on a CPU: a frozen backbone whose last blocks train.

With ``model.train_tail: k`` the first blocks of an EfficientNet-style backbone stay fixed,
so everything they produce is computed once per image and cached like any frozen feature:
the pooled statistics of their stages and the map that enters the last ``k`` blocks.
Training then runs only those blocks (BatchNorm on its pretrained statistics), their pooling,
the head and the mappers: ~12 minutes a split for Lite0's last block on 2 CPU cores, where
the whole backbone would take hours (benchmarks/real.md).

A cached row holds, per scale of the spec (in order): the fixed stages' mean and std
(B, 2 * sum C_i), then the tail's input map (C, h, w) flattened. Rows must stack, so every
map is brought to the size a square image of the spec's side gives (16 x 16 for 512 px at
stride 32); an image of another size has its map resampled, which changes only the tail's
statistics of that image. A trained model is saved as a plain frozen-recipe model whose
backbone has the ``k`` blocks replaced (parameter names are the backbone's own), so scoring
runs the whole backbone on the image as it is.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from mixiqa.errors import ConfigError
from mixiqa.features import at_scale, stage_stats
from mixiqa.models.iqa import IQAModel
from mixiqa.train import FeatureInputs


def tail_layout(backbone, k: int) -> dict:
    """Where the tail starts, which block outputs are pooled stages, and the tail's input
    (channels, stride); remembered on the backbone."""
    memo = backbone.__dict__.setdefault("_tail_layouts", {})
    if k in memo:
        return memo[k]
    m = getattr(backbone, "model", None)
    if not all(hasattr(m, a) for a in ("conv_stem", "bn1", "blocks")):
        raise ConfigError(f"model.train_tail needs an EfficientNet-style backbone (conv_stem, "
                          f"blocks); '{backbone.name}' is not one. Use efficientnet_lite0/1/2, "
                          "or train_tail: 0 with freeze: false to fine-tune it whole.")
    stages = stage_blocks(backbone)
    if stages is None:
        names = [m.feature_info[i]["module"] for i in backbone.stage_indices]
        raise ConfigError(f"model.train_tail: the stages of '{backbone.name}' ({names}) are "
                          "not outputs of its blocks.")
    n = len(m.blocks)
    if not 1 <= k < n:
        raise ConfigError(f"model.train_tail must be between 1 and {n - 1} for "
                          f"'{backbone.name}' ({n} blocks), got {k}.")
    layout = {"start": n - k, "stages": stages}
    with torch.no_grad():   # the tail's input at a 128-px probe: channels and stride
        probe = torch.zeros(1, 3, 128, 128, device=next(m.parameters()).device)
        _, h = trunk(backbone, probe, layout)
    layout.update(channels=h.shape[1], stride=128 // h.shape[-1])
    memo[k] = layout
    return layout


def stage_blocks(backbone) -> list[int] | None:
    """Indices of the blocks whose outputs are the pooled stages (Lite0: [0, 1, 2, 4, 6]);
    None when a stage is not a block's output."""
    names = [backbone.model.feature_info[i]["module"] for i in backbone.stage_indices]
    if not all(n.startswith("blocks.") for n in names):
        return None
    return [int(n.split(".")[1]) for n in names]


def pool_blocks(blocks, x: torch.Tensor, start: int, stages: list[int]) -> list[torch.Tensor]:
    """Run ``blocks[start:]`` up to the last stage on the map ``x`` entering block ``start``;
    the mean and std of each stage's output from ``start`` on, in order (as ``stage_stats``)."""
    parts = []
    for i in range(start, max(stages) + 1):
        x = blocks[i](x)
        if i in stages:
            parts += stage_stats(x)
    return parts


def trunk(backbone, x: torch.Tensor, layout: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (B, 3, H, W) -> fixed stages' statistics (B, 2 * sum C_i) and the tail's input
    map (B, C, h, w)."""
    m = backbone.model
    h, parts = m.bn1(m.conv_stem(x)), []
    for i in range(layout["start"]):
        h = m.blocks[i](h)
        if i in layout["stages"]:
            parts += stage_stats(h)
    return torch.cat(parts, 1), h


def image_side(spec) -> int:
    """The square side training images are taken to have: the crop, else the size cap."""
    side = spec.crop or spec.max_short or spec.short
    if not side:
        raise ConfigError("model.train_tail needs a bounded image size to cache maps of one "
                          "shape: set model.feature_crop or model.feature_max_short.")
    return side


def map_sizes(backbone, spec) -> list[tuple[int, int]]:
    """The cached map's (h, w) at each scale of the spec."""
    lay = tail_layout(backbone, spec.tail)
    return [(math.ceil(int(image_side(spec) * s) / lay["stride"]),) * 2 for s in spec.scales]


@torch.inference_mode()
def tail_rows(backbone, images: torch.Tensor, spec) -> torch.Tensor:
    """(B, 3, H, W) normalised images -> (B, D_rows) cached rows (see the module docstring)."""
    lay = tail_layout(backbone, spec.tail)
    out = []
    for s, size in zip(spec.scales, map_sizes(backbone, spec)):
        st, h = trunk(backbone, at_scale(images, s), lay)
        if tuple(h.shape[-2:]) != size:
            h = F.interpolate(h, size=size, mode="bilinear", antialias=True,
                              align_corners=False)
        out += [st, h.flatten(1)]
    return torch.cat(out, 1).float()


def crop_maps(x: torch.Tensor, corner: torch.Tensor, frac: float) -> torch.Tensor:
    """Maps (B, C, h, w) -> a window (B, C, round(frac * h), round(frac * w)) of each, placed
    at ``corner`` (B, 2) in [0, 1): 0 is the top (left) edge, near 1 the bottom (right)."""
    b, c, _, w = x.shape
    hw = torch.tensor(x.shape[-2:], device=x.device)                        # (2,): h, w
    size = (hw * frac).round().clamp(min=1).long()                          # (2,)
    start = (corner * (hw - size + 1)).long()                               # (B, 2)
    ys = (start[:, :1] + torch.arange(int(size[0]), device=x.device))       # (B, ch)
    xs = (start[:, 1:] + torch.arange(int(size[1]), device=x.device))       # (B, cw)
    x = x.gather(2, ys[:, None, :, None].expand(b, c, -1, w))               # (B, C, ch, w)
    return x.gather(3, xs[:, None, None, :].expand(b, c, x.shape[2], -1))   # (B, C, ch, cw)


class Tail(nn.Module):
    """The backbone's last blocks on cached rows: (B, D_rows) -> (B, D) features, the same
    numbers and order as ``compute_features`` with the spec's pooling and scales.

    Its parameters keep the backbone's names (``model.blocks.6.*``; the fixed blocks are
    empty placeholders), so the trained blocks load straight into a whole backbone.

    ``flip=True`` augments training: in train mode each row's maps (every scale alike) are
    mirrored left-right with probability 1/2, a stand-in for flipping the image (the fixed
    stages' cached statistics stay those of the unflipped image). ``crop=c`` keeps, in train
    mode, a random window of ``round(c * h) x round(c * w)`` of each row's maps (one relative
    position per row, shared by its scales), a stand-in for a random crop of the image: the
    trained blocks see a part of the map and pool its statistics. Evaluation never flips or
    crops.
    """

    def __init__(self, backbone, spec, flip: bool = False, crop: float | None = None):
        super().__init__()
        lay = tail_layout(backbone, spec.tail)
        blocks = backbone.model.blocks
        self.start, self.stages = lay["start"], [i for i in lay["stages"] if i >= lay["start"]]
        self.model = nn.Module()
        self.model.blocks = nn.Sequential(
            *[nn.Identity() for _ in range(self.start)],
            *[copy.deepcopy(b) for b in blocks[self.start:]])
        self.model.to(memory_format=torch.channels_last)
        self.requires_grad_(True)
        fixed = 2 * sum(c for i, c in zip(lay["stages"], backbone.stage_channels)
                        if i < self.start)
        # per scale: (fixed statistics, C, h, w) of its part of a row
        self.layout = [(fixed, lay["channels"], h, w) for h, w in map_sizes(backbone, spec)]
        self.row_dim = sum(d + c * h * w for d, c, h, w in self.layout)
        self.out_features = len(self.layout) * 2 * sum(backbone.stage_channels)
        self.flip, self.crop, self.augmenting = flip, crop, False
        self.eval()

    def train(self, mode: bool = True) -> "Tail":
        super().train(False)               # BatchNorm keeps its pretrained statistics
        self.augmenting = mode
        return self

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        out, at = [], 0
        # one draw per row, shared by its scales: (B, 1, 1, 1) and (B, 2)
        mirror = (torch.rand(len(rows), 1, 1, 1, device=rows.device) < 0.5
                  if self.augmenting and self.flip else None)
        corner = (torch.rand(len(rows), 2, device=rows.device)
                  if self.augmenting and self.crop else None)
        for d, c, h, w in self.layout:
            out.append(rows[:, at:at + d])
            x = rows[:, at + d:at + d + c * h * w].reshape(-1, c, h, w)
            if mirror is not None:
                x = torch.where(mirror, x.flip(-1), x)
            if corner is not None:
                x = crop_maps(x, corner, self.crop)
            at += d + c * h * w
            out += pool_blocks(self.model.blocks, x, self.start, self.stages)
        return torch.cat(out, 1)                                   # (B, out_features)

    @torch.no_grad()
    def features(self, rows: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """(N, D_rows) -> (N, D) in batches, with the current weights."""
        return torch.cat([self(rows[s:s + batch_size]) for s in range(0, len(rows), batch_size)])


class TailModel(IQAModel):
    """An :class:`IQAModel` trained on cached rows: its backbone is a :class:`Tail`."""

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        """Cached rows (B, D_rows) -> q (B,)."""
        return self.forward_features(self.backbone(rows))


class RowInputs(FeatureInputs):
    """Cached rows of every split part; batches go through the tail (``model.forward``)."""

    frozen = False

    def __init__(self, rows: dict[str, torch.Tensor]):
        super().__init__(rows, norm=None)
