"""The mapper registry, the :class:`Mapper` base class and the numerical helpers the
mappers share (robust location and scale, a bracketed monotone inverse).
"""

from __future__ import annotations

import inspect
import math
from typing import Callable, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import minimize
from torch import Tensor, nn

from mixiqa.errors import ConfigError, DataError
from mixiqa.registry import Registry


MAPPERS: Registry[type["Mapper"]] = Registry("mapper")


def register(cls: type["Mapper"]) -> type["Mapper"]:
    """Class decorator: add a :class:`Mapper` subclass to :data:`MAPPERS` under its ``name``."""
    MAPPERS.register(cls.name, cls)
    return cls


# --------------------------------------------------------------------------- helpers

def location_scale(x: Tensor, eps: float = 1e-8) -> tuple[Tensor, Tensor]:
    """Median and mean absolute deviation from it (+ eps): SIND's robust statistics.

    ``torch.median`` gives the lower of the two middle values for an even count.
    """
    t = x.median()
    return t, (x - t).abs().mean() + eps


def inv_softplus(v: Tensor) -> Tensor:
    """The x with softplus(x) = v > 0 (stable for small and large v)."""
    return v + torch.log(-torch.expm1(-v))


def _jsonable(v):
    if isinstance(v, (tuple, list)):
        return [_jsonable(e) for e in v]
    return v.item() if isinstance(v, np.generic) else v


def _paired(q, y, like: Tensor) -> tuple[Tensor, Tensor]:
    """Validate (proxy, score) pairs given to ``fit`` as 1-D float tensors."""
    q = torch.as_tensor(q, dtype=like.dtype, device=like.device).detach().reshape(-1)
    y = torch.as_tensor(y, dtype=like.dtype, device=like.device).detach().reshape(-1)
    if q.numel() != y.numel() or q.numel() < 2:
        raise DataError(f"fit needs as many proxies as scores, at least 2; got "
                        f"{q.numel()} proxies and {y.numel()} scores")
    if not (torch.isfinite(q).all() and torch.isfinite(y).all()):
        raise DataError("fit got NaN or infinite proxies/scores; drop those rows first")
    return q, y


