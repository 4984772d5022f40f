"""Effective robustness (Taori et al. 2020): fit, hand examples, transforms, bootstrap."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

from spurbench.evaluate.effective_robustness import (
    DEFAULT_EPS,
    BaselineFit,
    effective_robustness,
    effective_robustness_ci,
    fit_baseline,
    inverse_transform_accuracy,
    transform_accuracy,
)


def _synthetic(n: int, seed: int, noise: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    """Baseline models whose logit accuracies follow y = -0.5 + 1.1 x plus noise."""
    rng = np.random.default_rng(seed)
    x_t = rng.uniform(-0.5, 2.5, n)
    y_t = -0.5 + 1.1 * x_t + rng.normal(0.0, noise, n)
    return scipy.special.expit(x_t), scipy.special.expit(y_t)


@pytest.mark.parametrize("transform", ["logit", "probit"])
def test_fit_equals_linregress_on_transformed(transform: str) -> None:
    x, y = _synthetic(25, seed=1)
    fit = fit_baseline(x, y, transform=transform)
    tf = scipy.special.logit if transform == "logit" else scipy.stats.norm.ppf
    ref = scipy.stats.linregress(tf(x), tf(y))
    assert fit.slope == pytest.approx(ref.slope, rel=1e-12)
    assert fit.intercept == pytest.approx(ref.intercept, rel=1e-12)
    assert fit.r == pytest.approx(ref.rvalue, rel=1e-12)
    assert fit.stderr == pytest.approx(ref.stderr, rel=1e-12)
    assert fit.n == 25 and fit.transform == transform


def test_hand_example_logit() -> None:
    # Three baseline models with logit accuracies x_t = 0, 1, 2 and y_t = -1, 0, 2.
    # By hand: mean x_t = 1, mean y_t = 1/3; Sxx = 1 + 0 + 1 = 2;
    # Sxy = (-1)(-4/3) + 0 + (1)(5/3) = 3; slope = 3/2; intercept = 1/3 - 3/2 = -7/6.
    # Syy = 16/9 + 1/9 + 25/9 = 42/9, r = Sxy / sqrt(Sxx Syy) = 3 / sqrt(84/9) = 9 / sqrt(84).
    x = scipy.special.expit([0.0, 1.0, 2.0])
    y = scipy.special.expit([-1.0, 0.0, 2.0])
    fit = fit_baseline(x, y)
    assert fit.slope == pytest.approx(1.5)
    assert fit.intercept == pytest.approx(-7.0 / 6.0)
    assert fit.r == pytest.approx(9.0 / np.sqrt(84.0))
    # A model at x_t = 1 with 50 % shift accuracy: the trend predicts logit 1.5 - 7/6 = 1/3,
    # i.e. accuracy 1 / (1 + e^(-1/3)); its ER is 0.5 minus that.
    predicted = 1.0 / (1.0 + np.exp(-1.0 / 3.0))
    er = effective_robustness(fit, [scipy.special.expit(1.0)], [0.5])
    assert er == pytest.approx([0.5 - predicted])
    assert er[0] < 0  # below the trend


def test_hand_example_probit() -> None:
    # Four models with probit accuracies x_t = -1, 0, 1, 2 and y_t = -2, -1, 0, 1: an exact line
    # y_t = x_t - 1, so slope 1, intercept -1, r 1, and ER 0 on the line.
    x = scipy.stats.norm.cdf([-1.0, 0.0, 1.0, 2.0])
    y = scipy.stats.norm.cdf([-2.0, -1.0, 0.0, 1.0])
    fit = fit_baseline(x, y, transform="probit")
    assert fit.slope == pytest.approx(1.0)
    assert fit.intercept == pytest.approx(-1.0)
    assert fit.r == pytest.approx(1.0)
    np.testing.assert_allclose(effective_robustness(fit, x, y), 0.0, atol=1e-12)
    # At 50 % reference accuracy (probit 0) the trend predicts Phi(-1); a model with 30 % there
    # has ER 0.30 - Phi(-1).
    expected = 0.3 - scipy.stats.norm.cdf(-1.0)
    assert effective_robustness(fit, [0.5], [0.3]) == pytest.approx([expected])
    # logit and probit fits of the same data differ
    assert fit_baseline(x, y, transform="logit").slope != pytest.approx(1.0)


@pytest.mark.parametrize("transform", ["logit", "probit"])
def test_transform_roundtrip_and_clipping(transform: str) -> None:
    acc = np.array([0.0, 1e-5, 0.3, 0.5, 0.97, 1.0])
    z = transform_accuracy(acc, transform)
    assert np.all(np.isfinite(z))
    back = inverse_transform_accuracy(z, transform)
    np.testing.assert_allclose(back[2:5], acc[2:5])
    # exact 0 and 1 (and anything closer than eps) are clipped to eps and 1 - eps
    np.testing.assert_allclose(back[[0, 1, 5]], [DEFAULT_EPS, DEFAULT_EPS, 1 - DEFAULT_EPS])
    assert transform_accuracy(0.5, transform) == pytest.approx(0.0)


def test_rejects_percentages_and_bad_input() -> None:
    with pytest.raises(ValueError, match="divide percentages by 100"):
        transform_accuracy([67.1, 36.9])
    with pytest.raises(ValueError):
        transform_accuracy([0.5], transform="linear")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        fit_baseline([0.5, 0.6], [0.4, 0.5])  # too few models
    with pytest.raises(ValueError):
        fit_baseline([0.5, 0.5, 0.5], [0.4, 0.5, 0.3])  # no spread in x
    with pytest.raises(ValueError):
        fit_baseline([0.5, 0.6, 0.7], [0.4, 0.5])


def test_predict_is_vectorised_and_monotone() -> None:
    fit = fit_baseline(*_synthetic(20, seed=2))
    grid = np.linspace(0.3, 0.95, 50)
    pred = fit.predict(grid)
    assert pred.shape == grid.shape
    assert np.all(np.diff(pred) > 0)
    assert np.all((pred > 0) & (pred < 1))
    np.testing.assert_allclose(
        transform_accuracy(pred), fit.intercept + fit.slope * transform_accuracy(grid)
    )


def test_band_contains_fit_and_narrows_with_more_models() -> None:
    grid = scipy.special.expit(np.linspace(-0.5, 2.5, 40))
    widths = []
    for n in (8, 200):
        fit = fit_baseline(*_synthetic(n, seed=3))
        lo, hi = fit.band(grid, level=0.95, n_boot=1000, seed=0)
        line = fit.predict(grid)
        assert np.all(lo <= line) and np.all(line <= hi)
        assert np.all(lo < hi)
        widths.append(float(np.mean(hi - lo)))
    assert widths[1] < 0.5 * widths[0]


def test_band_is_seeded_and_level_orders() -> None:
    fit = fit_baseline(*_synthetic(15, seed=4))
    grid = np.array([0.4, 0.6, 0.8])
    a = fit.band(grid, seed=7)
    b = fit.band(grid, seed=7)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    lo90, hi90 = fit.band(grid, level=0.90, seed=7)
    assert np.all(lo90 >= a[0]) and np.all(hi90 <= a[1])


def test_bootstrap_coefficients_shape_and_degenerate_resamples() -> None:
    fit = fit_baseline(*_synthetic(30, seed=5))
    coef = fit.bootstrap_coefficients(n_boot=500, seed=0)
    assert coef.shape == (500, 2)
    assert abs(np.median(coef[:, 0]) - fit.slope) < 0.1
    # with 3 models about 1 in 9 resamples has a single distinct x and is dropped
    small = fit_baseline(scipy.special.expit([0.0, 1.0, 2.0]), scipy.special.expit([-1, 0, 2]))
    coef3 = small.bootstrap_coefficients(n_boot=900, seed=0)
    assert 700 < coef3.shape[0] < 900
    bare = BaselineFit(slope=1.0, intercept=0.0, r=1.0, n=3, transform="logit")
    with pytest.raises(ValueError):
        bare.bootstrap_coefficients()


def test_er_ci_contains_point_estimate_and_flags_outliers() -> None:
    x, y = _synthetic(40, seed=6, noise=0.1)
    fit = fit_baseline(x, y)
    # one model on the trend, one far above it
    xm = np.array([0.7, 0.7])
    ym = np.array([float(fit.predict(0.7)), 0.9])
    er, lo, hi = effective_robustness_ci(fit, xm, ym, n_boot=1000, seed=0)
    assert er.shape == lo.shape == hi.shape == (2,)
    assert np.all(lo <= er) and np.all(er <= hi)
    assert lo[0] < 0 < hi[0]  # on the trend: ER indistinguishable from 0
    assert lo[1] > 0  # far above: interval excludes 0
    np.testing.assert_allclose(er, effective_robustness(fit, xm, ym))
    # consistent with the band from the same resamples
    blo, bhi = fit.band(xm, n_boot=1000, seed=0)
    np.testing.assert_allclose(lo, ym - bhi)
    np.testing.assert_allclose(hi, ym - blo)


def test_below_identity() -> None:
    x = scipy.special.expit([0.0, 1.0, 2.0])
    below = fit_baseline(x, scipy.special.expit([-1.0, 0.0, 1.0]))
    assert below.below_identity(0.5, 0.9)
    crossing = fit_baseline(x, scipy.special.expit([-1.0, 1.0, 3.0]))  # y_t = 2 x_t - 1
    assert crossing.below_identity(0.3, 0.6)  # crosses y = x at x_t = 1 (73 %)
    assert not crossing.below_identity(0.3, 0.9)


@settings(max_examples=40, deadline=None)
@given(
    slope=st.floats(0.3, 1.5),
    intercept=st.floats(-1.5, 0.5),
    transform=st.sampled_from(["logit", "probit"]),
)
def test_exact_line_is_recovered(slope: float, intercept: float, transform: str) -> None:
    x_t = np.linspace(-1.0, 1.5, 6)
    y_t = intercept + slope * x_t
    x = inverse_transform_accuracy(x_t, transform)  # type: ignore[arg-type]
    y = inverse_transform_accuracy(y_t, transform)  # type: ignore[arg-type]
    fit = fit_baseline(x, y, transform=transform)  # type: ignore[arg-type]
    assert fit.slope == pytest.approx(slope, abs=1e-6)
    assert fit.intercept == pytest.approx(intercept, abs=1e-6)
    np.testing.assert_allclose(effective_robustness(fit, x, y), 0.0, atol=1e-7)
