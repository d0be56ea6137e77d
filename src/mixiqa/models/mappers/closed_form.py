"""Mappers with a closed-form fit: identity (naive mixing), linear rescaling, affine,
the four-parameter logistic and SIND's scale-shift.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import curve_fit
from scipy.special import expit
from torch import Tensor, nn

from mixiqa.errors import ConfigError, DataError
from mixiqa.models.mappers.base import Mapper, inv_softplus, location_scale, register


# --------------------------------------------------------------------------- simple maps

@register
class IdentityMapper(Mapper):
    """g(q) = q: naive mixing, every dataset's raw scores regressed directly."""

    name = "identity"

    def _map(self, q: Tensor) -> Tensor:
        return q

    def _unmap(self, z: Tensor) -> Tensor:
        return z


@register
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


@register
class AffineMapper(Mapper):
    """Learned g(q) = a q + b with a = softplus(.) > 0; ``fit`` is least squares."""

    name = "affine"

    def __init__(self, higher_better: bool = True):
        super().__init__(higher_better)
        self.raw_slope = nn.Parameter(inv_softplus(torch.tensor(1.0)))
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
            self.raw_slope.copy_(inv_softplus(torch.tensor(slope)))
            self.intercept.fill_(float(zn.mean() - slope * qn.mean()))


@register
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
        self.raw_span = nn.Parameter(inv_softplus(torch.tensor(1.0)))
        self.center = nn.Parameter(torch.tensor(0.0))
        self.raw_scale = nn.Parameter(inv_softplus(torch.tensor(1.0)))

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
            self.raw_span.copy_(inv_softplus(torch.tensor(span)))
            self.center.fill_(c)
            self.raw_scale.copy_(inv_softplus(torch.tensor(s)))


@register
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


