"""Per-dataset score mappers g_k: the shared proxy score q -> the scores of dataset k.

A shared regressor gives one proxy score q per image; each training dataset k gets a
mapper onto its own scale, and the loss compares g_k(q) with that dataset's scores.
Every mapper is a torch module in the manner of a scikit-learn estimator:

- hyperparameters are the ``__init__`` arguments, kept under their own names and
  returned by :meth:`Mapper.config`, so ``create_mapper(**m.config())`` rebuilds it;
- ``fit(q, y)`` fits the mapper alone (closed form where there is one) and returns it;
  closed-form state carries a trailing underscore (``slope_``, ``score_center_``);
- all state lives in parameters and buffers, so a model file (safetensors) holds it;
- ``inverse(y)`` maps scores back into proxy space for the monotone mappers.

Direction: every mapper takes ``higher_better``. With ``False`` (DMOS-style scores) the
output is negated, so q stays "higher is better" for every dataset. The attributes
``monotone``, ``strictly_increasing`` and ``invertible`` describe the mapper for
``higher_better=True``; with ``False`` read "decreasing" for "increasing".
"""

from __future__ import annotations

import inspect
import math
from typing import Callable, ClassVar, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import curve_fit, minimize
from scipy.special import expit
from torch import Tensor, nn

from mixiqa.errors import ConfigError, DataError
from mixiqa.registry import Registry

MAPPERS: Registry[type["Mapper"]] = Registry("mapper")


def _register(cls: type["Mapper"]) -> type["Mapper"]:
    MAPPERS.register(cls.name, cls)
    return cls


def create_mapper(name: str, **kwargs) -> "Mapper":
    """Build a registered mapper by name, e.g. ``create_mapper("mimi", hidden=(32, 32))``."""
    cls = MAPPERS.get(name)
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError as err:
        names = ", ".join(inspect.signature(cls).parameters)
        raise ConfigError(f"mapper '{name}': {err}. Its hyperparameters are: {names}.") from None
    return cls(**kwargs)


# --------------------------------------------------------------------------- helpers

def location_scale(x: Tensor, eps: float = 1e-8) -> tuple[Tensor, Tensor]:
    """Median and mean absolute deviation from it (+ eps): SIND's robust statistics.

    ``torch.median`` gives the lower of the two middle values for an even count.
    """
    t = x.median()
    return t, (x - t).abs().mean() + eps


def _inv_softplus(v: Tensor) -> Tensor:
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


# --------------------------------------------------------------------------- simple maps

@_register
class IdentityMapper(Mapper):
    """g(q) = q: naive mixing, every dataset's raw scores regressed directly."""

    name = "identity"

    def _map(self, q: Tensor) -> Tensor:
        return q

    def _unmap(self, z: Tensor) -> Tensor:
        return z


@_register
class LinearRescaleMapper(Mapper):
    """Fixed linear map of the common range onto the dataset's score range (UNIQUE-Linear).

    ``common_range`` (default [0, 10]) maps onto ``score_range``, its low end onto the
    worst score: the range is flipped for DMOS sets (``higher_better=False``). Nothing
    is learned by gradient; ``fit`` only replaces the score range by the min and max of
    the given scores (the MonotonicIQA reference rescales by the training split's range).

    Reference: Zhang et al., "Uncertainty-aware blind image quality assessment in the
    laboratory and wild", IEEE TIP 2021 (UNIQUE-Linear baseline).
    """

    name = "linear_rescale"

    def __init__(self, score_range: Sequence[float], common_range: Sequence[float] = (0.0, 10.0),
                 higher_better: bool = True):
        super().__init__(higher_better)
        self.score_range = tuple(float(v) for v in score_range)
        self.common_range = tuple(float(v) for v in common_range)
        for label in ("score_range", "common_range"):
            bounds = getattr(self, label)
            if len(bounds) != 2 or not bounds[0] < bounds[1]:
                raise ConfigError(f"linear_rescale: {label} must be (low, high) with low < high, "
                                  f"got {bounds}")
        low, high = sorted((self.sign * self.score_range[0], self.sign * self.score_range[1]))
        self.register_buffer("low_", torch.tensor(float(low)))    # core-space target range
        self.register_buffer("high_", torch.tensor(float(high)))

    def _map(self, q: Tensor) -> Tensor:
        c0, c1 = self.common_range
        return self.low_ + (q - c0) / (c1 - c0) * (self.high_ - self.low_)

    def _unmap(self, z: Tensor) -> Tensor:
        c0, c1 = self.common_range
        return c0 + (z - self.low_) / (self.high_ - self.low_) * (c1 - c0)

    def _fit(self, q: Tensor, z: Tensor) -> None:
        self.low_.fill_(float(z.min()))
        self.high_.fill_(float(z.max()))


