"""Per-dataset score mappers: monotonicity, inverses, gradients, fitting, round trips."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from mixiqa.errors import ConfigError, DataError
from mixiqa.models.mappers import (MAPPERS, MonotonicBlock, clenshaw_curtis, create_mapper,
                                   location_scale)

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL_MIMI = {"hidden": (16, 16), "steps": 16}
# (name, hyperparameters): every registered mapper, MIMI kept small for speed
CASES = [
    ("identity", {}),
    ("linear_rescale", {"score_range": (1.0, 5.0)}),
    ("affine", {}),
    ("logistic4", {}),
    ("monotonic", {}),
    ("monotonic", {"reference": True}),
    ("mimi", SMALL_MIMI),
    ("sind", {}),
]
IDS = [f"{n}{'-ref' if kw.get('reference') else ''}" for n, kw in CASES]


def make(name: str, kw: dict, seed: int = 0, jitter: float = 0.3) -> torch.nn.Module:
    """A mapper with random state: its init, parameters jittered, SIND stats fitted."""
    torch.manual_seed(seed)
    m = create_mapper(name, **kw)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(jitter * torch.randn(p.shape, generator=g))
    if name == "sind":
        m.fit(torch.randn(50, generator=g), 3 + 2 * torch.randn(50, generator=g))
    return m


def sorted_inputs(lo: float, hi: float, n: int = 400, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)).sort().values


def test_registry_lists_every_mapper():
    assert set(MAPPERS.names()) == {n for n, _ in CASES}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("name", "kw"), CASES, ids=IDS)
def test_monotone_on_random_sorted_inputs(name, kw, seed):
    m = make(name, kw, seed).double()
    assert m.monotone
    q = sorted_inputs(-10, 10, seed=seed)
    with torch.no_grad():
        d = m(q).diff()
    assert torch.isfinite(d).all()
    assert (d > 0).all() if m.strictly_increasing else (d >= 0).all()


@pytest.mark.parametrize(("name", "kw"), CASES, ids=IDS)
def test_lower_better_mappers_decrease(name, kw):
    m = make(name, {**kw, "higher_better": False}).double()
    with torch.no_grad():
        d = m(sorted_inputs(-5, 5)).diff()
    assert (d < 0).all() if m.strictly_increasing else (d <= 0).all()


INVERTIBLE = [(n, kw) for n, kw in CASES if not kw.get("reference")]


@pytest.mark.parametrize(("dtype", "span"), [(torch.float64, 10.0), (torch.float32, 3.0)],
                         ids=["float64-wide", "float32"])
@pytest.mark.parametrize("higher_better", [True, False])
@pytest.mark.parametrize(("name", "kw"), INVERTIBLE, ids=[i for i in IDS if "ref" not in i])
def test_inverse_undoes_forward(name, kw, higher_better, dtype, span):
    m = make(name, {**kw, "higher_better": higher_better}).to(dtype)
    assert m.invertible
    q = torch.linspace(-span, span, 41 if name == "mimi" else 201, dtype=dtype)
    with torch.no_grad():
        back = m.inverse(m(q))
    assert back.dtype == dtype
    assert torch.allclose(back, q, atol=1e-4, rtol=0)


def test_non_strict_reference_mapper_is_flagged_and_still_inverts():
    m = make("monotonic", {"reference": True})
    assert m.monotone and not m.strictly_increasing and not m.invertible
    assert m(torch.zeros(1)).item() == 0.0           # no bias: g(0) = 0
    q = torch.linspace(-2, 2, 21)
    with torch.no_grad():
        assert torch.allclose(m(m.inverse(m(q))), m(q), atol=1e-4)


def test_monotonic_mapper_has_the_papers_layers():
    m = create_mapper("monotonic")
    shapes = [tuple(layer.raw_weight.shape) for layer in m.layers]
    assert shapes == [(10, 1), (20, 10), (20, 20), (10, 20), (1, 10)]
    ref = create_mapper("monotonic", reference=True)
    assert all(layer.bias is None for layer in ref.layers)


def test_linear_rescale_maps_common_range_and_flips_dmos():
    mos = create_mapper("linear_rescale", score_range=(1.0, 5.0))
    dmos = create_mapper("linear_rescale", score_range=(0.0, 100.0), higher_better=False)
    q = torch.tensor([0.0, 5.0, 10.0])
    assert torch.allclose(mos(q), torch.tensor([1.0, 3.0, 5.0]))
    assert torch.allclose(dmos(q), torch.tensor([100.0, 50.0, 0.0]))
    assert torch.allclose(dmos.inverse(torch.tensor([100.0, 0.0])), torch.tensor([0.0, 10.0]))
    dmos.fit(torch.zeros(3), torch.tensor([10.0, 30.0, 20.0]))   # min-max of the scores
    assert torch.allclose(dmos(q), torch.tensor([30.0, 20.0, 10.0]))


@pytest.mark.parametrize("higher_better", [True, False])
def test_mimi_coupling_inverse_is_exact(higher_better):
    m = make("mimi", {**SMALL_MIMI, "higher_better": higher_better})
    q = torch.linspace(-8, 8, 50)
    with torch.no_grad():
        y1, y2 = m.coupling(q)
        x1, x2 = m.coupling_inverse(y1, y2)
        assert torch.allclose(y2, m(q))
        assert torch.allclose(x1, q, atol=1e-4)
        assert torch.allclose(x2, m.t_block(q), atol=1e-4)


def test_mimi_extra_loss_is_the_consistency_term():
    m = make("mimi", SMALL_MIMI)
    q = torch.linspace(-1, 1, 9)
    y1, y2 = m.coupling(q)
    expected = torch.nn.functional.smooth_l1_loss(y1, y2)
    assert torch.allclose(m.extra_loss(q, y2), expected)
    assert expected > 0
    assert create_mapper("affine").extra_loss(q, q) == 0


@pytest.mark.parametrize(("name", "kw"),
                         [c for c in CASES if c[0] not in ("identity", "sind", "linear_rescale")],
                         ids=["affine", "logistic4", "monotonic", "monotonic-ref", "mimi"])
def test_gradients_reach_every_parameter_and_q(name, kw):
    m = make(name, kw)
    q = torch.linspace(-2, 2, 16, requires_grad=True)
    y = m(q)
    loss = ((y - 1.0) ** 2).mean() + m.extra_loss(q, y)
    loss.backward()
    assert torch.isfinite(q.grad).all() and (q.grad.abs() > 0).all()
    for pname, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize(("name", "kw"), [("monotonic", {}), ("mimi", SMALL_MIMI)],
                         ids=["monotonic", "mimi"])
def test_inverse_carries_the_implicit_function_gradient(name, kw):
    m = make(name, kw).double()
    q = torch.linspace(-2, 2, 9, dtype=torch.float64, requires_grad=True)
    m(q).sum().backward()
    slope = q.grad.clone()
    y = m(q.detach()).detach().requires_grad_(True)
    m.zero_grad()
    x = m.inverse(y)
    x.sum().backward()
    assert torch.allclose(y.grad, 1 / slope, rtol=1e-6)             # dx/dy = 1 / g'(x)
    # d(sum x)/d(offset of the last layer or block), against central differences
    p = m.layers[-1].bias if name == "monotonic" else m.g_block.offset
    analytic = p.grad.sum().item()
    with torch.no_grad():
        p += 1e-5
        up = m.inverse(y.detach()).sum().item()
        p -= 2e-5
        down = m.inverse(y.detach()).sum().item()
        p += 1e-5
    assert analytic == pytest.approx((up - down) / 2e-5, rel=1e-4)


def test_inverse_outside_the_reachable_range_raises():
    m = make("monotonic", {"reference": True})   # no bias: bounded below as q -> -inf
    with torch.no_grad():
        floor = m(torch.tensor([-1e6])).item()
    with pytest.raises(DataError, match="outside the range"):
        m.inverse(torch.tensor([floor - 1.0]))


def test_affine_fit_recovers_a_known_map():
    q = torch.linspace(-3, 3, 40)
    m = create_mapper("affine").fit(q, 2.5 * q - 1.0)
    assert m.slope_ == pytest.approx(2.5, abs=1e-5)
    assert m.intercept_ == pytest.approx(-1.0, abs=1e-5)
    dmos = create_mapper("affine", higher_better=False).fit(q, -0.5 * q + 4.0)
    assert torch.allclose(dmos(q), -0.5 * q + 4.0, atol=1e-5)


def test_logistic_fit_recovers_a_known_map():
    q = torch.linspace(-4, 4, 80)
    y = 1.0 + 4.0 * torch.sigmoid((q - 0.5) / 0.7)
    m = create_mapper("logistic4").fit(q, y)
    expected = {"low": 1.0, "span": 4.0, "center": 0.5, "scale": 0.7}
    assert m.coefficients_ == pytest.approx(expected, abs=1e-3)


def test_sind_fit_stores_median_and_mean_absolute_deviation():
    q = torch.tensor([0.0, 1.0, 2.0, 10.0, 3.0])        # median 2, MAD (2+1+0+8+1)/5 = 2.4
    y = torch.tensor([50.0, 60.0, 70.0, 80.0, 90.0])    # median 70, MAD (20+10+0+10+20)/5 = 12
    m = create_mapper("sind").fit(q, y)
    stats = [m.proxy_center_, m.proxy_scale_, m.score_center_, m.score_scale_]
    assert [s.item() for s in stats] == pytest.approx([2.0, 2.4, 70.0, 12.0])
    assert m(torch.tensor([2.0, 4.4])).tolist() == pytest.approx([70.0, 82.0])


def test_location_scale_matches_numpy():
    x = torch.tensor([3.0, -1.0, 7.0, 2.0, 2.5])
    t, s = location_scale(x, eps=0.0)
    assert t.item() == np.median(x.numpy())
    assert s.item() == pytest.approx(np.mean(np.abs(x.numpy() - np.median(x.numpy()))))


@pytest.mark.parametrize(("name", "kw"), [("monotonic", {}), ("mimi", SMALL_MIMI)],
                         ids=["monotonic", "mimi"])
def test_learned_fit_is_deterministic_and_fits(name, kw):
    q = torch.linspace(-2, 2, 20)
    y = torch.exp(q) + 1.0                                # convex increasing
    fits = [make(name, kw, jitter=0.0) for _ in range(2)]
    before = torch.mean((fits[0](q) - y) ** 2).item()
    for m in fits:
        m.fit(q, y, max_iter=40)
    after = torch.mean((fits[0](q) - y) ** 2).item()
    assert after < before / 20
    for a, b in zip(fits[0].parameters(), fits[1].parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize(("name", "kw"), CASES + [("mimi", {"higher_better": False})],
                         ids=IDS + ["mimi-default-dmos"])
def test_config_round_trip_through_json_and_safetensors(name, kw):
    m = make(name, kw)
    cfg = json.loads(json.dumps(m.config()))
    assert cfg["name"] == name
    state = st_load(st_save({k: v.contiguous() for k, v in m.state_dict().items()}))
    rebuilt = create_mapper(**cfg)
    rebuilt.load_state_dict(state)
    q = torch.linspace(-3, 3, 7)
    with torch.no_grad():
        assert torch.equal(rebuilt(q), m(q))


def test_user_errors_name_the_fix():
    with pytest.raises(ConfigError, match="Did you mean 'mimi'"):
        create_mapper("mimo")
    with pytest.raises(ConfigError, match="hyperparameters are: higher_better"):
        create_mapper("affine", slope=3)
    with pytest.raises(ConfigError, match="score_range"):
        create_mapper("linear_rescale", score_range=(5, 1))
    with pytest.raises(DataError, match="shape \\(B,\\)"):
        create_mapper("identity")(torch.zeros(4, 1))
    with pytest.raises(DataError, match="as many proxies as scores"):
        create_mapper("affine").fit([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(DataError, match="NaN"):
        create_mapper("affine").fit([1.0, 2.0, 3.0], [1.0, float("nan"), 2.0])


def test_clenshaw_curtis_integrates_polynomials_exactly():
    for n in (8, 9, 100):
        x, w = clenshaw_curtis(n)
        assert w.sum() == pytest.approx(2.0) and (w > 0).all()
        for k in range(0, n + 1, 2):                     # odd powers integrate to 0
            assert (w * x**k).sum() == pytest.approx(2 / (k + 1), abs=1e-12)
        assert (w * x**(n - 1 if n % 2 == 0 else n)).sum() == pytest.approx(0.0, abs=1e-12)


def test_monotonic_block_equals_its_integral():
    from scipy.integrate import quad
    torch.manual_seed(0)
    block = MonotonicBlock(hidden=(8, 8), steps=100).double()
    with torch.no_grad():
        block.log_scale.fill_(math.log(2.0))
        block.offset.fill_(0.5)
        xs = torch.tensor([-3.0, 0.0, 1.5], dtype=torch.float64)
        got = block(xs)

        def f(t: float) -> float:
            return block.integrand(torch.tensor([t], dtype=torch.float64)).item()

    expected = [2.0 * quad(f, 0.0, float(x), limit=200)[0] + 0.5 for x in xs]
    assert got.tolist() == pytest.approx(expected, abs=1e-4)
