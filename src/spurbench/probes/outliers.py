"""Outlier features in a representation space: kurtosis, a rotation control, outlier dimensions.

Follows the outlier-feature probe of Crabbé, Rodríguez, Shankar, Zappella & Blaas,
*Interpreting CLIP: Insights on the Robustness to ImageNet Distribution Shifts* (TMLR 2024;
arXiv:2310.13040, v1 titled *Robust multimodal models have outlier features and encode more
concepts*). Their observation: robust zero-shot CLIP encoders have a few representation
dimensions whose activations are orders of magnitude above the rest. A heavy-tailed activation
profile shows up as a large kurtosis of each image's feature vector (a Gaussian gives 3).

Why a rotation control: outlier features are a property of a *privileged basis* (the coordinate
axes of the representation). Rotating every feature vector by the same Haar-random orthogonal
matrix preserves all inner products, and hence everything a linear head can read, but spreads
each outlier coordinate over all axes, so per-image kurtosis drops to ≈3. If it does not drop,
the heavy tails are not an axis-aligned phenomenon and "outlier features" is the wrong reading.

Everything here works in float64 on chunks of rows, so feature matrices that are float32
memmaps larger than memory can be probed without materialising a float64 copy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np

__all__ = [
    "KurtosisAccumulator",
    "KurtosisSummary",
    "OutlierReport",
    "activation_kurtosis",
    "kurtosis_summary",
    "outlier_dimensions",
    "random_rotation",
]

DEFAULT_CHUNK = 8192


def _check_2d(H: np.ndarray, name: str = "H") -> np.ndarray:
    """Validate a (n_images, d) feature matrix without copying it."""
    H = np.asarray(H)
    if H.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_images, d), got shape {H.shape}")
    if H.shape[0] == 0 or H.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {H.shape}")
    return H


def _row_chunks(n: int, chunk_size: int):
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be ≥ 1, got {chunk_size}")
    for start in range(0, n, chunk_size):
        yield start, min(start + chunk_size, n)


def _row_kurtosis(X: np.ndarray) -> np.ndarray:
    """Pearson kurtosis of each row, two-pass (centre first) in float64 for accuracy.

    Rows with zero variance have undefined kurtosis and give NaN.
    """
    X = np.asarray(X, dtype=np.float64)
    c = X - X.mean(axis=1, keepdims=True)
    c2 = c * c
    m2 = c2.mean(axis=1)
    m4 = (c2 * c2).mean(axis=1)
    out = np.full(X.shape[0], np.nan)
    ok = m2 > 0
    out[ok] = m4[ok] / (m2[ok] * m2[ok])
    return out


class KurtosisAccumulator:
    """Streaming per-dimension Pearson kurtosis over images, via mergeable central moments.

    Why central moments and not raw power sums: features have non-zero means and a few huge
    coordinates, and Σx⁴ − 4μΣx³ + … cancels catastrophically. Each chunk's central moments are
    computed two-pass in float64 and merged with the pairwise update of Chan et al. / Pébay
    (2008), which is as accurate as a one-shot two-pass computation.

    Usage::

        acc = KurtosisAccumulator()
        for chunk in chunks:          # each (n_chunk, d)
            acc.update(chunk)
        kappa = acc.result()          # (d,), 3 for Gaussian columns
    """

    def __init__(self) -> None:
        self.count: int = 0
        self._mean: np.ndarray | None = None
        self._m2: np.ndarray | None = None
        self._m3: np.ndarray | None = None
        self._m4: np.ndarray | None = None

    @property
    def dim(self) -> int | None:
        """Feature dimension seen so far (None before the first update)."""
        return None if self._mean is None else int(self._mean.shape[0])

    @property
    def mean(self) -> np.ndarray:
        """Running per-dimension mean."""
        self._require_data()
        assert self._mean is not None
        return self._mean.copy()

    @property
    def variance(self) -> np.ndarray:
        """Running per-dimension population variance (ddof=0)."""
        self._require_data()
        assert self._m2 is not None
        return self._m2 / self.count

    def _require_data(self) -> None:
        if self.count == 0:
            raise ValueError("KurtosisAccumulator has seen no data")

    def update(self, H_chunk: np.ndarray) -> KurtosisAccumulator:
        """Fold a (n_chunk, d) block of images into the running moments; returns self."""
        X = np.asarray(H_chunk, dtype=np.float64)
        if X.ndim == 1:
            X = X[None, :]
        if X.ndim != 2:
            raise ValueError(f"chunk must be 2-D (n_chunk, d), got shape {X.shape}")
        if X.shape[0] == 0:
            return self
        if self._mean is not None and X.shape[1] != self._mean.shape[0]:
            raise ValueError(f"chunk has d={X.shape[1]}, accumulator has d={self._mean.shape[0]}")
        nb = X.shape[0]
        mean_b = X.mean(axis=0)
        c = X - mean_b
        c2 = c * c
        m2b = c2.sum(axis=0)
        m3b = (c2 * c).sum(axis=0)
        m4b = (c2 * c2).sum(axis=0)
        self._merge(nb, mean_b, m2b, m3b, m4b)
        return self

    def merge(self, other: KurtosisAccumulator) -> KurtosisAccumulator:
        """Fold another accumulator's moments into this one (for parallel shards); returns self."""
        if other.count == 0:
            return self
        assert other._mean is not None and other._m2 is not None
        assert other._m3 is not None and other._m4 is not None
        if self._mean is not None and other._mean.shape != self._mean.shape:
            raise ValueError("cannot merge accumulators of different dimension")
        self._merge(other.count, other._mean, other._m2, other._m3, other._m4)
        return self

    def _merge(
        self, nb: int, mean_b: np.ndarray, m2b: np.ndarray, m3b: np.ndarray, m4b: np.ndarray
    ) -> None:
        if self.count == 0:
            self.count = int(nb)
            self._mean, self._m2 = mean_b.copy(), m2b.copy()
            self._m3, self._m4 = m3b.copy(), m4b.copy()
            return
        assert self._mean is not None and self._m2 is not None
        assert self._m3 is not None and self._m4 is not None
        na = float(self.count)
        nbf = float(nb)
        n = na + nbf
        delta = mean_b - self._mean
        d2 = delta * delta
        m2a, m3a, m4a = self._m2, self._m3, self._m4
        m4 = (
            m4a
            + m4b
            + d2 * d2 * na * nbf * (na * na - na * nbf + nbf * nbf) / n**3
            + 6.0 * d2 * (na * na * m2b + nbf * nbf * m2a) / n**2
            + 4.0 * delta * (na * m3b - nbf * m3a) / n
        )
        m3 = (
            m3a
            + m3b
            + d2 * delta * na * nbf * (na - nbf) / n**2
            + 3.0 * delta * (na * m2b - nbf * m2a) / n
        )
        m2 = m2a + m2b + d2 * na * nbf / n
        self._mean = self._mean + delta * nbf / n
        self._m2, self._m3, self._m4 = m2, m3, m4
        self.count = int(n)

    def result(self) -> np.ndarray:
        """Per-dimension Pearson kurtosis n·M4/M2² (biased, like scipy's default); NaN if σ=0."""
        self._require_data()
        assert self._m2 is not None and self._m4 is not None
        out = np.full(self._m2.shape, np.nan)
        ok = self._m2 > 0
        out[ok] = self.count * self._m4[ok] / (self._m2[ok] * self._m2[ok])
        return out