def monotone_inverse(fn: Callable[[Tensor], Tensor], y: Tensor, tol: float = 1e-6,
                     grid: int | None = None, max_doublings: int = 40) -> Tensor:
    """Solve fn(x) = y elementwise for a non-decreasing, elementwise ``fn``.

    A bracket [-1, 1] is doubled per element until it contains y; it is then shrunk to
    ``tol`` by bisection that tests ``grid`` interior points per pass (``grid=1`` is
    plain bisection). A pass divides the bracket by grid + 1, so small batches (the
    range prior inverts two scores per dataset) need few sequential calls; by default
    ``grid`` shrinks from 15 to 1 as the batch grows, to bound the work. Finally ONE
    Newton step from the detached solution,
    x = x0 - (fn(x0) - y) / fn'(x0) with fn' detached, carries the implicit-function
    gradient: dx/dy = 1 / fn'(x) and dx/dtheta = -(dfn/dtheta) / fn'(x).

    Raises:
        DataError: when y lies outside what fn reaches on [-2^max_doublings, 2^...].
    """
    target = y.detach()
    if not torch.isfinite(target).all():
        raise DataError("cannot invert the mapper at NaN or infinite scores; drop them first")
    grid = grid or min(15, max(1, 1024 // max(len(target), 1)))
    with torch.no_grad():
        lo, hi = _bracket(fn, target, max_doublings)
        for _ in range(_n_passes(lo, hi, tol, grid)):
            lo, hi = _shrink(fn, target, lo, hi, grid)
        x0 = (lo + hi) / 2
    return _newton_step(fn, x0, y, tol)


def _bracket(fn, y: Tensor, max_doublings: int) -> tuple[Tensor, Tensor]:
    lo, hi = torch.full_like(y, -1.0), torch.full_like(y, 1.0)
    for _ in range(max_doublings):
        f_lo, f_hi = fn(torch.cat([lo, hi])).split(len(y))
        low_bad, high_bad = f_lo > y, f_hi < y            # (B,) y not yet inside
        if not (low_bad.any() or high_bad.any()):
            return lo, hi
        # a failed end is a valid other end: f(lo) > y means lo is an upper bound
        lo, hi = (torch.where(low_bad, 2 * lo, torch.where(high_bad, hi, lo)),
                  torch.where(high_bad, 2 * hi, torch.where(low_bad, lo, hi)))
    bad = (fn(lo) > y) | (fn(hi) < y)
    raise DataError(f"cannot invert the mapper at score(s) {y[bad][:5].tolist()}: they lie "
                    f"outside the range it reaches; check the score range given to it")


def _n_passes(lo: Tensor, hi: Tensor, tol: float, grid: int) -> int:
    width = float((hi - lo).max()) if len(lo) else 0.0
    return max(0, math.ceil(math.log(max(width / tol, 1.0)) / math.log(grid + 1)))


def _shrink(fn, y: Tensor, lo: Tensor, hi: Tensor, grid: int) -> tuple[Tensor, Tensor]:
    frac = torch.arange(1, grid + 1, dtype=y.dtype, device=y.device) / (grid + 1)  # (G,)
    pts = lo[:, None] + (hi - lo)[:, None] * frac                                 # (B, G)
    below = fn(pts.reshape(-1)).reshape(pts.shape) < y[:, None]                   # (B, G)
    k = below.sum(1, keepdim=True)                 # grid points left of the root
    ends = torch.cat([lo[:, None], pts, hi[:, None]], 1)                           # (B, G+2)
    return ends.gather(1, k).squeeze(1), ends.gather(1, k + 1).squeeze(1)


def _newton_step(fn, x0: Tensor, y: Tensor, tol: float) -> Tensor:
    x0 = x0.detach().requires_grad_(True)
    with torch.enable_grad():
        fx = fn(x0)                                            # (B,), graph to parameters
        (slope,) = torch.autograd.grad(fx.sum(), x0, retain_graph=True)
    step = (fx - y) / slope.detach().clamp_min(1e-12)
    # x0 is within tol of the root: clamp the step's value (a near-flat fn would throw
    # it far), never its gradient
    x = x0.detach() - step + (step - step.clamp(-tol, tol)).detach()
    return x if torch.is_grad_enabled() else x.detach()


# --------------------------------------------------------------------------- base

class Mapper(nn.Module):
    """Base class: ``forward(q) -> scores`` with q and the output of shape (B,)."""

    name: ClassVar[str] = ""
    monotone: ClassVar[bool] = True              # non-decreasing in q
    strictly_increasing: ClassVar[bool] = True
    invertible: ClassVar[bool] = True

    def __init__(self, higher_better: bool = True):
        super().__init__()
        self.higher_better = bool(higher_better)

    @property
    def sign(self) -> float:
        return 1.0 if self.higher_better else -1.0

    def forward(self, q: Tensor) -> Tensor:
        if q.dim() != 1:
            raise DataError(f"mapper '{self.name}' takes proxy scores of shape (B,), got "
                            f"{tuple(q.shape)}; squeeze the head's output first")
        return self.sign * self._map(q)

    def inverse(self, y) -> Tensor:
        """Proxy scores q with forward(q) = y, shape (B,), differentiable.

        Closed form where there is one, else :func:`monotone_inverse`.

        Raises:
            DataError: for scores the mapper cannot reach.
        """
        if not self.monotone:
            raise ConfigError(f"mapper '{self.name}' is not monotone and has no inverse")
        return self._unmap(self.sign * self.as_tensor(y))

    def fit(self, q, y, **kwargs) -> "Mapper":
        """Fit this mapper alone to (proxy, score) pairs; returns self.

        Closed form for the affine, linear and SIND mappers, scipy's ``curve_fit`` for
        the logistic, and L-BFGS from the current state for the networks (keyword
        ``max_iter``, default 200). Deterministic.
        """
        q, y = _paired(q, y, self.as_tensor([]))
        self._fit(q, self.sign * y, **kwargs)
        return self

    def as_tensor(self, values) -> Tensor:
        """``values`` as a 1-D tensor; non-tensors take this mapper's dtype and device."""
        if not isinstance(values, Tensor):
            t = next(iter(self.parameters()), next(iter(self.buffers()), None))
            dtype = t.dtype if t is not None else torch.get_default_dtype()
            values = torch.as_tensor(values, dtype=dtype, device=None if t is None else t.device)
        return values.reshape(-1)

    def extra_loss(self, q: Tensor, y: Tensor) -> Tensor:
        """The mapper's own training terms (zero unless a subclass has some)."""
        return q.new_zeros(())

    def config(self) -> dict:
        """JSON-able hyperparameters, with ``name``: ``create_mapper(**config())``."""
        keys = inspect.signature(type(self)).parameters
        return {"name": self.name, **{k: _jsonable(getattr(self, k)) for k in keys}}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.config().items() if k != "name")

    # subclasses work in the "core" space: core(q) = sign * forward(q)
    def _map(self, q: Tensor) -> Tensor:
        raise NotImplementedError

    def _unmap(self, z: Tensor) -> Tensor:
        return monotone_inverse(self._map, z)

    def _fit(self, q: Tensor, z: Tensor, max_iter: int = 200) -> None:
        """Default fit: L-BFGS (scipy) on MSE + ``extra_loss``, from the current state."""
        params = [p for p in self.parameters() if p.requires_grad]
        if not params:
            return
        shapes = [p.shape for p in params]

        def load(theta: np.ndarray) -> None:
            flat = torch.as_tensor(theta, dtype=params[0].dtype, device=params[0].device)
            with torch.no_grad():
                for p, chunk in zip(params, flat.split([s.numel() for s in shapes])):
                    p.copy_(chunk.view_as(p))

        def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
            load(theta)
            with torch.enable_grad():
                loss = F.mse_loss(self._map(q), z) + self.extra_loss(q, self.sign * z)
                grads = torch.autograd.grad(loss, params)
            grad = torch.cat([g.reshape(-1) for g in grads])
            return float(loss.detach()), grad.double().cpu().numpy()

        x0 = torch.cat([p.detach().reshape(-1) for p in params]).double().cpu().numpy()
        load(minimize(objective, x0, jac=True, method="L-BFGS-B",
                      options={"maxiter": max_iter}).x)


