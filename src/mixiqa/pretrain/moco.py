"""MoCo-v2: a query encoder, a momentum (key) encoder, a queue of negatives, InfoNCE.

Reference: Chen et al., "Improved Baselines with Momentum Contrastive Learning" (MoCo v2),
arXiv 2020; He et al., "Momentum Contrast for Unsupervised Visual Representation
Learning", CVPR 2020.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from mixiqa.models.backbones import Backbone


class ProjectedEncoder(nn.Module):
    """Backbone -> global average pool -> 2-layer MLP -> L2-normalised embedding."""

    def __init__(self, backbone: Backbone, hidden: int | None = None, dim: int = 128):
        super().__init__()
        c = backbone.num_features
        self.backbone = backbone
        self.head = nn.Sequential(nn.Linear(c, hidden or c), nn.ReLU(inplace=True),
                                  nn.Linear(hidden or c, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.backbone(x).features.mean(dim=(2, 3))                # (B, C)
        return F.normalize(self.head(f), dim=1)                        # (B, dim)


def info_nce(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor,
             temperature: float) -> torch.Tensor:
    """InfoNCE with q[i]'s positive k[i]; the other keys of the batch and the queue are negatives.

    Keeping the batch's other keys as negatives puts the other distortion versions of the
    same image among each query's negatives at once, before they reach the queue.

    Args:
        q: Query embeddings (N, D), L2-normalised.
        k: Key embeddings (N, D), L2-normalised, no gradient.
        queue: Earlier keys (K, D); K may be 0.

    Reference: van den Oord et al., "Representation Learning with Contrastive Predictive
    Coding", arXiv 2018.
    """
    logits = torch.cat([q @ k.T, q @ queue.T], dim=1) / temperature   # (N, N + K)
    labels = torch.arange(q.shape[0], device=q.device)                  # positives: diagonal
    return F.cross_entropy(logits.float(), labels)


class MoCo(nn.Module):
    """Query encoder trained by gradient, key encoder by exponential moving average.

    Attributes:
        encoder_q: The trained :class:`ProjectedEncoder`.
        encoder_k: Its moving average; never receives gradients.
        queue: (K, D) keys of earlier steps, a ring buffer filled from ``queue_ptr``.
    """

    queue: torch.Tensor
    queue_ptr: torch.Tensor

    def __init__(self, encoder: ProjectedEncoder, queue_size: int, momentum: float,
                 temperature: float, generator: torch.Generator | None = None):
        super().__init__()
        self.encoder_q, self.encoder_k = encoder, copy.deepcopy(encoder)
        for p in self.encoder_k.parameters():
            p.requires_grad_(False)
        self.momentum, self.temperature = momentum, temperature
        dim = encoder.head[-1].out_features
        # random unit vectors until real keys replace them, as MoCo starts
        queue = F.normalize(torch.randn(queue_size, dim, generator=generator), dim=1)
        self.register_buffer("queue", queue)
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def momentum_update(self) -> None:
        for pk, pq in zip(self.encoder_k.parameters(), self.encoder_q.parameters()):
            pk.mul_(self.momentum).add_(pq.detach(), alpha=1 - self.momentum)
        for bk, bq in zip(self.encoder_k.buffers(), self.encoder_q.buffers()):
            bk.copy_(bq)  # BatchNorm statistics follow the query encoder

    @torch.no_grad()
    def enqueue(self, k: torch.Tensor) -> None:
        size = self.queue.shape[0]
        if size == 0:
            return
        k = k[-size:]                                                    # (n, D), n <= K
        idx = (self.queue_ptr + torch.arange(k.shape[0], device=k.device)) % size
        self.queue[idx] = k.to(self.queue.dtype)
        self.queue_ptr.copy_((self.queue_ptr + k.shape[0]) % size)

    def forward(self, xq: torch.Tensor, xk: torch.Tensor) -> torch.Tensor:
        """Loss of one step on crop pairs (N, 3, c, c) x 2; updates key encoder and queue."""
        q = self.encoder_q(xq)                                           # (N, D)
        with torch.no_grad():
            self.momentum_update()
            k = self.encoder_k(xk).to(q.dtype)                           # (N, D)
        loss = info_nce(q, k, self.queue.clone().to(q.dtype), self.temperature)
        self.enqueue(k)
        return loss


def freeze_batchnorm(module: nn.Module) -> None:
    """Put every BatchNorm layer in eval mode: running statistics are used, not updated."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