def activation_kurtosis(
    H: np.ndarray,
    axis: Literal["image", "dimension"] = "image",
    *,
    chunk_size: int = DEFAULT_CHUNK,
) -> np.ndarray:
    """Pearson (non-excess) kurtosis κ = E[(x−μ)⁴]/σ⁴ of activations; 3 for a Gaussian.

    ``axis="image"``: one κ per image, over that image's d coordinates — the outlier-feature
    signature (a handful of coordinates far above the rest makes the profile heavy-tailed).
    ``axis="dimension"``: one κ per coordinate, over images — whether a unit fires rarely but
    hugely. Both are population (biased) estimators, matching
    ``scipy.stats.kurtosis(..., fisher=False)``; zero-variance rows/columns give NaN.

    Rows are processed ``chunk_size`` at a time in float64, so H may be a float32 memmap.
    """
    H = _check_2d(H)
    if axis == "image":
        out = np.empty(H.shape[0])
        for s, e in _row_chunks(H.shape[0], chunk_size):
            out[s:e] = _row_kurtosis(H[s:e])
        return out
    if axis == "dimension":
        acc = KurtosisAccumulator()
        for s, e in _row_chunks(H.shape[0], chunk_size):
            acc.update(H[s:e])
        return acc.result()
    raise ValueError(f"axis must be 'image' or 'dimension', got {axis!r}")


