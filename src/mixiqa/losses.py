"""Losses of mixed-dataset IQA training: a functional core and thin module wrappers.

Every function takes predictions and targets of shape (B,) ((B, 1) is flattened) and
returns a scalar tensor. Losses that compare the proxy score directly with human scores
(``norm_in_norm``, ``plcc_loss``, ``fidelity_loss``, ``sind_loss``) take
``higher_better``: with ``False`` (DMOS) the scores' direction is flipped, so the proxy
stays "higher is better". Build a wrapper by name with ``create_loss``.
"""

from __future__ import annotations

import inspect
import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixiqa.errors import ConfigError, DataError
from mixiqa.models.mappers import Mapper, location_scale
from mixiqa.registry import Registry

LOSSES: Registry[type[nn.Module]] = Registry("loss")


def _pair(pred: Tensor, target, name: str = "target") -> tuple[Tensor, Tensor]:
    """Flatten (B,) / (B, 1) predictions and targets; check they match."""
    target = torch.as_tensor(target, dtype=pred.dtype, device=pred.device)
    pred, target = pred.reshape(-1), target.reshape(-1)
    if pred.numel() != target.numel():
        raise DataError(f"loss got {pred.numel()} predictions but {target.numel()} {name} "
                        f"values; pass one {name} per prediction")
    return pred, target


def _zero(pred: Tensor) -> Tensor:
    """A zero that keeps the graph, for batches too small to define a loss."""
    return pred.sum() * 0.0


def _directed(target: Tensor, higher_better) -> Tensor:
    """Negate lower-is-better scores; ``higher_better`` is a bool or a (B,) bool tensor."""
    if isinstance(higher_better, bool):
        return target if higher_better else -target
    hb = torch.as_tensor(higher_better, device=target.device).reshape(-1).bool()
    return torch.where(hb, target, -target)


# --------------------------------------------------------------------------- regression

def smooth_l1(pred: Tensor, target: Tensor, beta: float = 1.0) -> Tensor:
    """Mean smooth-L1 (Huber) loss, as torch's ``smooth_l1_loss``."""
    pred, target = _pair(pred, target)
    return F.smooth_l1_loss(pred, target, beta=beta)


def norm_in_norm(pred: Tensor, target: Tensor, p: float = 1.0, q: float = 2.0,
                 eps: float = 1e-8, higher_better: bool = True) -> Tensor:
    """Norm-in-Norm loss over the batch.

    Both vectors are centred by their batch mean and divided by the q-norm of the
    centred vector; the loss is (||a - b||_p / c)^p with
    c = 2^max(1, 1/q) * B^max(0, 1/p - 1/q), which keeps it in [0, 1]. The paper's and
    its code's defaults are p = 1, q = 2. A batch of one gives 0.

    Reference: Li, Jiang, Jiang, "Norm-in-Norm Loss with Faster Convergence and Better
    Performance for Image Quality Assessment", ACM MM 2020.
    """
    if p <= 0 or q <= 0:
        raise ConfigError(f"norm_in_norm needs p > 0 and q > 0, got p={p}, q={q}")
    pred, target = _pair(pred, target)
    n = pred.numel()
    if n < 2:
        return _zero(pred)
    target = _directed(target, higher_better)
    a = pred - pred.mean()
    a = a / (torch.linalg.vector_norm(a, ord=q) + eps)
    b = target - target.mean()
    b = b / (torch.linalg.vector_norm(b, ord=q) + eps)
    scale = 2 ** max(1.0, 1 / q) * n ** max(0.0, 1 / p - 1 / q)
    return (torch.linalg.vector_norm(a - b, ord=p) / scale) ** p


def plcc_loss(pred: Tensor, target: Tensor, eps: float = 1e-8,
              higher_better: bool = True) -> Tensor:
    """(1 - PLCC) / 2 over the batch: 0 for a perfect linear fit, 1 for an inverted one."""
    pred, target = _pair(pred, target)
    if pred.numel() < 2:
        return _zero(pred)
    a = pred - pred.mean()
    b = _directed(target, higher_better)
    b = b - b.mean()
    rho = (a * b).sum() / (a.norm() * b.norm() + eps)
    return (1 - rho) / 2


