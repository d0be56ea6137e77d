"""Quality heads: backbone output -> proxy quality score q, shape (B,).

Every head is called as ``head(features, embedding=None)`` where ``features`` is a feature
map (B, C, h, w), tokens (B, N, C) or already pooled vectors (B, C) (cached features), and
``embedding`` is a backbone's global embedding (B, E) where it has one; with a
:class:`~mixiqa.models.backbones.BackboneOutput`, ``head(*backbone(x))`` passes both.
"""

from __future__ import annotations

import inspect
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mixiqa.errors import ConfigError
from mixiqa.registry import Registry

HEADS: Registry[type[nn.Module]] = Registry("head")


def positions(features: torch.Tensor) -> torch.Tensor:
    """Any backbone output -> (B, L, C): one row per spatial position or token."""
    if features.ndim == 4:
        return features.flatten(2).transpose(1, 2)   # (B, C, h, w) -> (B, h*w, C)
    if features.ndim == 3:
        return features                               # tokens (B, N, C)
    if features.ndim == 2:
        return features[:, None]                      # pooled (B, C) -> (B, 1, C)
    raise ConfigError(f"A head takes (B, C, h, w), (B, N, C) or (B, C) features, "
                      f"not shape {tuple(features.shape)}.")


def pool_global(features: torch.Tensor) -> torch.Tensor:
    """Global average over positions or tokens: -> (B, C); pooled (B, C) passes through."""
    return features if features.ndim == 2 else positions(features).mean(dim=1)