def random_rotation(d: int, seed: int | np.random.Generator | None = 0) -> np.ndarray:
    """Haar-distributed random orthogonal d×d matrix (float64), deterministic in ``seed``.

    QR of a standard Gaussian matrix, with Q's columns multiplied by sign(diag R). Without the
    sign fix LAPACK's Householder QR returns a Q that is *not* Haar (e.g. Q[0,0] is always
    negative), i.e. a rotation with a preferred orientation — the very thing the control is
    meant to rule out (Mezzadri 2007).
    """
    if int(d) != d or d < 1:
        raise ValueError(f"d must be a positive integer, got {d}")
    rng = np.random.default_rng(seed)
    G = rng.standard_normal((int(d), int(d)))
    Q, R = np.linalg.qr(G)
    signs = np.sign(np.diag(R))
    signs[signs == 0] = 1.0
    return Q * signs[None, :]


@dataclass(frozen=True)
class KurtosisSummary:
    """Kurtosis statistics of a feature matrix, with the random-rotation control.

    ``*_rotated`` fields are computed on H·R for a Haar-random orthogonal R (same R for all
    images). Outlier features give mean_image_kurtosis ≫ 3 and mean_image_kurtosis_rotated ≈ 3.
    NaNs (constant rows / dead dimensions) are ignored in the means and medians; the counts of
    such rows/dimensions are reported so they are not silently lost.
    """

    n_images: int
    dim: int
    mean_image_kurtosis: float
    median_image_kurtosis: float
    mean_image_kurtosis_rotated: float
    median_image_kurtosis_rotated: float
    mean_dimension_kurtosis: float
    max_dimension_kurtosis: float
    n_constant_images: int
    n_constant_dimensions: int
    rotation_seed: int

    def as_dict(self) -> dict[str, float | int]:
        """Plain dict, for tables and JSON."""
        return asdict(self)


def _nan_stat(fn, x: np.ndarray) -> float:
    return float(fn(x)) if np.any(np.isfinite(x)) else float("nan")


def kurtosis_summary(
    H: np.ndarray, seed: int = 0, *, chunk_size: int = DEFAULT_CHUNK
) -> KurtosisSummary:
    """Per-image and per-dimension kurtosis of H, plus the rotation control (see module doc)."""
    H = _check_2d(H)
    n, d = H.shape
    R = random_rotation(d, seed)
    k_img = np.empty(n)
    k_rot = np.empty(n)
    acc = KurtosisAccumulator()
    for s, e in _row_chunks(n, chunk_size):
        X = np.asarray(H[s:e], dtype=np.float64)
        k_img[s:e] = _row_kurtosis(X)
        k_rot[s:e] = _row_kurtosis(X @ R)
        acc.update(X)
    k_dim = acc.result()
    return KurtosisSummary(
        n_images=int(n),
        dim=int(d),
        mean_image_kurtosis=_nan_stat(np.nanmean, k_img),
        median_image_kurtosis=_nan_stat(np.nanmedian, k_img),
        mean_image_kurtosis_rotated=_nan_stat(np.nanmean, k_rot),
        median_image_kurtosis_rotated=_nan_stat(np.nanmedian, k_rot),
        mean_dimension_kurtosis=_nan_stat(np.nanmean, k_dim),
        max_dimension_kurtosis=_nan_stat(np.nanmax, k_dim),
        n_constant_images=int(np.isnan(k_img).sum()),
        n_constant_dimensions=int(np.isnan(k_dim).sum()),
        rotation_seed=int(seed),
    )


