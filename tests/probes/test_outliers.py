"""Ground-truth tests for spurbench.probes.outliers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from spurbench.probes import (
    KurtosisAccumulator,
    activation_kurtosis,
    kurtosis_summary,
    outlier_dimensions,
    random_rotation,
)


def _skewed(seed: int, n: int = 300, d: int = 40) -> np.ndarray:
    """Non-Gaussian, offset, heteroscedastic data so kurtosis is far from 3 and varies."""
    rng = np.random.default_rng(seed)
    X = rng.exponential(size=(n, d)) ** 1.5 * rng.uniform(0.5, 4.0, size=d) + 7.0
    return X


def _planted(seed: int = 0, n: int = 300, d: int = 768, n_out: int = 6):
    rng = np.random.default_rng(seed)
    dims = np.sort(rng.choice(d, n_out, replace=False))
    H = rng.standard_normal((n, d))
    H[:, dims] *= 50.0
    return H, dims


@pytest.mark.parametrize("axis,scipy_axis", [("image", 1), ("dimension", 0)])
def test_kurtosis_matches_scipy(axis: str, scipy_axis: int) -> None:
    X = _skewed(0)
    expected = stats.kurtosis(X, axis=scipy_axis, fisher=False)
    got = activation_kurtosis(X, axis=axis)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    # the data is genuinely non-Gaussian, so this is not a comparison of 3s
    assert np.ptp(expected) > 1.0


@pytest.mark.parametrize("axis", ["image", "dimension"])
def test_kurtosis_chunking_and_float32(axis: str) -> None:
    X = _skewed(1).astype(np.float32)
    scipy_axis = 1 if axis == "image" else 0
    expected = stats.kurtosis(X.astype(np.float64), axis=scipy_axis, fisher=False)
    for chunk in (1, 7, 10_000):
        np.testing.assert_allclose(
            activation_kurtosis(X, axis=axis, chunk_size=chunk), expected, atol=1e-6
        )


def test_accumulator_streaming_equals_one_shot() -> None:
    X = _skewed(2, n=503)
    one_shot = activation_kurtosis(X, axis="dimension")
    rng = np.random.default_rng(0)
    cuts = np.sort(rng.choice(np.arange(1, X.shape[0]), size=12, replace=False))
    acc = KurtosisAccumulator()
    for part in np.split(X, cuts):
        acc.update(part)
    assert acc.count == X.shape[0]
    np.testing.assert_allclose(acc.result(), one_shot, atol=1e-9)
    np.testing.assert_allclose(acc.mean, X.mean(axis=0), atol=1e-9)
    np.testing.assert_allclose(acc.variance, X.var(axis=0), rtol=1e-10)

    # merging shards equals a single pass
    a, b = KurtosisAccumulator().update(X[:100]), KurtosisAccumulator().update(X[100:])
    np.testing.assert_allclose(a.merge(b).result(), one_shot, atol=1e-9)


def test_accumulator_is_stable_under_large_offset() -> None:
    """Raw power sums would lose all digits here; merged central moments must not."""
    rng = np.random.default_rng(3)
    X = rng.standard_t(df=6, size=(4000, 5)) + 1e6
    acc = KurtosisAccumulator()
    for part in np.array_split(X, 37):
        acc.update(part)
    np.testing.assert_allclose(acc.result(), stats.kurtosis(X, axis=0, fisher=False), atol=1e-6)


def test_accumulator_rejects_misuse() -> None:
    acc = KurtosisAccumulator()
    with pytest.raises(ValueError):
        acc.result()
    acc.update(np.ones((3, 4)))
    with pytest.raises(ValueError):
        acc.update(np.ones((3, 5)))
    assert np.isnan(acc.result()).all()  # constant columns have no kurtosis


def test_invalid_axis() -> None:
    with pytest.raises(ValueError):
        activation_kurtosis(np.ones((3, 3)), axis="rows")  # type: ignore[arg-type]


def test_planted_outliers() -> None:
    H, dims = _planted()
    summary = kurtosis_summary(H, seed=0)
    assert summary.mean_image_kurtosis > 50.0
    assert summary.median_image_kurtosis > 50.0
    # the rotation control: same inner products, no privileged basis, κ back to Gaussian
    assert abs(summary.mean_image_kurtosis_rotated - 3.0) < 0.3
    assert abs(summary.median_image_kurtosis_rotated - 3.0) < 0.3
    # scaled Gaussian columns are still Gaussian *across images*: per-dimension κ stays ≈ 3
    assert abs(summary.mean_dimension_kurtosis - 3.0) < 0.2
    assert summary.n_images == H.shape[0] and summary.dim == H.shape[1]

    report = outlier_dimensions(H)
    assert set(report.dims.tolist()) == set(dims.tolist())
    assert report.n_outliers == dims.size
    assert np.all(report.frequencies >= 0.25)
    assert np.all(np.diff(report.frequencies) <= 0)  # most frequent first
    np.testing.assert_array_equal(report.frequency_all[report.dims], report.frequencies)
    assert report.frequency_all[np.setdiff1d(np.arange(H.shape[1]), dims)].max() == 0.0
    # E|50 z| / median_j E|z_j| ≈ 50
    assert 40.0 < report.max_median_ratio < 60.0


def test_gaussian_has_no_outliers() -> None:
    rng = np.random.default_rng(11)
    H = rng.standard_normal((400, 256))
    summary = kurtosis_summary(H, seed=1)
    assert abs(summary.mean_image_kurtosis - 3.0) < 0.1
    assert abs(summary.mean_image_kurtosis_rotated - 3.0) < 0.1
    assert abs(summary.mean_dimension_kurtosis - 3.0) < 0.1
    report = outlier_dimensions(H)
    assert report.n_outliers == 0
    assert report.max_median_ratio < 1.3


def test_outlier_frequency_threshold_and_absolute_mode() -> None:
    rng = np.random.default_rng(5)
    H = 0.5 * rng.standard_normal((200, 64))
    H[:40, 5] = 100.0  # 20% of images
    H[:, 9] = 10.0  # every image, moderate absolute size
    sigma_report = outlier_dimensions(H, min_fraction=0.25)
    assert 5 not in sigma_report.dims
    assert 5 in outlier_dimensions(H, min_fraction=0.1).dims
    assert sigma_report.frequency_all[5] == pytest.approx(0.2)

    absolute = outlier_dimensions(H, threshold_mode="absolute", min_fraction=0.1)
    np.testing.assert_array_equal(absolute.dims, [9, 5])  # 100% then 20%
    np.testing.assert_allclose(absolute.frequencies, [1.0, 0.2])
    assert outlier_dimensions(H, threshold_mode="absolute", absolute_threshold=200).n_outliers == 0
    with pytest.raises(ValueError):
        outlier_dimensions(H, threshold_mode="int8")  # type: ignore[arg-type]


def test_random_rotation_orthogonal_and_seeded() -> None:
    R = random_rotation(50, seed=4)
    np.testing.assert_allclose(R @ R.T, np.eye(50), atol=1e-12)
    np.testing.assert_allclose(R.T @ R, np.eye(50), atol=1e-12)
    np.testing.assert_array_equal(R, random_rotation(50, seed=4))
    assert not np.allclose(R, random_rotation(50, seed=5))


def test_random_rotation_is_haar_not_biased_qr() -> None:
    """Without the sign fix, numpy's QR gives Q[0, 0] < 0 almost always."""
    first = np.array([random_rotation(3, seed=s)[0, 0] for s in range(400)])
    assert abs(first.mean()) < 0.1
    assert 0.35 < (first > 0).mean() < 0.65


def test_sigma_threshold_is_exact() -> None:
    # a one-hot vector a·e₀ in d dims has σ = a·√(d−1)/d, so |a| > 6σ ⇔ d > 6√(d−1):
    # true for d = 36 (6√35 ≈ 35.50), false for d = 34 (6√33 ≈ 34.47).
    for d, expected in ((36, [0]), (34, [])):
        H = np.zeros((4, d))
        H[:, 0] = 3.0
        report = outlier_dimensions(H, k_sigma=6.0, min_fraction=1.0)
        assert report.dims.tolist() == expected

    rng = np.random.default_rng(8)
    H = rng.standard_t(df=3, size=(150, 40))
    by_hand = (np.abs(H) > 3.0 * H.std(axis=1, keepdims=True)).mean(axis=0)
    np.testing.assert_allclose(outlier_dimensions(H, k_sigma=3.0).frequency_all, by_hand)