def monotoniciqa_loss(pred: Tensor, target: Tensor, weight: float = 1.0) -> Tensor:
    """smooth-L1 + weight * Norm-in-Norm on mapped scores (MonotonicIQA, weight = 1).

    Reference: "Learning from Mixed Datasets: A Monotonic Image Quality Assessment Model".
    """
    return smooth_l1(pred, target) + weight * norm_in_norm(pred, target)


# --------------------------------------------------------------------------- ranking

def thurstone_probabilities(mos: Tensor, std=None, default_std: float = 1e-3,
                            higher_better: bool = True, eps: float = 1e-8) -> Tensor:
    """P(image i is better than image j) under Thurstone's Case V model, shape (B, B).

    p_ij = Phi((mu_i - mu_j) / sqrt(s_i^2 + s_j^2)). Missing std (None or NaN entries)
    take ``default_std``; with a small std the targets become the hard ranking
    (1 if better, 0 if worse, 0.5 for ties). For DMOS (``higher_better=False``) the
    lower score wins.

    Reference: Zhang et al., "Uncertainty-aware blind image quality assessment in the
    laboratory and wild" (UNIQUE), IEEE TIP 2021.
    """
    mu = _directed(mos.reshape(-1), higher_better)
    s = torch.full_like(mu, default_std) if std is None else \
        torch.as_tensor(std, dtype=mu.dtype, device=mu.device).reshape(-1).expand_as(mu)
    s = torch.where(torch.isnan(s), torch.full_like(s, default_std), s)
    var = s[:, None] ** 2 + s[None, :] ** 2                                      # (B, B)
    return torch.special.ndtr((mu[:, None] - mu[None, :]) / torch.sqrt(var + eps))


def predicted_probabilities(pred: Tensor, pred_var: Tensor | None = None,
                            eps: float = 1e-8) -> Tensor:
    """P(i better than j) from predicted scores, shape (B, B).

    Without variances: Phi((q_i - q_j) / sqrt(2)) as in LIQE (unit variances); with
    predicted variances: Phi((q_i - q_j) / sqrt(v_i + v_j)) as in UNIQUE.
    """
    q = pred.reshape(-1)
    diff = q[:, None] - q[None, :]                                               # (B, B)
    if pred_var is None:
        return torch.special.ndtr(diff / math.sqrt(2.0))
    v = pred_var.reshape(-1)
    return torch.special.ndtr(diff / torch.sqrt(v[:, None] + v[None, :] + eps))


def fidelity_loss(pred: Tensor, mos: Tensor, std=None, pred_var: Tensor | None = None,
                  groups=None, higher_better: bool = True, default_std: float = 1e-3,
                  eps: float = 1e-8) -> Tensor:
    """Fidelity loss on all pairs i < j of the batch (within the same group, if given).

    1 - sqrt(p g + eps) - sqrt((1 - p)(1 - g) + eps), averaged over pairs, with p the
    Thurstone target (:func:`thurstone_probabilities`) and g the predicted probability
    (:func:`predicted_probabilities`). ``groups`` (B,) keeps only pairs from one dataset.

    Reference: UNIQUE (IEEE TIP 2021) and LIQE (Zhang et al., CVPR 2023).
    """
    pred, mos = _pair(pred, mos, "MOS")
    target = thurstone_probabilities(mos, std, default_std, higher_better, eps)
    g = predicted_probabilities(pred, pred_var, eps)
    mask = torch.ones_like(target, dtype=torch.bool).triu(1)                     # i < j
    if groups is not None:
        groups = torch.as_tensor(groups, device=pred.device).reshape(-1)
        mask &= groups[:, None] == groups[None, :]
    if not mask.any():
        return _zero(pred)
    p, g = target[mask], g[mask]
    return (1 - torch.sqrt(p * g + eps) - torch.sqrt((1 - p) * (1 - g) + eps)).mean()


# --------------------------------------------------------------------------- mixed data