@dataclass(frozen=True)
class OutlierReport:
    """Which coordinates behave as outlier features, and how extreme they are.

    Fields:
        dims: outlier dimension indices, most frequent first (ties by index).
        frequencies: for each of ``dims``, the fraction of images in which it exceeded the
            threshold.
        frequency_all: that fraction for every dimension, shape (d,).
        mean_abs_activation: E_x |h_j(x)| per dimension, shape (d,).
        max_median_ratio: max_j E|h_j| / median_j E|h_j| — how many times the loudest
            coordinate exceeds a typical one ("orders of magnitude above average" in the paper).
        threshold_mode, k_sigma, absolute_threshold, min_fraction: the criterion used.
        n_images: number of images scanned.
    """

    dims: np.ndarray
    frequencies: np.ndarray
    frequency_all: np.ndarray = field(repr=False)
    mean_abs_activation: np.ndarray = field(repr=False)
    max_median_ratio: float
    threshold_mode: str
    k_sigma: float
    absolute_threshold: float
    min_fraction: float
    n_images: int

    @property
    def n_outliers(self) -> int:
        """Number of outlier dimensions found."""
        return int(self.dims.size)


def outlier_dimensions(
    H: np.ndarray,
    k_sigma: float = 6.0,
    min_fraction: float = 0.25,
    *,
    threshold_mode: Literal["sigma", "absolute"] = "sigma",
    absolute_threshold: float = 6.0,
    chunk_size: int = DEFAULT_CHUNK,
) -> OutlierReport:
    """Dimensions whose |activation| is extreme in at least ``min_fraction`` of images.

    ``threshold_mode="sigma"`` (default): coordinate j of image x is extreme when
    |h_j(x)| > k_sigma · σ(x), σ(x) the standard deviation of x's own feature vector. Being
    relative to each image, it is scale-free, so models with differently scaled features (and
    L2-normalised embeddings) are comparable. ``threshold_mode="absolute"``: |h_j(x)| >
    ``absolute_threshold``, the LLM.int8() criterion (Dettmers et al. 2022, magnitude ≥ 6); it
    depends on the feature scale, so only use it on un-normalised pre-head activations.

    Note |h_j| is not centred by the image mean (per the outlier-feature literature); for
    CLIP features the per-image mean over coordinates is close to zero anyway.
    """
    H = _check_2d(H)
    if threshold_mode not in ("sigma", "absolute"):
        raise ValueError(f"threshold_mode must be 'sigma' or 'absolute', got {threshold_mode!r}")
    if not 0.0 < min_fraction <= 1.0:
        raise ValueError(f"min_fraction must be in (0, 1], got {min_fraction}")
    if k_sigma <= 0 or absolute_threshold <= 0:
        raise ValueError("k_sigma and absolute_threshold must be positive")
    n, d = H.shape
    exceed = np.zeros(d, dtype=np.int64)
    abs_sum = np.zeros(d)
    for s, e in _row_chunks(n, chunk_size):
        x = np.asarray(H[s:e], dtype=np.float64)
        mag = np.abs(x)
        abs_sum += mag.sum(axis=0)
        if threshold_mode == "sigma":
            thr = k_sigma * x.std(axis=1, keepdims=True)
            hit = (mag > thr) & (thr > 0)
        else:
            hit = mag > absolute_threshold
        exceed += hit.sum(axis=0)
    freq = exceed / n
    mean_abs = abs_sum / n
    med = float(np.median(mean_abs))
    ratio = float(mean_abs.max() / med) if med > 0 else float("inf")
    cand = np.flatnonzero(freq >= min_fraction)
    order = np.lexsort((cand, -freq[cand]))
    dims = cand[order]
    return OutlierReport(
        dims=dims,
        frequencies=freq[dims],
        frequency_all=freq,
        mean_abs_activation=mean_abs,
        max_median_ratio=ratio,
        threshold_mode=threshold_mode,
        k_sigma=float(k_sigma),
        absolute_threshold=float(absolute_threshold),
        min_fraction=float(min_fraction),
        n_images=int(n),
    )
