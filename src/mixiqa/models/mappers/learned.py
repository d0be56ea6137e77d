"""Mappers learned by gradient with the regressor: MonotonicIQA's positive-weight MLP and
MIMI's monotonic, invertible integral network.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixiqa.errors import ConfigError
from mixiqa.models.mappers.base import Mapper, inv_softplus, register


# --------------------------------------------------------------------------- MonotonicIQA

class PositiveLinear(nn.Module):
    """A linear layer whose weights are made positive: softplus(W) or |W|."""

    def __init__(self, n_in: int, n_out: int, positive: str = "softplus", bias: bool = True):
        super().__init__()
        self.positive = positive
        bound = 1 / math.sqrt(n_in)                       # nn.Linear's default init
        w = torch.empty(n_out, n_in).uniform_(-bound, bound)
        # softplus: start from the same positive weights |W| gives, so both variants
        # begin with the reference code's scale
        raw = inv_softplus(w.abs().clamp_min(1e-3)) if positive == "softplus" else w
        self.raw_weight = nn.Parameter(raw)
        self.bias = nn.Parameter(torch.empty(n_out).uniform_(-bound, bound)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        w = F.softplus(self.raw_weight) if self.positive == "softplus" else self.raw_weight.abs()
        return F.linear(x, w, self.bias)


@register
class MonotonicMapper(Mapper):
    """MonotonicIQA's mapper: constrained layers 1-10-20-20-10-1 with ELU between them.

    Default: softplus-positive weights with biases, so g is strictly increasing and
    invertible. ``reference=True`` reproduces the reference code: |W| weights and no
    bias, so g(0) = 0 and g is only non-decreasing. Note that ELU is convex and
    non-decreasing and positive weights keep both properties, so this mapper (like the
    paper's) can only represent convex increasing maps.

    Reference: "Learning from Mixed Datasets: A Monotonic Image Quality Assessment
    Model" (MonotonicIQA).
    """

    name = "monotonic"

    def __init__(self, hidden: Sequence[int] = (10, 20, 20, 10), reference: bool = False,
                 higher_better: bool = True):
        super().__init__(higher_better)
        self.hidden, self.reference = tuple(int(h) for h in hidden), bool(reference)
        if self.reference:
            self.strictly_increasing = self.invertible = False
        sizes = (1, *self.hidden, 1)
        kind = "abs" if self.reference else "softplus"
        self.layers = nn.ModuleList(PositiveLinear(a, b, kind, bias=not self.reference)
                                    for a, b in zip(sizes, sizes[1:]))

    def _map(self, q: Tensor) -> Tensor:
        x = q[:, None]                                     # (B, 1)
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == 0 else layer(F.elu(x))
        return x[:, 0]


# --------------------------------------------------------------------------- MIMI

def clenshaw_curtis(steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Clenshaw-Curtis nodes cos(k pi / n), k = 0..n, and weights on [-1, 1].

    Exact for polynomials of degree n; weights are positive and sum to 2.
    """
    n = int(steps)
    if n < 2:
        raise ConfigError(f"Clenshaw-Curtis quadrature needs steps >= 2, got {steps}")
    theta = np.pi * np.arange(n + 1) / n
    inner = theta[1:-1]                                   # (n-1,)
    k = np.arange(1, (n - 1) // 2 + 1)                    # cosine terms of the weights
    v = 1 - 2 * (np.cos(2 * np.outer(inner, k)) / (4 * k**2 - 1)).sum(1)
    w = np.empty(n + 1)
    if n % 2 == 0:
        v -= np.cos(n * inner) / (n**2 - 1)
        w[0] = w[-1] = 1 / (n**2 - 1)
    else:
        w[0] = w[-1] = 1 / n**2
    w[1:-1] = 2 * v / n
    return np.cos(theta), w


class MonotonicBlock(nn.Module):
    """MIMI's integral-based monotonic block M(x) = exp(s) int_0^x f(t) dt + b, f > 0.

    f = ELU(MLP(t)) + 1 (ReLU MLP), the integral by Clenshaw-Curtis quadrature,
    vectorised over the batch. Strictly increasing in x (the quadrature of a rough
    integrand far from 0 can break this by its error; keep proxies at a moderate scale).
    The reference code also feeds the MLP and (s, b) a constant zero vector h; here they
    take t alone and (s, b) are plain parameters, the same function class.

    Reference: Wehenkel & Louppe, "Unconstrained Monotonic Neural Networks", NeurIPS
    2019, as used by MIMI (IJCV 2025).
    """

    def __init__(self, hidden: Sequence[int] = (100, 100, 100), steps: int = 100):
        super().__init__()
        sizes, layers = (1, *hidden, 1), []
        for a, b in zip(sizes, sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.mlp = nn.Sequential(*layers[:-1])
        self.log_scale = nn.Parameter(torch.tensor(0.0))
        self.offset = nn.Parameter(torch.tensor(0.0))
        nodes, weights = clenshaw_curtis(steps)
        # derived from ``steps``: not state, so left out of the state dict
        for key, value in (("nodes", nodes), ("weights", weights)):
            self.register_buffer(key, torch.tensor(value, dtype=torch.float32), persistent=False)

    def integrand(self, t: Tensor) -> Tensor:
        return F.elu(self.mlp(t[..., None]))[..., 0] + 1

    def forward(self, x: Tensor) -> Tensor:
        t = x[:, None] * (self.nodes + 1) / 2               # (B, K+1): [-1, 1] -> [0, x]
        integral = (self.integrand(t) * self.weights).sum(1) * x / 2          # (B,)
        return self.log_scale.exp() * integral + self.offset


@register
class MIMIMapper(Mapper):
    """MIMI's monotonic and invertible mapper (one per dataset).

    Two channels x1 = q and x2 = T(q) pass an additive coupling block,
    y1 = x1 + F(x2), y2 = x2 + G(y1), with T, F, G monotonic blocks; the output is y2.
    q -> y2 is strictly increasing, so :meth:`inverse` inverts it numerically;
    :meth:`coupling_inverse` is the block's exact two-channel inverse.
    ``extra_loss`` is the consistency term smooth-L1(y1, y2).

    Reference: "Monotonic and Invertible Network: A General Framework for Learning IQA
    Model from Mixed Datasets" (MIMI), IJCV 2025.
    """

    name = "mimi"

    def __init__(self, hidden: Sequence[int] = (100, 100, 100), steps: int = 100,
                 higher_better: bool = True):
        super().__init__(higher_better)
        self.hidden, self.steps = tuple(int(h) for h in hidden), int(steps)
        self.t_block, self.f_block, self.g_block = (MonotonicBlock(self.hidden, self.steps)
                                                    for _ in range(3))

    def _coupling(self, q: Tensor) -> tuple[Tensor, Tensor]:
        x1, x2 = q, self.t_block(q)
        y1 = x1 + self.f_block(x2)
        return y1, x2 + self.g_block(y1)

    def _map(self, q: Tensor) -> Tensor:
        return self._coupling(q)[1]

    def coupling(self, q: Tensor) -> tuple[Tensor, Tensor]:
        """Both output channels (y1, y2), on the dataset's scale; y2 is ``forward(q)``."""
        y1, y2 = self._coupling(q)
        return self.sign * y1, self.sign * y2

    def coupling_inverse(self, y1: Tensor, y2: Tensor) -> tuple[Tensor, Tensor]:
        """Exact inverse of the coupling block: x2 = y2 - G(y1), x1 = y1 - F(x2)."""
        y1, y2 = self.sign * y1, self.sign * y2
        x2 = y2 - self.g_block(y1)
        return y1 - self.f_block(x2), x2

    def reference_inverse(self, y) -> Tensor:
        """The reference code's range-prior inverse: x1 of ``coupling_inverse(y, y)``.

        Cheap (no root finding) but exact only where the consistency term has made
        y1 = y2.
        """
        y = self.as_tensor(y)
        return self.coupling_inverse(y, y)[0]

    def extra_loss(self, q: Tensor, y: Tensor) -> Tensor:
        y1, y2 = self._coupling(q)
        return F.smooth_l1_loss(y1, y2)