def mimi_range_prior(mappers: Sequence[Mapper], ranges, target: str = "extreme",
                     inverse: str = "exact") -> Tensor:
    """MIMI's range prior: the datasets' score ranges should span the same proxy range.

    Each dataset's (min, max) score goes back through its mapper's inverse into proxy
    space, giving [lo_k, hi_k]; the loss is sum_k |lo_k - lo_all| + |hi_k - hi_all|.
    ``target="extreme"`` (default, as the reference code: lo_all = min_k lo_k,
    hi_all = max_k hi_k) or ``"mean"`` (the mean over datasets). ``inverse="exact"``
    uses ``mapper.inverse``; ``"coupling"`` the reference code's cheap
    ``reference_inverse`` (MIMI mappers only).

    Reference: MIMI, "Monotonic and Invertible Network", IJCV 2025.
    """
    if len(mappers) != len(ranges) or not len(mappers):
        raise ConfigError(f"mimi_range_prior needs one (min, max) range per mapper, got "
                          f"{len(mappers)} mappers and {len(ranges)} ranges")
    if target not in ("extreme", "mean") or inverse not in ("exact", "coupling"):
        raise ConfigError(f"mimi_range_prior: target must be 'extreme' or 'mean' and inverse "
                          f"'exact' or 'coupling'; got {target!r}, {inverse!r}")
    ends = torch.stack([_proxy_range(m, r, inverse) for m, r in zip(mappers, ranges)])  # (K, 2)
    lo, hi = ends[:, 0], ends[:, 1]
    lo_all, hi_all = (lo.min(), hi.max()) if target == "extreme" else (lo.mean(), hi.mean())
    return (lo - lo_all).abs().sum() + (hi - hi_all).abs().sum()


def _proxy_range(mapper: Mapper, score_range, inverse: str) -> Tensor:
    """(low, high) proxy scores of a dataset's score range, sorted (DMOS flips them)."""
    y = mapper.as_tensor(score_range)
    if y.numel() != 2:
        raise DataError(f"a score range is (min, max), got {score_range}")
    if inverse == "coupling":
        if not hasattr(mapper, "reference_inverse"):
            raise ConfigError(f"inverse='coupling' needs MIMI mappers, got '{mapper.name}'; "
                              f"use inverse='exact'")
        x = mapper.reference_inverse(y)
    else:
        x = mapper.inverse(y)
    return torch.stack([x.min(), x.max()])


def check_sind_options(beta: float = 0.0, power: float = 1.0) -> None:
    """The shape options of :func:`sind_loss`: a Huber ``beta`` >= 0, or an exponent
    ``power`` > 0 of the plain residual, not both. Raises ValueError naming the fix."""
    if beta < 0:
        raise ValueError(f"sind_loss beta must be >= 0 (0: L1), got {beta}")
    if power <= 0 or (beta > 0 and power != 1):
        raise ValueError(f"sind_loss power (the residual's exponent, e.g. 2 for a squared "
                         f"loss) must be > 0 and goes without beta (a Huber loss has its own "
                         f"shape): give one of the two; got power {power}, beta {beta}")


