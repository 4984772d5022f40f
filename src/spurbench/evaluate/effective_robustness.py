"""Effective robustness: accuracy under a shift beyond what in-distribution accuracy predicts.

Method of Taori, Dave, Shankar, Carlini, Recht & Schmidt, *Measuring Robustness to Natural
Distribution Shifts in Image Classification* (NeurIPS 2020), as implemented in their
imagenet-testbed (github.com/modestyachts/imagenet-testbed, ``plotting/plotter.py``):

1. map accuracies through logit (default) or probit, where shift accuracy is close to linear in
   reference accuracy across many models;
2. fit ordinary least squares ``T(y) = intercept + slope * T(x)`` over a *baseline* set of models
   (e.g. the ImageNet-trained models of a testbed);
3. a model's effective robustness (ER) is ``y - T⁻¹(intercept + slope * T(x))``: its shift
   accuracy minus the accuracy the baseline trend predicts at its reference accuracy, in accuracy
   units (fractions here);
4. uncertainty of the trend comes from a bootstrap over baseline models (resampled with
   replacement, seeded), giving a percentile band of the fitted line and percentile intervals of
   each model's ER. As in imagenet-testbed, the lower bound takes the "lower" and the upper bound
   the "higher" order statistic, so intervals are never narrower than the empirical quantiles.

In spurbench the same machinery reads "counter-background accuracy" for "shift accuracy" and
"common-background accuracy" for "reference accuracy" (CounterAnimal, Wang et al. 2024), and the
ImageNet / ImageNet-shift numbers of :mod:`spurbench.reference.testbed` for the original use.

Accuracies are fractions in [0, 1]. Exact 0 or 1 have no logit/probit, so they are clipped to
``[eps, 1 - eps]`` with ``eps = 1e-4`` by default: published accuracies are given to 0.01 %, so
1e-4 is the smallest non-zero value a published figure can take, and clipping there treats "0.00 %"
as "below reporting resolution" rather than as minus infinity.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import scipy.special
import scipy.stats
from numpy.typing import ArrayLike

Transform = Literal["logit", "probit"]
TRANSFORMS: tuple[str, ...] = ("logit", "probit")
DEFAULT_EPS = 1e-4
DEFAULT_N_BOOT = 1000


def _check_transform(transform: str) -> None:
    if transform not in TRANSFORMS:
        raise ValueError(f"transform must be one of {TRANSFORMS}, got {transform!r}")


def _as_accuracy(acc: ArrayLike, name: str = "accuracy") -> np.ndarray:
    """Validate accuracies as fractions; percentages are the most likely caller mistake."""
    a = np.asarray(acc, dtype=float)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains non-finite values")
    if np.any(a < 0.0) or np.any(a > 1.0):
        raise ValueError(
            f"{name} must be fractions in [0, 1] (got range {a.min():g}..{a.max():g}; "
            "divide percentages by 100)"
        )
    return a


def transform_accuracy(
    acc: ArrayLike, transform: Transform = "logit", eps: float = DEFAULT_EPS
) -> np.ndarray:
    """Map accuracies in [0, 1] to the logit or probit scale, clipping to [eps, 1 - eps] first."""
    _check_transform(transform)
    if not 0.0 < eps < 0.5:
        raise ValueError(f"eps must be in (0, 0.5), got {eps}")
    a = np.clip(_as_accuracy(acc), eps, 1.0 - eps)
    if transform == "logit":
        return scipy.special.logit(a)
    return scipy.stats.norm.ppf(a)


def inverse_transform_accuracy(z: ArrayLike, transform: Transform = "logit") -> np.ndarray:
    """Map transformed values back to accuracies in [0, 1] (expit or the normal CDF)."""
    _check_transform(transform)
    z = np.asarray(z, dtype=float)
    if transform == "logit":
        return scipy.special.expit(z)
    return scipy.stats.norm.cdf(z)


def _interval(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over axis 0, conservative order statistics as in imagenet-testbed."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    alpha = (1.0 - level) / 2.0
    lo = np.quantile(samples, alpha, axis=0, method="lower")
    hi = np.quantile(samples, 1.0 - alpha, axis=0, method="higher")
    return lo, hi


@dataclass(frozen=True, eq=False)
class BaselineFit:
    """A linear trend ``T(y) = intercept + slope * T(x)`` fitted over baseline models.

    Keeps the transformed baseline points so that bootstrap bands and ER intervals can be drawn
    later from the same fit without the caller re-supplying the data.
    """

    slope: float
    intercept: float
    r: float
    n: int
    transform: Transform
    eps: float = DEFAULT_EPS
    stderr: float = float("nan")
    x_t: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    y_t: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)

    def predict_transformed(self, x_acc: ArrayLike) -> np.ndarray:
        """The trend on the transformed scale (what is drawn on logit/probit-scaled axes)."""
        return self.intercept + self.slope * transform_accuracy(x_acc, self.transform, self.eps)

    def predict(self, x_acc: ArrayLike) -> np.ndarray:
        """Shift accuracy the baseline trend predicts at reference accuracy ``x_acc`` ([0, 1])."""
        return inverse_transform_accuracy(self.predict_transformed(x_acc), self.transform)

    def bootstrap_coefficients(self, n_boot: int = DEFAULT_N_BOOT, seed: int = 0) -> np.ndarray:
        """(slope, intercept) refitted on ``n_boot`` resamples of the baseline models.

        All resamples are fitted at once with the closed-form OLS solution. Resamples whose x
        values are all equal (possible with very few baseline models) have no defined slope and
        are dropped, so the result may have fewer than ``n_boot`` rows.
        """
        if n_boot < 1:
            raise ValueError(f"n_boot must be >= 1, got {n_boot}")
        if self.x_t.size != self.n:
            raise ValueError("BaselineFit has no baseline points; build it with fit_baseline")
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, self.n, size=(n_boot, self.n))
        xb, yb = self.x_t[idx], self.y_t[idx]
        dx = xb - xb.mean(axis=1, keepdims=True)
        dy = yb - yb.mean(axis=1, keepdims=True)
        sxx = np.einsum("ij,ij->i", dx, dx)
        sxy = np.einsum("ij,ij->i", dx, dy)
        ok = sxx > 1e-12 * max(1.0, float(np.max(sxx)))
        slope = sxy[ok] / sxx[ok]
        intercept = yb[ok].mean(axis=1) - slope * xb[ok].mean(axis=1)
        if slope.size == 0:
            raise ValueError("every bootstrap resample was degenerate; need more baseline models")
        return np.column_stack([slope, intercept])

    def band(
        self,
        x_grid: ArrayLike,
        level: float = 0.95,
        n_boot: int = DEFAULT_N_BOOT,
        seed: int = 0,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Bootstrap confidence band (lower, upper) of the fitted line, as accuracies on x_grid."""
        coef = self.bootstrap_coefficients(n_boot, seed)
        t = transform_accuracy(x_grid, self.transform, self.eps)
        z = coef[:, 1:2] + coef[:, 0:1] * t[np.newaxis, :]
        lo, hi = _interval(z, level)
        return (
            inverse_transform_accuracy(lo, self.transform),
            inverse_transform_accuracy(hi, self.transform),
        )

    def below_identity(self, x_lo: float, x_hi: float) -> bool:
        """True if the trend lies strictly below y = x for every reference accuracy in the range.

        The trend is a line on the transformed scale and y = x is the identity there too, so their
        difference is linear in T(x): checking the two ends of the range is exact.
        """
        ends = np.array([x_lo, x_hi], dtype=float)
        gap = self.predict_transformed(ends) - transform_accuracy(ends, self.transform, self.eps)
        return bool(np.all(gap < 0.0))


