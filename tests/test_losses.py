"""Losses: hand-computed values, invariances, Thurstone targets, SIND and MIMI priors."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import norm, pearsonr

from mixiqa.errors import ConfigError, DataError
from mixiqa.losses import (LOSSES, create_loss, fidelity_loss, mimi_range_prior, norm_in_norm,
                           plcc_loss, predicted_probabilities, sind_loss, smooth_l1,
                           thurstone_probabilities)
from mixiqa.models.mappers import create_mapper

pytestmark = pytest.mark.usefixtures("one_thread")

PRED = torch.tensor([1.0, 2.0, 4.0])
TARGET = torch.tensor([1.0, 3.0, 2.0])


def test_smooth_l1_by_hand():
    # |d| = 0, 2, 0.5 -> 0, 2 - 0.5, 0.5 * 0.5^2 -> mean (0 + 1.5 + 0.125) / 3
    got = smooth_l1(torch.tensor([0.0, 2.0, 0.5]), torch.zeros(3))
    assert got.item() == pytest.approx(1.625 / 3)


def test_norm_in_norm_by_hand():
    # centred pred (-4, -1, 5)/3, 2-norm sqrt(42)/3 -> (-4, -1, 5)/sqrt(42)
    # centred target (-1, 1, 0), 2-norm sqrt(2)   -> (-1, 1, 0)/sqrt(2)
    # p = 1: sum |diff| / (2^max(1, 1/2) * 3^max(0, 1 - 1/2)) = sum |diff| / (2 sqrt(3))
    r42, r2 = math.sqrt(42), math.sqrt(2)
    l1 = abs(-4 / r42 + 1 / r2) + abs(-1 / r42 - 1 / r2) + abs(5 / r42)
    assert norm_in_norm(PRED, TARGET).item() == pytest.approx(l1 / (2 * math.sqrt(3)), rel=1e-6)
    # p = q = 2 is (1 - PLCC) / 2: ||a - b||^2 = 2 - 2 rho, scale 2^1 * 3^0, squared
    rho = pearsonr(PRED.numpy(), TARGET.numpy())[0]
    assert norm_in_norm(PRED, TARGET, p=2, q=2).item() == pytest.approx((1 - rho) / 2, rel=1e-5)


def test_norm_in_norm_is_scale_and_shift_invariant():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(16, generator=g), torch.randn(16, generator=g)
    base = norm_in_norm(pred, target)
    assert norm_in_norm(3.0 * pred - 7.0, target).item() == pytest.approx(base.item(), rel=1e-5)
    assert norm_in_norm(pred, 0.1 * target + 50).item() == pytest.approx(base.item(), rel=1e-5)
    assert norm_in_norm(pred, 2 * pred + 1).item() == pytest.approx(0.0, abs=1e-6)
    assert norm_in_norm(pred, -pred, p=2).item() == pytest.approx(1.0, abs=1e-6)  # the maximum


def test_norm_in_norm_directions_and_degenerate_batch():
    assert norm_in_norm(PRED, -TARGET, higher_better=False).item() == pytest.approx(
        norm_in_norm(PRED, TARGET).item())
    one = torch.tensor([2.0], requires_grad=True)
    loss = norm_in_norm(one, torch.tensor([5.0]))
    loss.backward()
    assert loss.item() == 0.0 and one.grad is not None


def test_plcc_loss_by_hand_and_against_scipy():
    # sum(ab) = 4/3 - 1/3 = 1, |a| = sqrt(42)/3, |b| = sqrt(2)
    rho = 1 / (math.sqrt(42) / 3 * math.sqrt(2))
    assert plcc_loss(PRED, TARGET).item() == pytest.approx((1 - rho) / 2, rel=1e-6)
    assert rho == pytest.approx(pearsonr(PRED.numpy(), TARGET.numpy())[0])
    assert plcc_loss(PRED, -TARGET, higher_better=False).item() == pytest.approx((1 - rho) / 2)


def test_thurstone_targets():
    mos, std = torch.tensor([3.0, 1.0, 3.0]), torch.tensor([1.0, 1.0, 0.5])
    p = thurstone_probabilities(mos, std)
    assert p[0, 1].item() == pytest.approx(norm.cdf(2 / math.sqrt(2)), abs=1e-6)
    assert p[1, 2].item() == pytest.approx(norm.cdf(-2 / math.sqrt(1.25)), abs=1e-6)
    assert p[0, 2].item() == pytest.approx(0.5)                     # tie
    assert torch.allclose(p + p.T, torch.ones(3, 3))                # P(i>j) + P(j>i) = 1
    dmos = thurstone_probabilities(mos, std, higher_better=False)    # lower DMOS wins
    assert torch.allclose(dmos, p.T)
    hard = thurstone_probabilities(mos)                             # no std: hard ranking
    assert hard[0, 1].item() == pytest.approx(1.0) and hard[1, 0].item() == pytest.approx(0.0)
    partial = thurstone_probabilities(mos, torch.tensor([1.0, float("nan"), 0.5]))
    assert partial[0, 1].item() == pytest.approx(norm.cdf(2 / math.sqrt(1 + 1e-6)), abs=1e-6)


def test_predicted_probabilities_liqe_and_unique():
    pred = torch.tensor([1.0, 0.0])
    assert predicted_probabilities(pred)[0, 1].item() == pytest.approx(norm.cdf(1 / math.sqrt(2)))
    var = torch.tensor([0.25, 0.75])
    assert predicted_probabilities(pred, var)[0, 1].item() == pytest.approx(norm.cdf(1.0))


def test_fidelity_by_hand():
    # one pair: p = Phi(2 / sqrt(2)), g = Phi(1 / sqrt(2))
    p, g = norm.cdf(math.sqrt(2)), norm.cdf(1 / math.sqrt(2))
    expected = 1 - math.sqrt(p * g) - math.sqrt((1 - p) * (1 - g))
    got = fidelity_loss(torch.tensor([1.0, 0.0]), torch.tensor([3.0, 1.0]), std=1.0)
    assert got.item() == pytest.approx(expected, abs=1e-5)
    # swapping the prediction order makes it worse; DMOS flips which order is right
    swapped = fidelity_loss(torch.tensor([0.0, 1.0]), torch.tensor([3.0, 1.0]), std=1.0)
    dmos = fidelity_loss(torch.tensor([0.0, 1.0]), torch.tensor([3.0, 1.0]), std=1.0,
                         higher_better=False)
    assert swapped > got and dmos.item() == pytest.approx(got.item())


def test_fidelity_averages_pairs_within_groups_only():
    pred = torch.tensor([0.3, -0.2, 1.5, 0.9, 0.0])
    mos = torch.tensor([2.0, 1.0, 80.0, 60.0, 70.0])
    groups = [0, 0, 1, 1, 1]
    within = fidelity_loss(pred, mos, groups=groups)
    # 1 pair in group 0 + 3 pairs in group 1, each loss weighted equally
    a = fidelity_loss(pred[:2], mos[:2])
    b = fidelity_loss(pred[2:], mos[2:])
    assert within.item() == pytest.approx((a.item() + 3 * b.item()) / 4, rel=1e-6)
    assert fidelity_loss(pred[:1], mos[:1]).item() == 0.0            # no pair at all


def test_fidelity_gradient_reaches_predictions_and_variances():
    pred = torch.tensor([0.5, 0.1, -0.4], requires_grad=True)
    var = torch.tensor([0.5, 1.0, 2.0], requires_grad=True)
    fidelity_loss(pred, torch.tensor([3.0, 4.0, 1.0]), pred_var=var).backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    assert torch.isfinite(var.grad).all() and var.grad.abs().sum() > 0


def test_sind_by_hand():
    # pred: median 2, MAD (1+0+2)/3 = 1 -> (-1, 0, 2)
    # label: median 2, MAD (1+1+0)/3 = 2/3 -> (-1.5, 1.5, 0); mean |diff| = (0.5+1.5+2)/3
    got = sind_loss(PRED, TARGET, [0, 0, 0], eps=0.0)
    assert got.item() == pytest.approx(4 / 3)


def test_sind_invariant_to_affine_transforms_of_each_domain():
    g = torch.Generator().manual_seed(1)
    pred = torch.randn(12, generator=g, dtype=torch.float64)
    label = torch.rand(12, generator=g, dtype=torch.float64) * 5
    domains = torch.tensor([0] * 5 + [1] * 4 + [2] * 3)
    base = sind_loss(pred, label, domains)
    scale = torch.tensor([3.0, 0.01, 20.0], dtype=torch.float64)
    shift = torch.tensor([-4.0, 100.0, 0.5], dtype=torch.float64)
    moved = label * scale[domains] + shift[domains]
    assert sind_loss(pred, moved, domains).item() == pytest.approx(base.item(), rel=1e-6)
    assert base.item() > 0.1
    # a DMOS domain given with its direction is the same as its flipped MOS
    flipped = torch.where(domains == 1, -label, label)
    hb = domains != 1
    assert sind_loss(pred, flipped, domains, higher_better=hb).item() == pytest.approx(
        base.item(), rel=1e-6)


def test_sind_huber_and_domain_weights_by_hand():
    # standardised residuals of test_sind_by_hand: (0.5, -1.5, 2.0)
    # Huber with beta 1: 0.5 * 0.5**2 / 1 = 0.125, 1.5 - 0.5 = 1.0, 2.0 - 0.5 = 1.5
    got = sind_loss(PRED, TARGET, [0, 0, 0], eps=0.0, beta=1.0)
    assert got.item() == pytest.approx((0.125 + 1.0 + 1.5) / 3)
    # two copies of the batch as two domains, weighted 3 and 0: mean(3 x L, 0) = 1.5 x L
    pred, target = torch.cat([PRED, PRED]), torch.cat([TARGET, TARGET])
    weighted = sind_loss(pred, target, [0, 0, 0, 1, 1, 1], eps=0.0,
                         weights=torch.tensor([3.0] * 3 + [0.0] * 3))
    assert weighted.item() == pytest.approx(1.5 * 4 / 3)
    with pytest.raises(ValueError, match="beta must be >= 0"):
        sind_loss(PRED, TARGET, [0, 0, 0], beta=-1.0)


def test_sind_squared_by_hand():
    # standardised residuals of test_sind_by_hand: (0.5, -1.5, 2.0) -> squares 0.25, 2.25, 4
    got = sind_loss(PRED, TARGET, [0, 0, 0], eps=0.0, power=2.0)
    assert got.item() == pytest.approx((0.25 + 2.25 + 4.0) / 3)
    for bad in ({"power": 0.0}, {"power": 2.0, "beta": 1.0}):
        with pytest.raises(ValueError, match="power"):
            sind_loss(PRED, TARGET, [0, 0, 0], **bad)


def test_sind_skips_single_image_domains():
    pred, label = torch.tensor([0.1, 0.5, 0.2, 9.0]), torch.tensor([1.0, 3.0, 2.0, 7.0])
    two = sind_loss(pred[:3], label[:3], [0, 0, 0])
    assert sind_loss(pred, label, [0, 0, 0, 1]).item() == pytest.approx(two.item())
    lonely = torch.tensor([1.0, 2.0], requires_grad=True)
    loss = sind_loss(lonely, torch.tensor([3.0, 4.0]), [0, 1])
    loss.backward()
    assert loss.item() == 0.0 and lonely.grad is not None
    with pytest.raises(DataError, match="domain id"):
        sind_loss(pred, label, [0, 1])


def test_range_prior_by_hand_with_identity_mappers():
    ms = [create_mapper("identity") for _ in range(3)]
    ranges = [(0.0, 1.0), (0.0, 2.0), (-1.0, 1.0)]
    # lows (0, 0, -1), highs (1, 2, 1); extreme: |0+1|*2 + 0 and |1-2|*2 + 0 -> 4
    assert mimi_range_prior(ms, ranges).item() == pytest.approx(4.0)
    # mean: lows mean -1/3 -> 1/3+1/3+2/3; highs mean 4/3 -> 1/3+2/3+1/3 -> 8/3
    assert mimi_range_prior(ms, ranges, target="mean").item() == pytest.approx(8 / 3)


def test_range_prior_zero_when_ranges_coincide():
    a = create_mapper("linear_rescale", score_range=(1.0, 5.0))
    b = create_mapper("linear_rescale", score_range=(0.0, 100.0), higher_better=False)
    # both datasets' ranges map onto [0, 10] in proxy space (DMOS ends swap)
    assert mimi_range_prior([a, b], [(1.0, 5.0), (0.0, 100.0)]).item() == pytest.approx(0.0)
    torch.manual_seed(0)
    m = create_mapper("mimi", hidden=(8, 8), steps=8)
    twin = create_mapper("mimi", hidden=(8, 8), steps=8)
    twin.load_state_dict(m.state_dict())
    assert mimi_range_prior([m, twin], [(1.0, 5.0)] * 2).item() == pytest.approx(0.0, abs=1e-6)


def test_range_prior_gradient_reaches_mimi_mappers():
    torch.manual_seed(0)
    ms = [create_mapper("mimi", hidden=(8, 8), steps=8) for _ in range(2)]
    loss = mimi_range_prior(ms, [(0.0, 1.0), (2.0, 5.0)])
    loss.backward()
    assert loss.item() > 0
    for m in ms:
        grads = [p.grad for p in m.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert sum(g.abs().sum() for g in grads) > 0
    ref = mimi_range_prior(ms, [(0.0, 1.0), (2.0, 5.0)], inverse="coupling")
    assert torch.isfinite(ref) and ref.item() > 0


def test_range_prior_errors():
    ms = [create_mapper("identity")]
    with pytest.raises(ConfigError, match="one \\(min, max\\) range per mapper"):
        mimi_range_prior(ms, [(0, 1), (0, 2)])
    with pytest.raises(ConfigError, match="needs MIMI mappers"):
        mimi_range_prior(ms, [(0, 1)], inverse="coupling")
    with pytest.raises(ConfigError, match="target must be"):
        mimi_range_prior(ms, [(0, 1)], target="median")


def test_registry_and_modules():
    assert set(LOSSES.names()) == {"smooth_l1", "norm_in_norm", "plcc", "monotoniciqa",
                                   "fidelity", "mimi_range_prior", "sind"}
    nin = create_loss("norm_in_norm", p=2, q=2)
    assert nin(PRED, TARGET).item() == pytest.approx(plcc_loss(PRED, TARGET).item(), rel=1e-5)
    mono = create_loss("monotoniciqa")
    expected = smooth_l1(PRED, TARGET) + norm_in_norm(PRED, TARGET)
    assert mono(PRED, TARGET).item() == pytest.approx(expected.item())
    with pytest.raises(ConfigError, match="Did you mean 'fidelity'"):
        create_loss("fidelty")
    with pytest.raises(ConfigError, match="has no option"):
        create_loss("plcc", p=3)


def test_shape_mismatch_is_a_data_error():
    with pytest.raises(DataError, match="3 predictions but 2"):
        smooth_l1(PRED, torch.tensor([1.0, 2.0]))
    # (B, 1) heads are flattened, not broadcast to (B, B)
    assert smooth_l1(PRED[:, None], TARGET).item() == pytest.approx(smooth_l1(PRED, TARGET).item())