def sind_loss(pred: Tensor, label: Tensor, domain_ids, eps: float = 1e-8,
              higher_better=True, beta: float = 0.0, weights=None,
              power: float = 1.0) -> Tensor:
    """SIND's scale-and-shift-aligned L1, per domain, averaged over domains.

    In each domain, predictions and labels are each standardised by their median t and
    mean absolute deviation s = mean|y - t| (+ eps); the loss is the L1 between the two.
    Domains with a single image carry no distribution and are skipped (a batch of only
    such domains gives 0). ``higher_better`` may be a (B,) mask for mixed directions.

    Args:
        beta: 0 for the paper's L1; > 0 for a Huber (smooth-L1) loss that is quadratic
            below ``beta`` standardised units (MADs) and linear above.
        power: The exponent of the residual with ``beta == 0``: 1 for the paper's L1,
            2 for a squared loss (mean of r ** 2) on the aligned scores.
        weights: Optional (B,) weight of each image's domain (the same for every image of
            a domain); the loss is then the mean over domains of weight x domain loss.

    Reference: SIND, "Learning Scene-invariant Distribution", IEEE TCSVT 2025.
    """
    pred, label = _pair(pred, label, "label")
    domains = torch.as_tensor(domain_ids, device=pred.device).reshape(-1)
    if domains.numel() != pred.numel():
        raise DataError(f"sind_loss got {domains.numel()} domain ids for {pred.numel()} "
                        f"predictions; pass one domain id per image")
    check_sind_options(beta, power)
    label = _directed(label, higher_better)
    losses = []
    for d in torch.unique(domains):
        idx = domains == d
        if int(idx.sum()) < 2:
            continue
        p, y = pred[idx], label[idx]
        (tp, sp), (ty, sy) = location_scale(p, eps), location_scale(y, eps)
        r = (p - tp) / sp - (y - ty) / sy                   # (n_d,) in MAD units
        if beta > 0:
            loss = F.smooth_l1_loss(r, torch.zeros_like(r), beta=beta)
        else:
            loss = r.abs().mean() if power == 1 else r.abs().pow(power).mean()
        if weights is not None:
            loss = loss * torch.as_tensor(weights, device=pred.device).reshape(-1)[idx][0]
        losses.append(loss)
    return torch.stack(losses).mean() if losses else _zero(pred)


# the options a config may pass to each loss function (``method.loss_options``)
OPTION_LOSSES = {"smooth_l1": ("beta",), "norm_in_norm": ("p", "q", "eps"),
                 "plcc": ("eps",), "fidelity": ("default_std", "eps"),
                 "sind": ("beta", "eps", "power")}


# --------------------------------------------------------------------------- modules

class _FunctionalLoss(nn.Module):
    """A module holding a loss function's options; ``forward`` calls the function."""

    fn = staticmethod(smooth_l1)     # each subclass names its function

    def __init__(self, **kwargs):
        super().__init__()
        self.kwargs = kwargs

    def forward(self, *args, **kwargs) -> Tensor:
        return self.fn(*args, **{**self.kwargs, **kwargs})

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())


@LOSSES.register("smooth_l1")
class SmoothL1Loss(_FunctionalLoss):
    """Module form of :func:`smooth_l1`."""
    fn = staticmethod(smooth_l1)


@LOSSES.register("norm_in_norm")
class NormInNormLoss(_FunctionalLoss):
    """Module form of :func:`norm_in_norm`."""
    fn = staticmethod(norm_in_norm)


@LOSSES.register("plcc")
class PLCCLoss(_FunctionalLoss):
    """Module form of :func:`plcc_loss`."""
    fn = staticmethod(plcc_loss)


@LOSSES.register("monotoniciqa")
class MonotonicIQALoss(_FunctionalLoss):
    """Module form of :func:`monotoniciqa_loss`."""
    fn = staticmethod(monotoniciqa_loss)


@LOSSES.register("fidelity")
class FidelityLoss(_FunctionalLoss):
    """Module form of :func:`fidelity_loss`: ``forward(pred, mos, std=None, ...)``."""
    fn = staticmethod(fidelity_loss)


@LOSSES.register("mimi_range_prior")
class MIMIRangePrior(_FunctionalLoss):
    """Module form of :func:`mimi_range_prior`: ``forward(mappers, ranges)``."""
    fn = staticmethod(mimi_range_prior)


@LOSSES.register("sind")
class SINDLoss(_FunctionalLoss):
    """Module form of :func:`sind_loss`: ``forward(pred, label, domain_ids)``."""
    fn = staticmethod(sind_loss)


def create_loss(name: str, **kwargs) -> nn.Module:
    """Build a registered loss module by name; kwargs are the function's options."""
    cls = LOSSES.get(name)
    params = inspect.signature(cls.fn).parameters
    options = [k for k, v in params.items() if v.default is not inspect.Parameter.empty]
    unknown = sorted(set(kwargs) - set(options))
    if unknown:
        raise ConfigError(f"loss '{name}' has no option(s) {unknown}; its options are: "
                          f"{', '.join(options)}")
    return cls(**kwargs)