def meanstd_pool(stages: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per-channel mean and std of every stage, concatenated: (B, 2 * sum C_i).

    Low-level statistics (contrast, noise energy) live in the std of early stages, which a
    plain average would discard. Order: [mean_1, std_1, mean_2, std_2, ...].

    Args:
        stages: Maps (B, C_i, h_i, w_i) or tokens (B, N_i, C_i).
    """
    parts = []
    for f in stages:
        p = positions(f)                               # (B, L_i, C_i)
        parts += [p.mean(dim=1), p.std(dim=1, unbiased=False)]
    return torch.cat(parts, dim=1)


def _mlp(in_features: int, hidden: Sequence[int], dropout: float) -> nn.Sequential:
    """in -> hidden... (ReLU, dropout) -> 1."""
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(in_features, h), nn.ReLU(inplace=True)]
        layers += [nn.Dropout(dropout)] if dropout > 0 else []
        in_features = h
    return nn.Sequential(*layers, nn.Linear(in_features, 1))


@HEADS.register("mlp")
class MLPHead(nn.Module):
    """Global average pooling (tokens: their mean) then an MLP to one score.

    Args:
        in_features: C of the backbone features (or D of cached vectors).
        hidden: Hidden layer sizes; ``()`` makes a linear regressor.
        dropout: Dropout after each hidden layer.
    """

    def __init__(self, in_features: int, hidden: Sequence[int] = (256,), dropout: float = 0.1):
        super().__init__()
        self.mlp = _mlp(in_features, hidden, dropout)

    def forward(self, features: torch.Tensor, embedding: torch.Tensor | None = None):
        return self.mlp(pool_global(features)).squeeze(-1)   # (B,)


def bilinear_pool(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(B, L, d) positions -> (B, d*d): X^T X / L, signed square root, L2 normalisation.

    Reference: Lin et al., "Bilinear CNN Models for Fine-grained Visual Recognition",
    ICCV 2015; as used by DB-CNN, UNIQUE and MonotonicIQA.
    """
    # Float32 even under autocast: L*d^2 sums overflow or lose precision in half.
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x.float()
        g = x.transpose(1, 2) @ x / x.shape[1]             # (B, d, d)
        g = g.flatten(1)                                   # (B, d*d)
        g = torch.sign(g) * torch.sqrt(g.abs() + eps)      # eps: finite gradient at 0
        return F.normalize(g, dim=1)


@HEADS.register("bilinear")
class BilinearHead(nn.Module):
    """Bilinear pooling head: projection, F F^T / (h*w), signed sqrt, L2, then an MLP.

    A 1x1 convolution (a Linear over positions, so tokens work too) with ReLU first reduces
    C to ``proj_dim``: C=1280 would give 1.6 M bilinear features. ``proj_dim=None`` keeps C
    (MonotonicIQA: ResNet-34, 512 x 512 = 262144 features).

    Reference: Wang & Ma, "Learning from Mixed Datasets: A Monotonic Image Quality
    Assessment Model", 2022 (FC 262144 -> 512 -> ReLU -> 64 -> ReLU -> 1).

    Args:
        in_features: C of the backbone feature map.
        proj_dim: Channels after the projection; None: no projection.
        hidden: Hidden sizes of the MLP after pooling.
        dropout: Dropout after each hidden layer.
    """

    def __init__(self, in_features: int, proj_dim: int | None = 256,
                 hidden: Sequence[int] = (512, 64), dropout: float = 0.0):
        super().__init__()
        self.proj = (nn.Identity() if proj_dim is None else
                     nn.Sequential(nn.Linear(in_features, proj_dim), nn.ReLU(inplace=True)))
        d = in_features if proj_dim is None else proj_dim
        self.mlp = _mlp(d * d, hidden, dropout)

    def forward(self, features: torch.Tensor, embedding: torch.Tensor | None = None):
        if features.ndim == 2:
            raise ConfigError("The bilinear head needs a feature map or tokens, not pooled "
                              "vectors: fine-tune the backbone (freeze=False) or use 'mlp'.")
        x = self.proj(positions(features))                  # (B, L, d)
        return self.mlp(bilinear_pool(x).to(x.dtype)).squeeze(-1)   # (B,)


@HEADS.register("sind")
class SINDHead(nn.Module):
    """Global embedding concatenated with the mean patch token, then Linear -> 1.

    With ``embed_dim`` (CLIP ViT-B/16: 512) the head needs the backbone's embedding:
    ``head(tokens, embedding)``; the mean of the tokens (768) completes the 1280 inputs.
    Without it (CNN maps, pooled vectors), the global part is the average-pooled feature
    and the patch part is the mean over positions of a learned per-position projection
    (Linear + GELU): the nonlinearity makes it more than a copy of the average.

    Reference: "Learning Scene-invariant Distribution" (SIND), TCSVT 2025.

    Args:
        in_features: C of the features (token width for ViTs).
        embed_dim: Width of the backbone's global embedding; None: pool the features.
        proj_dim: Width of the per-position projection when ``embed_dim`` is None
            (default: ``in_features``).
    """

    def __init__(self, in_features: int, embed_dim: int | None = None,
                 proj_dim: int | None = None):
        super().__init__()
        self.embed_dim = embed_dim
        if embed_dim is None:
            proj_dim = proj_dim or in_features
            self.proj = nn.Sequential(nn.Linear(in_features, proj_dim), nn.GELU())
            self.fc = nn.Linear(in_features + proj_dim, 1)
        else:
            self.proj = None
            self.fc = nn.Linear(embed_dim + in_features, 1)

    def forward(self, features: torch.Tensor, embedding: torch.Tensor | None = None):
        pos = positions(features)                           # (B, L, C)
        if self.proj is None:
            if embedding is None:
                raise ConfigError(f"This sind head was built for a {self.embed_dim}-d global "
                                  "embedding: call head(*backbone(x)), or build it with "
                                  "embed_dim=None.")
            glob, patch = embedding, pos.mean(dim=1)        # (B, E), (B, C)
        else:
            glob, patch = pos.mean(dim=1), self.proj(pos).mean(dim=1)
        return self.fc(torch.cat([glob, patch], dim=1)).squeeze(-1)  # (B,)


def create_head(name: str, in_features: int, **kw) -> nn.Module:
    """Build a head by name (``mlp``, ``bilinear``, ``sind``).

    Args:
        name: Registered head name.
        in_features: C of the backbone features (``backbone.num_features``), or D of
            cached feature vectors.
        **kw: The head's options, e.g. ``hidden=(512,)``, ``proj_dim=512``,
            ``embed_dim=backbone.embed_dim`` for ``sind`` on a ViT.
    """
    cls = HEADS.get(name)
    if not isinstance(in_features, int) or in_features < 1:
        raise ConfigError(f"in_features of head '{name}' must be a positive int, "
                          f"not {in_features!r}.")
    allowed = [p for p in inspect.signature(cls).parameters if p != "in_features"]
    unknown = sorted(set(kw) - set(allowed))
    if unknown:
        raise ConfigError(f"Head '{name}' has no option {', '.join(map(repr, unknown))}; "
                          f"its options: {', '.join(allowed)}.")
    return cls(in_features, **kw)
