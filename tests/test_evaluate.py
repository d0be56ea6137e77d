"""Tests of mixiqa.evaluate: metrics against scipy, the logistic fit and its fallbacks,
input errors, and the aggregation over splits and datasets."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy import stats

from mixiqa.errors import ConfigError, DataError
from mixiqa.evaluate import (
    HIGHER_IS_BETTER,
    METRIC_NAMES,
    EvaluationWarning,
    Metrics,
    evaluate,
    fit_map,
    krcc,
    logistic4,
    logistic5,
    median_over_splits,
    plcc,
    rmse,
    srcc,
    weighted_mean,
)


def _pair(seed: int, n: int = 60, ties: bool = False,
          sign: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    target = rng.normal(50, 15, n)
    preds = sign * target / 20 + rng.normal(0, 1, n)
    if ties:  # coarse rounding gives many tied values on both sides
        preds, target = np.round(preds), np.round(target / 10)
    return preds, target


def _sigmoid_data(n: int = 80) -> tuple[np.ndarray, np.ndarray]:
    x = np.linspace(-3.0, 3.0, n)
    return x, logistic4(x, 90.0, 10.0, 0.3, 0.4)  # exactly logistic-shaped, MOS in (10, 90)


# ------------------------------------------------------------------ against scipy


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_metrics_match_scipy(seed: int, ties: bool, sign: float) -> None:
    p, t = _pair(seed, ties=ties, sign=sign)
    assert srcc(p, t) == pytest.approx(stats.spearmanr(p, t).statistic, abs=1e-12)
    assert krcc(p, t) == pytest.approx(stats.kendalltau(p, t, variant="b").statistic, abs=1e-12)
    assert plcc(p, t) == pytest.approx(stats.pearsonr(p, t).statistic, abs=1e-12)
    assert rmse(p, t) == pytest.approx(np.sqrt(np.mean((p - t) ** 2)), abs=1e-12)
    assert np.sign(srcc(p, t)) == sign  # the data are built to correlate with this sign


def test_ties_use_mean_ranks_and_tau_b() -> None:
    p, t = [1, 2, 2, 3], [1, 2, 3, 4]
    # ranks of p: 1, 2.5, 2.5, 4 -> Pearson of ranks with 1..4
    assert srcc(p, t) == pytest.approx(np.corrcoef([1, 2.5, 2.5, 4], [1, 2, 3, 4])[0, 1])
    # tau-b: 5 concordant, 0 discordant, 1 tie in p only: 5 / sqrt(5 * 6)
    assert krcc(p, t) == pytest.approx(5 / math.sqrt(30))


def test_accepts_lists_columns_and_tensors() -> None:
    p, t = _pair(3)
    expected = srcc(p, t)
    assert srcc(list(p), list(t)) == pytest.approx(expected)
    assert srcc(p[:, None], t) == pytest.approx(expected)
    assert srcc(torch.tensor(p, requires_grad=True), torch.tensor(t)) == pytest.approx(expected)


def test_higher_is_better_is_stated_for_every_metric() -> None:
    assert set(HIGHER_IS_BETTER) == set(METRIC_NAMES)
    assert HIGHER_IS_BETTER["srcc"] and HIGHER_IS_BETTER["plcc"] and not HIGHER_IS_BETTER["rmse"]


# ------------------------------------------------------------- hand-checked cases


def test_monotone_nonlinear_relation_logistic_fit_recovers_plcc() -> None:
    x, y = _sigmoid_data()
    assert srcc(x, y) == pytest.approx(1.0)
    assert krcc(x, y) == pytest.approx(1.0)
    assert plcc(x, y) < 0.96  # a sigmoid is far from a line before the fit
    m = evaluate(x, y, fit="logistic4")
    assert m.fit == "logistic4"
    assert m.plcc == pytest.approx(1.0, abs=1e-6)
    assert m.rmse == pytest.approx(0.0, abs=1e-3)
    assert m.mapping is not None
    b1, b2, b3, b4 = m.mapping.params  # the true parameters are recovered in raw units
    assert (b1, b2, b3, b4) == pytest.approx((90.0, 10.0, 0.3, 0.4), rel=1e-3)


def test_logistic5_fits_its_own_form_and_plots_on_mos_scale() -> None:
    x = np.linspace(0.0, 10.0, 60)
    y = logistic5(x, 60.0, 1.2, 5.0, 2.0, 30.0)
    m = evaluate(x, y, fit="logistic5")
    assert m.fit == "logistic5"
    assert m.plcc == pytest.approx(1.0, abs=1e-6)
    grid = np.linspace(0.0, 10.0, 7)
    np.testing.assert_allclose(m.mapping(grid), logistic5(grid, 60.0, 1.2, 5.0, 2.0, 30.0),
                               atol=1e-2)


def test_negative_correlation_gives_decreasing_map_and_positive_plcc() -> None:
    x, y = _sigmoid_data()
    m = evaluate(-x, y)
    assert m.srcc == pytest.approx(-1.0)
    assert m.plcc == pytest.approx(1.0, abs=1e-6)  # the fitted map is decreasing
    assert m.mapping(-3.0) > m.mapping(3.0)


def test_linear_and_none_fits() -> None:
    p, t = _pair(4)
    lin = evaluate(p, t, fit="linear")
    none = evaluate(p, t, fit="none")
    assert lin.fit == "linear" and none.fit == "none"
    assert lin.plcc == pytest.approx(abs(plcc(p, t)))
    assert none.rmse == pytest.approx(rmse(p, t))
    slope, intercept = np.polyfit(p, t, 1)
    assert lin.rmse == pytest.approx(rmse(slope * p + intercept, t))


def test_logistic_plcc_is_at_least_linear_on_noisy_data() -> None:
    for seed in range(3):
        p, t = _pair(seed, n=200)
        assert evaluate(p, t).plcc >= evaluate(p, t, fit="linear").plcc - 1e-9


# ------------------------------------------------------------- fallbacks, errors


def test_non_converging_fit_falls_back_to_linear_and_says_so() -> None:
    x, y = _sigmoid_data()
    with pytest.warns(EvaluationWarning, match="did not converge"):
        m = evaluate(x, y, maxfev=1)
    assert m.fit == "linear (logistic4 fit did not converge)"
    assert m.plcc == pytest.approx(plcc(x, y))  # a linear map leaves the Pearson r as is


def test_non_monotonic_logistic5_falls_back() -> None:
    x = np.linspace(-1.0, 1.0, 41)
    with pytest.warns(EvaluationWarning, match="not monotonic"):
        mapping = fit_map(x, x**2 + 0.3 * x, kind="logistic5")
    assert mapping.kind == "linear"
    assert mapping.fit == "linear (logistic5 fit is not monotonic over the prediction range)"


def test_constant_predictions_give_nan_with_reason() -> None:
    t = np.arange(6.0)
    with pytest.warns(EvaluationWarning, match="predictions are constant"):
        assert math.isnan(srcc(np.ones(6), t))
    with pytest.warns(EvaluationWarning, match="predictions are constant"):
        m = evaluate(np.ones(6), t)
    assert all(math.isnan(v) for v in (m.srcc, m.krcc, m.plcc, m.rmse))
    assert "constant" in m.note and m.fit == "none (predictions are constant)"
    with pytest.warns(EvaluationWarning, match="target scores are constant"):
        assert math.isnan(plcc(t, np.full(6, 3.0)))


def test_nan_input_is_a_data_error_naming_the_problem() -> None:
    p, t = _pair(5)
    p[7] = np.nan
    with pytest.raises(DataError, match=r"preds has 1 NaN/inf value\(s\) \(first at index 7\)"):
        evaluate(p, t)
    with pytest.raises(DataError, match="target"):
        srcc(t, p)


def test_length_mismatch_and_too_few_points() -> None:
    with pytest.raises(DataError, match=r"differ in length \(5 vs 4\)"):
        evaluate(np.arange(5.0), np.arange(4.0))
    with pytest.raises(DataError, match="at least 3 .* got 2"):
        srcc([1.0, 2.0], [1.0, 3.0])
    with pytest.raises(DataError, match="at least 6 .* got 5"):
        evaluate(np.arange(5.0), np.arange(5.0) ** 2, fit="logistic5")
    with pytest.raises(ConfigError, match="unknown fit 'cubic'"):
        evaluate(np.arange(5.0), np.arange(5.0), fit="cubic")


def test_metrics_as_dict_is_plain() -> None:
    x, y = _sigmoid_data()
    d = evaluate(x, y).as_dict()
    assert set(d) == {"srcc", "krcc", "plcc", "rmse", "n", "fit", "note"}
    assert d["n"] == 80 and d["fit"] == "logistic4"


def test_good_fit_emits_no_warning() -> None:
    p, t = _pair(6, n=300)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        evaluate(p, t, fit="logistic4")
        evaluate(p, t, fit="logistic5")


# ------------------------------------------------------------------- aggregation


def _m(srcc_value: float, plcc_value: float, fit: str = "logistic4") -> Metrics:
    return Metrics(srcc_value, 0.5, plcc_value, 1.0, 100, fit)


def test_median_over_splits_hand_computed() -> None:
    splits = [_m(0.90, 0.92), _m(0.80, 0.85), _m(0.85, 0.90), _m(0.95, 0.93),
              {"srcc": 0.70, "krcc": 0.5, "plcc": 0.80, "rmse": 1.0, "fit": "linear"}]
    out = median_over_splits(splits)
    assert out["n_splits"] == 5
    assert out["srcc"] == pytest.approx(0.85)  # sorted: .70 .80 .85 .90 .95
    assert out["srcc_q1"] == pytest.approx(0.80) and out["srcc_q3"] == pytest.approx(0.90)
    assert out["srcc_iqr"] == pytest.approx(0.10)
    assert (out["srcc_min"], out["srcc_max"]) == pytest.approx((0.70, 0.95))
    assert out["plcc"] == pytest.approx(0.90)
    assert out["fit"] == "logistic4 x4; linear x1"


def test_median_over_splits_errors() -> None:
    with pytest.raises(DataError, match="no splits"):
        median_over_splits([])
    with pytest.raises(DataError, match=r"split\(s\) \[1\] have no 'plcc'"):
        median_over_splits([{"srcc": 0.9, "plcc": 0.9}, {"srcc": 0.8}])


def test_weighted_mean_hand_computed() -> None:
    per_dataset = {"live": _m(0.96, 0.97), "koniq": {"srcc": 0.90, "krcc": 0.5, "plcc": 0.91}}
    out = weighted_mean(per_dataset, {"live": 100, "koniq": 300, "unused": 5})
    assert out["srcc"] == pytest.approx((100 * 0.96 + 300 * 0.90) / 400)  # 0.915
    assert out["plcc"] == pytest.approx((100 * 0.97 + 300 * 0.91) / 400)  # 0.925
    assert "rmse" not in out  # each dataset's RMSE is in its own units
    assert out["n_images"] == 400 and out["n_datasets"] == 2


def test_weighted_mean_of_medians_and_errors() -> None:
    med = {"a": median_over_splits([_m(0.8, 0.8), _m(0.9, 0.9), _m(1.0, 1.0)]),
           "b": median_over_splits([_m(0.5, 0.6)])}
    assert weighted_mean(med, {"a": 1, "b": 3})["srcc"] == pytest.approx((0.9 + 3 * 0.5) / 4)
    with pytest.raises(DataError, match=r"no weight .* \['b'\]"):
        weighted_mean(med, {"a": 1})
    with pytest.raises(DataError, match="non-negative"):
        weighted_mean(med, {"a": 0, "b": 0})