def fit_baseline(
    x_acc: ArrayLike,
    y_acc: ArrayLike,
    transform: Transform = "logit",
    eps: float = DEFAULT_EPS,
) -> BaselineFit:
    """Fit the baseline trend of shift accuracy ``y_acc`` on reference accuracy ``x_acc``.

    Both are fractions in [0, 1], one entry per baseline model. Uses ``scipy.stats.linregress`` on
    the transformed values, exactly as imagenet-testbed does, so slopes are comparable with theirs.
    """
    x_t = transform_accuracy(x_acc, transform, eps).ravel()
    y_t = transform_accuracy(y_acc, transform, eps).ravel()
    if x_t.shape != y_t.shape:
        raise ValueError(f"x_acc and y_acc differ in size: {x_t.size} vs {y_t.size}")
    if x_t.size < 3:
        raise ValueError(f"need at least 3 baseline models for a trend, got {x_t.size}")
    if np.ptp(x_t) == 0.0:
        raise ValueError("all baseline models have the same reference accuracy; slope undefined")
    res = scipy.stats.linregress(x_t, y_t)
    return BaselineFit(
        slope=float(res.slope),
        intercept=float(res.intercept),
        r=float(res.rvalue),
        n=int(x_t.size),
        transform=transform,
        eps=eps,
        stderr=float(res.stderr),
        x_t=x_t,
        y_t=y_t,
    )


def effective_robustness(fit: BaselineFit, x_acc: ArrayLike, y_acc: ArrayLike) -> np.ndarray:
    """ER = y - predict(x), in accuracy units (fractions); positive = above the baseline trend."""
    y = _as_accuracy(y_acc, "y_acc")
    return y - fit.predict(x_acc)


def effective_robustness_ci(
    fit: BaselineFit,
    x_acc: ArrayLike,
    y_acc: ArrayLike,
    level: float = 0.95,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ER of each model with a bootstrap interval from resampling the baseline models.

    Returns (er, lower, upper). The interval reflects uncertainty in the baseline trend only, not
    the finite test set of the evaluated model; with the same ``seed`` it uses the same resamples
    as :meth:`BaselineFit.band`, so a model whose interval excludes 0 lies outside the band.
    """
    x = _as_accuracy(x_acc, "x_acc")
    y = _as_accuracy(y_acc, "y_acc")
    coef = fit.bootstrap_coefficients(n_boot, seed)
    t = np.atleast_1d(transform_accuracy(x, fit.transform, fit.eps))
    pred = inverse_transform_accuracy(coef[:, 1:2] + coef[:, 0:1] * t[np.newaxis, :], fit.transform)
    er_boot = np.atleast_1d(y)[np.newaxis, :] - pred
    lo, hi = _interval(er_boot, level)
    er = effective_robustness(fit, x, y)
    return er, lo.reshape(np.shape(er)), hi.reshape(np.shape(er))