@_register
class AffineMapper(Mapper):
    """Learned g(q) = a q + b with a = softplus(.) > 0; ``fit`` is least squares."""

    name = "affine"

    def __init__(self, higher_better: bool = True):
        super().__init__(higher_better)
        self.raw_slope = nn.Parameter(_inv_softplus(torch.tensor(1.0)))
        self.intercept = nn.Parameter(torch.tensor(0.0))

    @property
    def slope_(self) -> float:
        return float(F.softplus(self.raw_slope.detach()))

    @property
    def intercept_(self) -> float:
        return float(self.intercept.detach())

    def _map(self, q: Tensor) -> Tensor:
        return F.softplus(self.raw_slope) * q + self.intercept

    def _unmap(self, z: Tensor) -> Tensor:
        return (z - self.intercept) / F.softplus(self.raw_slope)

    def _fit(self, q: Tensor, z: Tensor) -> None:
        qn, zn = q.double().cpu().numpy(), z.double().cpu().numpy()
        slope = max(float(np.polyfit(qn, zn, 1)[0]), 1e-6)   # best increasing fit
        with torch.no_grad():
            self.raw_slope.copy_(_inv_softplus(torch.tensor(slope)))
            self.intercept.fill_(float(zn.mean() - slope * qn.mean()))


@_register
class Logistic4Mapper(Mapper):
    """Learned increasing 4-parameter logistic g(q) = low + span * sigmoid((q - c) / s).

    span > 0 and s > 0 through softplus. ``fit`` uses scipy's ``curve_fit``. The
    inverse is closed form on the open range (low, low + span); scores outside it are
    clamped just inside, so they map to the far ends of proxy space.
    """

    name = "logistic4"

    def __init__(self, higher_better: bool = True):
        super().__init__(higher_better)
        self.low = nn.Parameter(torch.tensor(0.0))
        self.raw_span = nn.Parameter(_inv_softplus(torch.tensor(1.0)))
        self.center = nn.Parameter(torch.tensor(0.0))
        self.raw_scale = nn.Parameter(_inv_softplus(torch.tensor(1.0)))

    def _map(self, q: Tensor) -> Tensor:
        span, scale = F.softplus(self.raw_span), F.softplus(self.raw_scale)
        return self.low + span * torch.sigmoid((q - self.center) / scale)

    def _unmap(self, z: Tensor) -> Tensor:
        span, scale = F.softplus(self.raw_span), F.softplus(self.raw_scale)
        r = ((z - self.low) / span).clamp(1e-6, 1 - 1e-6)
        return self.center + scale * torch.logit(r)

    @property
    def coefficients_(self) -> dict[str, float]:
        """The fitted curve: ``low``, ``span``, ``center``, ``scale``."""
        with torch.no_grad():
            values = (self.low, F.softplus(self.raw_span), self.center,
                      F.softplus(self.raw_scale))
            return dict(zip(("low", "span", "center", "scale"), (float(v) for v in values)))

    def _fit(self, q: Tensor, z: Tensor) -> None:
        qn, zn = q.double().cpu().numpy(), z.double().cpu().numpy()

        def f(x, low, span, c, s):
            return low + span * expit((x - c) / s)

        p0 = [zn.min(), np.ptp(zn) + 1e-6, np.median(qn), qn.std() / 2 + 1e-6]
        lower, upper = [-np.inf, 1e-9, -np.inf, 1e-9], [np.inf] * 4
        try:
            (low, span, c, s), _ = curve_fit(f, qn, zn, p0=p0, bounds=(lower, upper),
                                             maxfev=20000)
        except RuntimeError as err:
            raise DataError(f"logistic4 fit did not converge ({err}); check that the scores "
                            f"rise with the proxies") from None
        with torch.no_grad():
            self.low.fill_(low)
            self.raw_span.copy_(_inv_softplus(torch.tensor(span)))
            self.center.fill_(c)
            self.raw_scale.copy_(_inv_softplus(torch.tensor(s)))


@_register
class SindMapper(Mapper):
    """SIND's per-domain alignment as a mapper: g(q) = (q - t_q) / s_q * s_y + t_y.

    ``fit`` stores the median t and mean absolute deviation s of the proxies and of the
    scores (closed form, nothing learned by gradient). Before ``fit`` it is the identity.

    Reference: SIND, "Learning Scene-invariant Distribution", IEEE TCSVT 2025.
    """

    name = "sind"

    def __init__(self, eps: float = 1e-8, higher_better: bool = True):
        super().__init__(higher_better)
        self.eps = eps
        for key, value in (("proxy_center_", 0.0), ("proxy_scale_", 1.0),
                           ("score_center_", 0.0), ("score_scale_", 1.0)):
            self.register_buffer(key, torch.tensor(value))

    def _map(self, q: Tensor) -> Tensor:
        return (q - self.proxy_center_) / self.proxy_scale_ * self.score_scale_ + self.score_center_

    def _unmap(self, z: Tensor) -> Tensor:
        return (z - self.score_center_) / self.score_scale_ * self.proxy_scale_ + self.proxy_center_

    def _fit(self, q: Tensor, z: Tensor) -> None:
        for prefix, x in (("proxy", q), ("score", z)):
            t, s = location_scale(x, self.eps)
            getattr(self, f"{prefix}_center_").copy_(t)
            getattr(self, f"{prefix}_scale_").copy_(s)


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
        raw = _inv_softplus(w.abs().clamp_min(1e-3)) if positive == "softplus" else w
        self.raw_weight = nn.Parameter(raw)
        self.bias = nn.Parameter(torch.empty(n_out).uniform_(-bound, bound)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        w = F.softplus(self.raw_weight) if self.positive == "softplus" else self.raw_weight.abs()
        return F.linear(x, w, self.bias)


@_register
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


@_register
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
