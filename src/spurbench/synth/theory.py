r"""The linear-model theory of CounterAnimal (Sec. 6, Theorem 6.2), made executable.

Source: Q. Wang, Y. Lin, Y. Chen, L. Schmidt, B. Han, T. Zhang, *A Sober Look at the Robustness of
CLIPs to Spurious Features*, NeurIPS 2024 (arXiv:2403.11497). The paper argues that the CLIP
objective by itself buys no robustness to a spurious feature that co-occurs with the label in the
pre-training data. Theorem 6.2, as printed (Sec. 6 and App. D), is a pair of **lower bounds**,
each holding with probability ``1 - o(1)``:

* OOD test samples (``p_spu = 1/2``) whose spurious attribute disagrees with the label (a != y):
  zero-shot **error >= 1 - Phi(kappa_1) - o(1)**;
* samples with a = y: zero-shot **accuracy >= 1 - Phi(kappa_2) - o(1)**;

.. math::

    \kappa_1 = (\sigma_{inv}^2 + 2 - 2\mu_{spu}p_{spu}) / D, \qquad
    \kappa_2 = (-2\mu_{spu}p_{spu} - \sigma_{inv}^2) / D,

    D = \sqrt{(1+\sigma_{inv}^2)^2\sigma_{inv}^2 + (2\mu_{spu}p_{spu}-1)^2\sigma_{spu}^2},

under four assumptions, all of them needed (:func:`check_assumptions` says which ones a parameter
point meets):

1. ``sigma_inv = Theta(1)`` and ``sigma_inv > sigma_spu``;
2. strong correlation, ``p_spu = 1 - o(1)``;
3. over-parameterisation, ``n = omega(1)``, ``d_image = Omega(n)``, ``d_text = Omega(n)``;
4. a large spurious feature, ``mu_spu >= (sigma_inv^2 + 2) / 2 >= mu_inv = 1``.

Under assumption 4 the numerator of kappa_1 is <= 0 as ``p_spu -> 1``, so the error is at least
about one half: CLIP *must* fail on the counter samples. The theorem does not say the error
*equals* ``1 - Phi(kappa_1)``, and says nothing at points outside its assumptions.
:func:`kappa1`, :func:`kappa2`, :func:`theory_bound` and :func:`accuracy_bound` are the printed
formulas verbatim. The assumptions are asymptotic; :func:`check_assumptions` reads them at a
finite point with named thresholds (:data:`STRONG_CORRELATION_MIN_P`, :data:`OVERPARAM_MIN_N`,
:data:`OVERPARAM_MIN_DIM_RATIO`) which are ours, not the paper's.

The model :func:`simulate` trains is *our reconstruction* of the proof's setup, from the paper's
data model and the linearised multimodal contrastive loss of the literature it builds on
(Nakada et al., AISTATS 2023, "Understanding multimodal contrastive learning and incorporating
unpaired data"; Xue et al., ICLR 2024, "Understanding the robustness of multi-modal contrastive
learning to distribution shift"). Choices the paper's summary does not fix are marked.

Setup (what :func:`simulate` samples)
-------------------------------------
* Label ``y`` uniform on {-1, +1}. Spurious attribute ``a = y`` with probability ``p_spu`` and
  ``a = -y`` otherwise (training / in-distribution). The theorem's OOD test distribution has
  ``p_spu = 1/2``; its two halves are measured apart: a != y (``ood_error``, the CounterAnimal
  "counter" group) and a = y (``agree_accuracy``).
* Latents ``z = [z_inv, z_spu]``, ``z_inv ~ N(mu_inv * y, sigma_inv^2)``,
  ``z_spu ~ N(mu_spu * a, sigma_spu^2)``. **Assumption:** ``mu_inv = 1`` (the formula has no
  ``mu_inv``; every invariant mean in it is 1).
* Image ``x_I = D_I z + xi_I`` and caption ``x_T = D_T z + xi_T``, with ``D_I`` (d_image x 2) and
  ``D_T`` (d_text x 2) random matrices with orthonormal columns and isotropic noise
  (``noise_std``, default 0, as the formula has no noise term). **Assumption:** the caption is
  generated from the *same realisation* of ``z`` as its image (it describes this animal on this
  background). This is what produces the factor ``1 + sigma_inv^2 = E[z_inv^2]`` in kappa_1; a
  caption built from the clean label ``y`` would give a factor 1 instead.
* Linear encoders ``f(x) = W_I x``, ``g(t) = W_T t`` with embedding dimension ``r >= 2``
  (``embed_dim``, default 2 = number of latents).
* Zero-shot prompt "a photo of <c>", ``c`` in {-1, +1}: the text ``D_T [mu_inv * c, 0]``.
  **Assumption:** a prompt names the class and says nothing about the background, so its
  spurious latent is the marginal mean 0.

Linearised CLIP loss and its minimiser
--------------------------------------
With similarities ``s_ij = <f(x_I^i), g(x_T^j)>`` the symmetric InfoNCE loss expanded to first order
at ``s = 0`` (``-log softmax_j(s_ij)[i] ~ -s_ii + mean_j s_ij + log n``), plus the regulariser of
the brief / Xue et al., is

    L(W_I, W_T) = -1/n sum_i s_ii + 1/(n(n-1)) sum_{i != j} s_ij + rho/2 ||W_I^T W_T||_F^2.

Write ``M = W_I^T W_T``. Since ``s_ij = x_I^i^T M x_T^j``, the loss depends on the encoders only
through ``M``: ``L = -<M, S> + rho/2 ||M||_F^2 = rho/2 ||M - S/rho||_F^2 - ||S||_F^2 / (2 rho)``
with the *contrastive cross-covariance*
``S = 1/n sum_i x_I^i x_T^i^T - 1/(n(n-1)) sum_{i != j} x_I^i x_T^j^T``. ``M`` has rank at most
``r``, so by Eckart-Young the minimiser is ``M* = SVD_r(S) / rho`` (the top-r singular part of
``S``), realised by ``W_I = diag(sqrt(s_k/rho)) U_r^T``, ``W_T = diag(sqrt(s_k/rho)) V_r^T``.
``rho`` only fixes the scale (without it the linear loss is unbounded below); zero-shot decisions
do not depend on it. :func:`fit_clip` computes this closed form; ``solver="gradient"`` runs plain
gradient descent on the same loss (:func:`clip_loss_and_gradient`, whose gradient the tests check
against finite differences) as an independent check that GD-trained encoders end up there.

The population error, and how it relates to the bound
------------------------------------------------------
The data are centred, so ``S -> E[x_I x_T^T] = D_I Sigma_z D_T^T`` with
``Sigma_z = [[1 + sigma_inv^2, B], [B, mu_spu^2 + sigma_spu^2]]``, ``B = mu_spu (2 p_spu - 1)``
(``E[z_inv z_spu] = mu_spu E[y a]``). ``Sigma_z`` has rank 2 <= r, so ``M* = D_I Sigma_z D_T^T /
rho`` and the zero-shot rule is ``sign(x_I^T M* D_T e_1) = sign(A z_inv + B z_spu + noise)``
with ``A = 1 + sigma_inv^2``. On an OOD sample (take ``y = 1``, ``a = -1``) the score is normal with
mean ``A - B mu_spu`` and variance ``A^2 sigma_inv^2 + B^2 sigma_spu^2 + noise_std^2 (A^2 + B^2)``,
so the OOD error is ``1 - Phi(kappa)`` with

    kappa = (A - B mu_spu) / sqrt(A^2 sigma_inv^2 + B^2 sigma_spu^2 + noise_std^2 (A^2 + B^2))

(:func:`kappa_clip`, :func:`predicted_ood_error`); on a = y samples the mean is ``A + B mu_spu``
(:func:`predicted_agree_accuracy`). At ``mu_spu = 1`` and no noise this kappa *is* kappa_1 term
by term (the numerator is ``1 + sigma_inv^2 - (2p - 1) = sigma_inv^2 + 2 - 2p``), so the bound is
attained there; ``mu_spu = 1`` lies outside assumption 4, though.

Elsewhere the reconstructed minimiser weights the spurious latent by ``mu_spu (2 p_spu - 1)``
where kappa_1 has ``2 mu_spu p_spu - 1``: the printed expression does not come out of this model
as an equality, and within the assumptions it is a *loose* lower bound here (on the grid
``sigma_inv = 1``, ``sigma_spu = 0.5``, ``mu_spu`` in {1.5, 2, 3}, ``p_spu`` in {0.95, 0.99,
0.999} the population error exceeds it by 0.03-0.19 and the a = y accuracy exceeds
``1 - Phi(kappa_2)`` by 0.01-0.02). Outside the assumptions the printed expression can exceed the
error of this model (e.g. ``mu_spu = 2``, ``p_spu = 0.5``); that says nothing about the theorem.

Over-parameterisation (assumption 3). With noise-free images (``noise_std = 0``) the images fill
a 2-d subspace whatever ``d_image`` is, and the learned classifier does not depend on the
dimensions. What the assumption controls is noise: per-sample noise of norm
:data:`THEOREM_NOISE_NORM` spread over ``d`` coordinates (:func:`theorem_noise_std`, our choice)
projects onto any fixed direction with variance ``1/d``, so in the regime
``d >= n -> infinity`` it only adds the theorem's ``o(1)``. :func:`fit_clip` computes the top-r
singular part through matrix-vector products when the dimensions are large, so ``d >= n`` costs
O(n d) per product, not O(n d^2).

Supervised baseline
-------------------
``objective="supervised"`` fits a linear classifier ``sign(w^T x_I)`` on the same training images
with labels ``y`` (logistic loss by default, or squared loss, which has the closed form
``w = E[x x^T]^+ E[x y]``: latent weights ``(Sigma_z + noise_std^2 I)^{-1} (1, B)``). CLIP weights
the latents by ``Sigma_z e_1`` (covariance with the invariant latent), the regression by
``Sigma_z^{-1}`` (it "explains away"). Neither dominates: the supervised model is the more robust
of the two when the spurious feature is strong and the correlation moderate (``mu_spu >= 1.5``,
``p_spu`` in [0.7, 0.9], the paper's "no extra robustness" regime), CLIP is the more robust one
when the spurious signal is weak or the correlation nearly perfect (``mu_spu <= 1`` with
``p_spu >= 0.9``, or ``p_spu = 0.99``). At ``p_spu = 0.5`` both reduce to ``sign(z_inv)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize
from scipy.special import ndtr

Objective = Literal["clip", "supervised"]
SupervisedLoss = Literal["logistic", "squared"]
ClipSolver = Literal["closed_form", "gradient"]

#: Mean of the invariant latent, ``z_inv ~ N(MU_INV * y, sigma_inv^2)``. Theorem 6.2's kappa_1
#: contains no mu_inv; its terms are those of mu_inv = 1.
MU_INV: float = 1.0
#: Number of latents: z = [z_inv, z_spu].
N_LATENTS: int = 2

#: Finite-point reading of assumption 2, ``p_spu = 1 - o(1)`` (ours; the reference names
#: ``p_spu <= 0.8`` as outside the theorem and 0.95-0.999 as inside).
STRONG_CORRELATION_MIN_P: float = 0.95
#: Finite-point reading of assumption 3's ``n = omega(1)`` (ours).
OVERPARAM_MIN_N: int = 1_000
#: Finite-point reading of assumption 3's ``d = Omega(n)``: ``d_image, d_text >= ratio * n`` (ours).
OVERPARAM_MIN_DIM_RATIO: float = 1.0
#: `spurbench theory`'s default grid, the reference's example: every point meets all four
#: assumptions at :data:`THEOREM_N_TRAIN` training pairs in ``d = n`` dimensions.
THEOREM_P_SPU: tuple[float, ...] = (0.95, 0.99, 0.999)
THEOREM_MU_SPU: tuple[float, ...] = (1.5, 2.0, 3.0)
THEOREM_SIGMA_INV: float = 1.0
THEOREM_SIGMA_SPU: float = 0.5
THEOREM_N_TRAIN: int = 2_000
#: Points that `spurbench theory --outside-assumptions` adds (assumptions 2 and/or 4 fail there).
OUTSIDE_P_SPU: tuple[float, ...] = (0.5, 0.7, 0.9)
OUTSIDE_MU_SPU: tuple[float, ...] = (0.5, 1.0)
#: Norm of the per-sample image / caption noise in the over-parameterised regime, spread evenly
#: over the ``d`` coordinates (:func:`theorem_noise_std`).
THEOREM_NOISE_NORM: float = 1.0
#: Classes in the order of the zero-shot prompt bank (index 0 is y = -1).
CLASSES: tuple[int, int] = (-1, 1)


# --------------------------------------------------------------------------------------------
# Closed forms
# --------------------------------------------------------------------------------------------


def _as_result(x: NDArray[np.float64]) -> float | NDArray[np.float64]:
    """A 0-d array becomes a Python float so that scalar calls give scalars back."""
    return float(x) if np.ndim(x) == 0 else x


def kappa1(
    p_spu: ArrayLike, mu_spu: ArrayLike, sigma_inv: ArrayLike, sigma_spu: ArrayLike
) -> float | NDArray[np.float64]:
    """Theorem 6.2's kappa_1, verbatim; broadcasts over numpy arrays.

    Kept exactly as printed (including ``2 mu_spu p_spu - 1``) so that the figure compares
    simulations with what the paper states, not with a corrected version; see
    :func:`kappa_clip` for the value derived in the module docstring.
    """
    p, mu, si, ss = (np.asarray(v, dtype=np.float64) for v in (p_spu, mu_spu, sigma_inv, sigma_spu))
    spu = 2.0 * mu * p - 1.0
    num = si**2 + 2.0 - 2.0 * mu * p
    den = np.sqrt((1.0 + si**2) ** 2 * si**2 + spu**2 * ss**2)
    return _as_result(num / den)


def kappa2(
    p_spu: ArrayLike, mu_spu: ArrayLike, sigma_inv: ArrayLike, sigma_spu: ArrayLike
) -> float | NDArray[np.float64]:
    """Theorem 6.2's kappa_2 (the a = y accuracy bound), verbatim; broadcasts like :func:`kappa1`.

    Same denominator as kappa_1, numerator ``-2 mu_spu p_spu - sigma_inv^2``.
    """
    p, mu, si, ss = (np.asarray(v, dtype=np.float64) for v in (p_spu, mu_spu, sigma_inv, sigma_spu))
    den = np.sqrt((1.0 + si**2) ** 2 * si**2 + (2.0 * mu * p - 1.0) ** 2 * ss**2)
    return _as_result((-2.0 * mu * p - si**2) / den)


def theory_bound(
    p_spu: ArrayLike, mu_spu: ArrayLike, sigma_inv: ArrayLike, sigma_spu: ArrayLike
) -> float | NDArray[np.float64]:
    """The theorem's LOWER bound on the OOD error (a != y), ``1 - Phi(kappa_1)``.

    The theorem says error >= this - o(1) under its four assumptions (:func:`check_assumptions`);
    it is not a prediction of the error. Broadcasts over numpy arrays. Computed as
    ``Phi(-kappa_1)`` (``scipy.special.ndtr``), which keeps precision where ``1 - Phi`` cancels.
    """
    return _as_result(ndtr(-np.asarray(kappa1(p_spu, mu_spu, sigma_inv, sigma_spu))))


def accuracy_bound(
    p_spu: ArrayLike, mu_spu: ArrayLike, sigma_inv: ArrayLike, sigma_spu: ArrayLike
) -> float | NDArray[np.float64]:
    """The theorem's LOWER bound on the accuracy where a = y, ``1 - Phi(kappa_2)``."""
    return _as_result(ndtr(-np.asarray(kappa2(p_spu, mu_spu, sigma_inv, sigma_spu))))


@dataclass(frozen=True)
class AssumptionCheck:
    """One of Theorem 6.2's assumptions at a parameter point."""

    number: int
    statement: str
    holds: bool
    detail: str


@dataclass(frozen=True)
class AssumptionReport:
    """The four assumptions at one point; the theorem applies only where all of them hold."""

    checks: tuple[AssumptionCheck, ...]

    @property
    def holds(self) -> bool:
        return all(c.holds for c in self.checks)

    @property
    def failed(self) -> tuple[int, ...]:
        return tuple(c.number for c in self.checks if not c.holds)

    def summary(self) -> str:
        """``"all hold"`` or ``"outside: 2 (p_spu = 0.9 < 0.95); 4 (...)"``."""
        if self.holds:
            return "all hold"
        failed = [f"{c.number} ({c.detail})" for c in self.checks if not c.holds]
        return "outside: " + "; ".join(failed)


def check_assumptions(
    p_spu: float,
    mu_spu: float,
    sigma_inv: float,
    sigma_spu: float,
    *,
    n_train: int,
    d_image: int,
    d_text: int,
    min_p_spu: float = STRONG_CORRELATION_MIN_P,
    min_n: int = OVERPARAM_MIN_N,
    min_dim_ratio: float = OVERPARAM_MIN_DIM_RATIO,
) -> AssumptionReport:
    """Which of Theorem 6.2's four assumptions hold at this point (module docstring lists them).

    The asymptotic ones are read with the named thresholds: ``p_spu >= min_p_spu`` for
    ``1 - o(1)``, ``n_train >= min_n`` for ``omega(1)``, ``d >= min_dim_ratio * n_train`` for
    ``Omega(n)``. ``sigma_inv = Theta(1)`` holds for any fixed positive constant.
    """
    bar = (sigma_inv**2 + 2.0) / 2.0
    min_dim = min_dim_ratio * n_train
    small = [name for name, d in (("d_image", d_image), ("d_text", d_text)) if d < min_dim]
    checks = (
        AssumptionCheck(
            1, "sigma_inv = Theta(1) and sigma_inv > sigma_spu",
            0.0 < sigma_inv < math.inf and sigma_inv > sigma_spu,
            f"sigma_inv = {sigma_inv:g}, sigma_spu = {sigma_spu:g}",
        ),
        AssumptionCheck(
            2, "p_spu = 1 - o(1)", min_p_spu <= p_spu <= 1.0,
            f"p_spu = {p_spu:g} {'>=' if p_spu >= min_p_spu else '<'} {min_p_spu:g}",
        ),
        AssumptionCheck(
            3, "n = omega(1), d_image = Omega(n), d_text = Omega(n)",
            n_train >= min_n and not small,
            f"n = {n_train}, d_image = {d_image}, d_text = {d_text}; "
            f"needs n >= {min_n}, d >= {min_dim_ratio:g} n",
        ),
        AssumptionCheck(
            4, "mu_spu >= (sigma_inv^2 + 2) / 2 >= mu_inv = 1", mu_spu >= bar >= MU_INV,
            f"mu_spu = {mu_spu:g} {'>=' if mu_spu >= bar else '<'} {bar:g}",
        ),
    )  # fmt: skip
    return AssumptionReport(checks)


def theorem_noise_std(dim: int, norm: float = THEOREM_NOISE_NORM) -> float:
    """Per-coordinate noise sd that gives each sample noise of norm ``norm`` in ``dim`` dims."""
    return norm / math.sqrt(dim)


def _latent_covariance(p: NDArray, mu: NDArray, si: NDArray, ss: NDArray) -> tuple[NDArray, ...]:
    """Entries (s11, s12, s22) of Sigma_z = E[z z^T] under the training distribution."""
    return MU_INV**2 + si**2, mu * MU_INV * (2.0 * p - 1.0), mu**2 + ss**2


def latent_weights(
    p_spu: ArrayLike,
    mu_spu: ArrayLike,
    sigma_inv: ArrayLike,
    sigma_spu: ArrayLike,
    *,
    objective: Literal["clip", "supervised_squared"] = "clip",
    noise_std: float = 0.0,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Population classifier weights ``(w_inv, w_spu)`` on the latents, up to a positive scale.

    ``"clip"``: the zero-shot rule of the linearised-CLIP minimiser, ``Sigma_z e_1``.
    ``"supervised_squared"``: least squares on the images, ``(Sigma_z + noise_std^2 I)^{-1}(1, B)``.
    There is no closed form for the logistic loss (the class conditionals are mixtures).
    """
    p, mu, si, ss = np.broadcast_arrays(
        *(np.asarray(v, dtype=np.float64) for v in (p_spu, mu_spu, sigma_inv, sigma_spu))
    )
    s11, s12, s22 = _latent_covariance(p, mu, si, ss)
    if objective == "clip":
        return s11 * MU_INV, s12 * MU_INV
    if objective == "supervised_squared":
        a11, a22 = s11 + noise_std**2, s22 + noise_std**2
        det = a11 * a22 - s12**2
        c1, c2 = MU_INV, s12 / MU_INV  # E[z y] = (mu_inv, mu_spu (2p - 1))
        return (a22 * c1 - s12 * c2) / det, (a11 * c2 - s12 * c1) / det
    raise ValueError(f"objective must be 'clip' or 'supervised_squared', got {objective!r}")


def _error_from_weights(
    w_inv: NDArray,
    w_spu: NDArray,
    spu_sign: float,
    mu: NDArray,
    si: NDArray,
    ss: NDArray,
    noise_std: float,
) -> NDArray[np.float64]:
    """P(error) of ``sign(w_inv z_inv + w_spu z_spu + w.xi)`` given y = 1, a = spu_sign."""
    mean = w_inv * MU_INV + w_spu * mu * spu_sign
    sd = np.sqrt(w_inv**2 * si**2 + w_spu**2 * ss**2 + noise_std**2 * (w_inv**2 + w_spu**2))
    return ndtr(-mean / sd)


def kappa_clip(
    p_spu: ArrayLike,
    mu_spu: ArrayLike,
    sigma_inv: ArrayLike,
    sigma_spu: ArrayLike,
    *,
    noise_std: float = 0.0,
) -> float | NDArray[np.float64]:
    """kappa of the derived population OOD error ``1 - Phi(kappa)`` of zero-shot linear CLIP.

    Equals :func:`kappa1` when ``mu_spu = 1`` and ``noise_std = 0``; see the module docstring.
    """
    p, mu, si, ss = np.broadcast_arrays(
        *(np.asarray(v, dtype=np.float64) for v in (p_spu, mu_spu, sigma_inv, sigma_spu))
    )
    a, b = latent_weights(p, mu, si, ss, objective="clip")
    sd = np.sqrt(a**2 * si**2 + b**2 * ss**2 + noise_std**2 * (a**2 + b**2))
    return _as_result((a * MU_INV - b * mu) / sd)


def predicted_ood_error(
    p_spu: ArrayLike,
    mu_spu: ArrayLike,
    sigma_inv: ArrayLike,
    sigma_spu: ArrayLike,
    *,
    objective: Literal["clip", "supervised_squared"] = "clip",
    noise_std: float = 0.0,
) -> float | NDArray[np.float64]:
    """Population OOD error (samples with ``a = -y``) under this module's data model.

    This is what :func:`simulate` converges to as ``n_train, n_test -> infinity``; unlike
    :func:`theory_bound` it is derived here, not quoted.
    """
    p, mu, si, ss = np.broadcast_arrays(
        *(np.asarray(v, dtype=np.float64) for v in (p_spu, mu_spu, sigma_inv, sigma_spu))
    )
    w_inv, w_spu = latent_weights(p, mu, si, ss, objective=objective, noise_std=noise_std)
    return _as_result(_error_from_weights(w_inv, w_spu, -1.0, mu, si, ss, noise_std))


def predicted_agree_accuracy(
    p_spu: ArrayLike,
    mu_spu: ArrayLike,
    sigma_inv: ArrayLike,
    sigma_spu: ArrayLike,
    *,
    noise_std: float = 0.0,
) -> float | NDArray[np.float64]:
    """Population zero-shot accuracy of linear CLIP on samples with a = y (module docstring)."""
    p, mu, si, ss = np.broadcast_arrays(
        *(np.asarray(v, dtype=np.float64) for v in (p_spu, mu_spu, sigma_inv, sigma_spu))
    )
    w_inv, w_spu = latent_weights(p, mu, si, ss, objective="clip", noise_std=noise_std)
    return _as_result(1.0 - _error_from_weights(w_inv, w_spu, 1.0, mu, si, ss, noise_std))


def predicted_id_error(
    p_spu: ArrayLike,
    mu_spu: ArrayLike,
    sigma_inv: ArrayLike,
    sigma_spu: ArrayLike,
    *,
    objective: Literal["clip", "supervised_squared"] = "clip",
    noise_std: float = 0.0,
) -> float | NDArray[np.float64]:
    """Population in-distribution error: the ``p_spu``-mixture of the a = y and a = -y errors."""
    p, mu, si, ss = np.broadcast_arrays(
        *(np.asarray(v, dtype=np.float64) for v in (p_spu, mu_spu, sigma_inv, sigma_spu))
    )
    w_inv, w_spu = latent_weights(p, mu, si, ss, objective=objective, noise_std=noise_std)
    agree = _error_from_weights(w_inv, w_spu, 1.0, mu, si, ss, noise_std)
    disagree = _error_from_weights(w_inv, w_spu, -1.0, mu, si, ss, noise_std)
    return _as_result(p * agree + (1.0 - p) * disagree)


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def _orthonormal_columns(rng: np.random.Generator, dim: int) -> NDArray[np.float64]:
    """A random ``dim x 2`` matrix with orthonormal columns (QR of a Gaussian matrix)."""
    if dim < N_LATENTS:
        raise ValueError(f"ambient dimension must be >= {N_LATENTS}, got {dim}")
    q, r = np.linalg.qr(rng.standard_normal((dim, N_LATENTS)))
    return q * np.sign(np.diag(r))  # fixes QR's sign ambiguity, so the draw is a function of rng


@dataclass(frozen=True)
class LinearWorld:
    """The generative maps latents -> images / texts. Fixed per seed, shared by all splits."""

    image_map: NDArray[np.float64]  # D_I: (d_image, 2), orthonormal columns
    text_map: NDArray[np.float64]  # D_T: (d_text, 2), orthonormal columns
    noise_std: float = 0.0

    @classmethod
    def random(
        cls, rng: np.random.Generator, d_image: int = 16, d_text: int = 12, noise_std: float = 0.0
    ) -> LinearWorld:
        return cls(_orthonormal_columns(rng, d_image), _orthonormal_columns(rng, d_text), noise_std)

    def images(self, z: NDArray[np.float64], rng: np.random.Generator) -> NDArray[np.float64]:
        x = z @ self.image_map.T
        if self.noise_std > 0:
            x = x + self.noise_std * rng.standard_normal(x.shape)
        return x

    def captions(self, z: NDArray[np.float64], rng: np.random.Generator) -> NDArray[np.float64]:
        """Captions of the same scenes: generated from the same latent realisation as the image."""
        t = z @ self.text_map.T
        if self.noise_std > 0:
            t = t + self.noise_std * rng.standard_normal(t.shape)
        return t

    def scores(
        self, z: NDArray[np.float64], w: NDArray[np.float64], rng: np.random.Generator
    ) -> NDArray[np.float64]:
        """``w^T x_I`` for images of latents ``z``, without building the ``(n, d_image)`` images.

        Isotropic noise projects onto ``w`` as ``N(0, noise_std^2 ||w||^2)``, so drawing that
        scalar is exact in distribution and keeps large test sets cheap when ``d_image`` is big.
        """
        s = z @ (self.image_map.T @ w)
        if self.noise_std > 0:
            s = s + self.noise_std * float(np.linalg.norm(w)) * rng.standard_normal(len(s))
        return s

    def prompts(self) -> NDArray[np.float64]:
        """Texts of "a photo of <c>", c in :data:`CLASSES`: latent ``[mu_inv c, 0]``, no noise."""
        latents = np.array([[MU_INV * c, 0.0] for c in CLASSES])
        return latents @ self.text_map.T


def sample_latents(
    n: int,
    p_spu: float,
    mu_spu: float,
    sigma_inv: float,
    sigma_spu: float,
    rng: np.random.Generator,
    *,
    counterfactual: bool = False,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Draw ``(y, a, z)``; ``counterfactual=True`` gives the OOD split where ``a = -y``."""
    y = rng.choice(np.array(CLASSES, dtype=np.float64), size=n)
    a = -y if counterfactual else np.where(rng.random(n) < p_spu, y, -y)
    z = np.stack(
        [
            MU_INV * y + sigma_inv * rng.standard_normal(n),
            mu_spu * a + sigma_spu * rng.standard_normal(n),
        ],
        axis=1,
    )
    return y, a, z


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def contrastive_cross_covariance(
    x_img: NDArray[np.float64], x_txt: NDArray[np.float64]
) -> NDArray[np.float64]:
    """``S = 1/n sum_i x_i t_i^T - 1/(n(n-1)) sum_{i != j} x_i t_j^T`` in O(n d^2)."""
    n = x_img.shape[0]
    if n < 2:
        raise ValueError("need at least two pairs to form negatives")
    paired = x_img.T @ x_txt
    all_pairs = np.outer(x_img.sum(axis=0), x_txt.sum(axis=0))
    return paired / n - (all_pairs - paired) / (n * (n - 1))


def linearised_clip_loss(
    w_img: NDArray[np.float64],
    w_txt: NDArray[np.float64],
    x_img: NDArray[np.float64],
    x_txt: NDArray[np.float64],
    rho: float,
) -> float:
    """The loss literally from the similarity matrix ``s_ij`` (O(n^2); for checks on small n).

    ``-1/n sum_i s_ii + 1/(n(n-1)) sum_{i != j} s_ij + rho/2 ||W_I^T W_T||_F^2``.
    """
    n = x_img.shape[0]
    s = (x_img @ w_img.T) @ (x_txt @ w_txt.T).T
    diag = np.trace(s)
    off = s.sum() - diag
    return float(-diag / n + off / (n * (n - 1)) + 0.5 * rho * np.sum((w_img.T @ w_txt) ** 2))


#: Above this image/text dimension :func:`fit_clip` never forms ``S`` (d_image x d_text) and
#: finds its top singular part from matrix-vector products (the over-parameterised regime).
DENSE_SVD_MAX_DIM: int = 512


def _clip_closed_form(
    s: NDArray[np.float64], embed_dim: int, rho: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    u, sv, vt = np.linalg.svd(s, full_matrices=False)
    scale = np.sqrt(sv[:embed_dim] / rho)[:, None]
    return scale * u[:, :embed_dim].T, scale * vt[:embed_dim]


def _clip_closed_form_factored(
    x_img: NDArray[np.float64], x_txt: NDArray[np.float64], embed_dim: int, rho: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The same minimiser via ``S = X_I^T C X_T / (n - 1)``, ``C`` the centring matrix.

    (Expanding :func:`contrastive_cross_covariance` gives exactly the sample cross-covariance.)
    Each product with ``S`` costs O(n d) instead of the O(n d^2) of forming it; ARPACK's
    ``svds`` finds the top ``embed_dim`` triplets from a fixed start, so the fit is deterministic.
    """
    from scipy.sparse.linalg import LinearOperator, svds

    n = x_img.shape[0]
    if n < 2:
        raise ValueError("need at least two pairs to form negatives")

    def centred(u: NDArray[np.float64]) -> NDArray[np.float64]:
        return (u - u.mean(axis=0)) / (n - 1)

    op = LinearOperator(
        (x_img.shape[1], x_txt.shape[1]), dtype=np.float64,
        matvec=lambda v: x_img.T @ centred(x_txt @ v),
        rmatvec=lambda v: x_txt.T @ centred(x_img @ v),
    )  # fmt: skip
    u, sv, vt = svds(op, k=embed_dim, random_state=0)
    order = np.argsort(sv)[::-1]
    scale = np.sqrt(sv[order] / rho)[:, None]
    return scale * u[:, order].T, scale * vt[order]


def clip_loss_and_gradient(
    w_img: NDArray[np.float64],
    w_txt: NDArray[np.float64],
    s: NDArray[np.float64],
    rho: float,
) -> tuple[float, NDArray[np.float64], NDArray[np.float64]]:
    """Loss ``-<M, S> + rho/2 ||M||_F^2`` (``M = W_I^T W_T``) and its gradients in W_I, W_T.

    This is the pairwise loss of :func:`linearised_clip_loss` rewritten through the contrastive
    cross-covariance ``S``, so one evaluation costs O(d_I d_T r) instead of O(n^2).
    With ``G = dL/dM = rho M - S``: ``dL/dW_I = W_T G^T`` and ``dL/dW_T = W_I G``.
    """
    m = w_img.T @ w_txt
    g = rho * m - s
    loss = float(-np.sum(m * s) + 0.5 * rho * np.sum(m**2))
    return loss, w_txt @ g.T, w_img @ g


def _clip_gradient_descent(
    s: NDArray[np.float64],
    embed_dim: int,
    rho: float,
    seed: int,
    steps: int,
    lr: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Plain full-batch gradient descent from a small random start.

    Nothing here knows about SVDs: that it lands on ``SVD_r(S)/rho`` is the check that the
    closed form is the minimiser GD-trained encoders reach (the loss is non-convex in
    ``(W_I, W_T)``, but a small random start escapes the saddle at 0 along the top directions).
    """
    rng = np.random.default_rng(seed)
    w_i = 1e-2 * rng.standard_normal((embed_dim, s.shape[0]))
    w_t = 1e-2 * rng.standard_normal((embed_dim, s.shape[1]))
    for _ in range(steps):
        _, g_i, g_t = clip_loss_and_gradient(w_i, w_t, s, rho)
        w_i, w_t = w_i - lr * g_i, w_t - lr * g_t
    return w_i, w_t


def fit_clip(
    x_img: NDArray[np.float64],
    x_txt: NDArray[np.float64],
    *,
    embed_dim: int = N_LATENTS,
    rho: float = 1.0,
    solver: ClipSolver = "closed_form",
    seed: int = 0,
    steps: int = 1000,
    lr: float = 0.05,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Minimise the linearised CLIP loss; returns ``(W_I, W_T)`` of shapes (r, d_I), (r, d_T).

    ``"closed_form"`` is the exact minimiser ``SVD_r(S)/rho`` (module docstring);
    ``"gradient"`` reaches it by gradient descent and exists to check that claim.
    """
    if rho <= 0:
        raise ValueError(f"rho must be positive, got {rho}")
    small = min(x_img.shape[1], x_txt.shape[1])
    if solver == "closed_form" and small > DENSE_SVD_MAX_DIM and embed_dim < small:
        return _clip_closed_form_factored(x_img, x_txt, embed_dim, rho)
    s = contrastive_cross_covariance(x_img, x_txt)
    if solver == "closed_form":
        return _clip_closed_form(s, embed_dim, rho)
    if solver == "gradient":
        return _clip_gradient_descent(s, embed_dim, rho, seed, steps, lr)
    raise ValueError(f"solver must be 'closed_form' or 'gradient', got {solver!r}")


def fit_supervised(
    x_img: NDArray[np.float64], y: NDArray[np.float64], *, loss: SupervisedLoss = "logistic"
) -> NDArray[np.float64]:
    """A linear classifier ``sign(w^T x)`` trained on images and labels (no bias: data are centred).

    The logistic fit starts at zero, so ``w`` stays in the span of the data and needs no
    regulariser even when the images fill only a 2-d subspace.
    """
    if loss == "squared":
        return np.linalg.lstsq(x_img, y, rcond=None)[0]
    if loss != "logistic":
        raise ValueError(f"loss must be 'logistic' or 'squared', got {loss!r}")

    def objective(w: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        margin = y * (x_img @ w)
        value = float(np.logaddexp(0.0, -margin).mean())
        grad = -(x_img * (y * _sigmoid(-margin))[:, None]).mean(axis=0)
        return value, grad

    res = minimize(
        objective, np.zeros(x_img.shape[1]), jac=True, method="L-BFGS-B",
        options={"maxiter": 500, "gtol": 1e-10},
    )  # fmt: skip
    return res.x


def _sigmoid(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """The logistic sigmoid, written with ``exp`` of non-positive arguments only (no overflow)."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


# --------------------------------------------------------------------------------------------
# Simulation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimResult:
    """One simulated training run and its evaluation.

    ``inv_alignment`` / ``spu_alignment`` are the cosines between the learned image-side decision
    direction ``w`` (score = ``w^T x_I``) and the image-space directions of ``z_inv`` / ``z_spu``
    (the columns of ``D_I``): how much of the classifier reads the invariant vs the spurious latent.

    Three OOD numbers, to keep the two sources of noise apart: ``ood_error`` is measured on
    ``n_test`` draws of a != y; ``conditional_ood_error`` is the exact expectation of that
    measurement for the classifier actually trained (so ``ood_error - conditional_ood_error`` is
    pure test-sampling noise, binomial); ``predicted_ood_error`` is the population value for
    ``n_train -> infinity`` (so ``conditional_ood_error - predicted_ood_error`` is pure
    training-sample noise).
    ``agree_accuracy`` is measured on ``n_test`` draws of a = y. ``bound`` and ``accuracy_bound``
    are the theorem's lower bounds on ``ood_error`` and ``agree_accuracy``.
    """

    objective: str
    p_spu: float
    mu_spu: float
    sigma_inv: float
    sigma_spu: float
    n_train: int
    n_test: int
    seed: int
    ood_error: float
    id_error: float
    inv_alignment: float
    spu_alignment: float
    bound: float
    predicted_ood_error: float
    conditional_ood_error: float
    agree_accuracy: float
    accuracy_bound: float
    d_image: int
    d_text: int

    def assumptions(self) -> AssumptionReport:
        """Theorem 6.2's assumptions at this run's parameters (:func:`check_assumptions`)."""
        return check_assumptions(
            self.p_spu, self.mu_spu, self.sigma_inv, self.sigma_spu,
            n_train=self.n_train, d_image=self.d_image, d_text=self.d_text,
        )  # fmt: skip

    def ood_sampling_sd(self, reference: float | None = None) -> float:
        """Binomial standard deviation of ``ood_error`` around ``reference`` (default: bound)."""
        p = self.bound if reference is None else reference
        return math.sqrt(p * (1.0 - p) / self.n_test)


def _decision_direction_clip(
    w_img: NDArray[np.float64], w_txt: NDArray[np.float64], world: LinearWorld
) -> NDArray[np.float64]:
    """Image-space ``w`` with ``<f(x), g(c=+1)> - <f(x), g(c=-1)> = w^T x``."""
    g = world.prompts() @ w_txt.T  # (2, r): rows are the text embeddings of c = -1, +1
    return w_img.T @ (g[1] - g[0])


def _error_rate(scores: NDArray[np.float64], y: NDArray[np.float64]) -> float:
    # With two classes, argmax_c <f(x), g(c)> is sign(w^T x); ties have probability zero.
    return float(np.mean(np.where(scores > 0, 1.0, -1.0) != y))


def simulate(
    p_spu: float,
    mu_spu: float,
    sigma_inv: float = 1.0,
    sigma_spu: float = 1.0,
    n_train: int = 20_000,
    n_test: int = 20_000,
    objective: Objective = "clip",
    seed: int = 0,
    *,
    d_image: int = 16,
    d_text: int = 12,
    embed_dim: int = N_LATENTS,
    rho: float = 1.0,
    noise_std: float = 0.0,
    supervised_loss: SupervisedLoss = "logistic",
    clip_solver: ClipSolver = "closed_form",
) -> SimResult:
    """Train linear CLIP (zero-shot) or a supervised linear classifier; measure ID / OOD error.

    The seed fixes the world (``D_I``, ``D_T``), the training set and both test sets, and is
    independent of ``objective``: CLIP and the supervised model see the *same* images, so their
    errors can be compared pairwise.
    """
    if not 0.0 <= p_spu <= 1.0:
        raise ValueError(f"p_spu must be in [0, 1], got {p_spu}")
    world_ss, train_ss, ood_ss, id_ss, agree_ss = np.random.SeedSequence(seed).spawn(5)
    world = LinearWorld.random(np.random.default_rng(world_ss), d_image, d_text, noise_std)

    rng = np.random.default_rng(train_ss)
    y_tr, _, z_tr = sample_latents(n_train, p_spu, mu_spu, sigma_inv, sigma_spu, rng)
    x_tr = world.images(z_tr, rng)

    if objective == "clip":
        t_tr = world.captions(z_tr, rng)
        w_img, w_txt = fit_clip(
            x_tr, t_tr, embed_dim=embed_dim, rho=rho, solver=clip_solver, seed=seed
        )
        w = _decision_direction_clip(w_img, w_txt, world)
        predicted = (
            predicted_ood_error(p_spu, mu_spu, sigma_inv, sigma_spu, noise_std=noise_std)
            if embed_dim >= N_LATENTS
            else math.nan
        )
    elif objective == "supervised":
        w = fit_supervised(x_tr, y_tr, loss=supervised_loss)
        predicted = (
            predicted_ood_error(
                p_spu, mu_spu, sigma_inv, sigma_spu,
                objective="supervised_squared", noise_std=noise_std,
            )
            if supervised_loss == "squared"
            else math.nan
        )  # fmt: skip
    else:
        raise ValueError(f"objective must be 'clip' or 'supervised', got {objective!r}")

    rng = np.random.default_rng(ood_ss)
    y_ood, _, z_ood = sample_latents(
        n_test, p_spu, mu_spu, sigma_inv, sigma_spu, rng, counterfactual=True
    )
    ood_error = _error_rate(world.scores(z_ood, w, rng), y_ood)
    rng = np.random.default_rng(id_ss)
    y_id, _, z_id = sample_latents(n_test, p_spu, mu_spu, sigma_inv, sigma_spu, rng)
    id_error = _error_rate(world.scores(z_id, w, rng), y_id)
    rng = np.random.default_rng(agree_ss)  # p_spu = 1: every sample has a = y
    y_ag, _, z_ag = sample_latents(n_test, 1.0, mu_spu, sigma_inv, sigma_spu, rng)
    agree_accuracy = 1.0 - _error_rate(world.scores(z_ag, w, rng), y_ag)

    norm = float(np.linalg.norm(w))
    inv_al, spu_al = (world.image_map.T @ w / norm) if norm > 0 else (math.nan, math.nan)
    # Given w, the OOD score w^T x is normal: latent part (inv_al, spu_al) plus the projected noise
    # (unit-norm direction, so variance noise_std^2).
    conditional = float(
        _error_from_weights(
            np.float64(inv_al), np.float64(spu_al), -1.0, np.float64(mu_spu),
            np.float64(sigma_inv), np.float64(sigma_spu), noise_std,
        )
    )  # fmt: skip
    return SimResult(
        objective=objective,
        p_spu=float(p_spu),
        mu_spu=float(mu_spu),
        sigma_inv=float(sigma_inv),
        sigma_spu=float(sigma_spu),
        n_train=n_train,
        n_test=n_test,
        seed=seed,
        ood_error=ood_error,
        id_error=id_error,
        inv_alignment=float(inv_al),
        spu_alignment=float(spu_al),
        bound=float(theory_bound(p_spu, mu_spu, sigma_inv, sigma_spu)),
        predicted_ood_error=float(predicted),
        conditional_ood_error=conditional,
        agree_accuracy=agree_accuracy,
        accuracy_bound=float(accuracy_bound(p_spu, mu_spu, sigma_inv, sigma_spu)),
        d_image=d_image,
        d_text=d_text,
    )


GRID_COLUMNS: tuple[str, ...] = (
    "p_spu", "mu_spu", "objective", "seed", "ood_error", "id_error", "bound",
    "predicted_ood_error", "conditional_ood_error", "inv_alignment", "spu_alignment", "n_test",
    "agree_accuracy", "accuracy_bound", "n_train", "d_image", "d_text", "assumptions",
    "failed_assumptions",
)  # fmt: skip


def run_grid(
    p_spu_values: Iterable[float],
    mu_spu_values: Iterable[float],
    *,
    objectives: Sequence[Objective] = ("clip", "supervised"),
    seeds: Iterable[int] = (0, 1, 2),
    sigma_inv: float = 1.0,
    sigma_spu: float = 1.0,
    n_train: int = 20_000,
    n_test: int = 20_000,
    **simulate_kwargs: object,
) -> pd.DataFrame:
    """Simulate every (p_spu, mu_spu, objective, seed); one row per run, :data:`GRID_COLUMNS`.

    ``bound`` is the paper's lower bound ``1 - Phi(kappa_1)`` on ``ood_error`` and
    ``accuracy_bound`` its ``1 - Phi(kappa_2)`` on ``agree_accuracy``; ``assumptions`` is
    :meth:`AssumptionReport.summary` ("all hold" or which fail: the bounds say nothing there),
    ``failed_assumptions`` their numbers ("2,4"; empty where all hold).
    ``predicted_ood_error`` is the population value derived in this module (NaN for the logistic
    supervised model, which has no closed form).
    """
    rows = []
    seeds = list(seeds)
    for mu in mu_spu_values:
        for p in p_spu_values:
            for objective in objectives:
                for seed in seeds:
                    r = simulate(
                        p, mu, sigma_inv, sigma_spu, n_train, n_test, objective, seed,
                        **simulate_kwargs,  # type: ignore[arg-type]
                    )  # fmt: skip
                    report = r.assumptions()
                    failed = ",".join(map(str, report.failed))
                    rows.append(
                        {**asdict(r), "assumptions": report.summary(), "failed_assumptions": failed}
                    )
    return pd.DataFrame(rows, columns=list(GRID_COLUMNS))


def plot_grid(
    df: pd.DataFrame,
    path: str | Path,
    *,
    sigma_inv: float = 1.0,
    sigma_spu: float = 1.0,
) -> tuple[Path, Path]:
    """Measured OOD error vs p_spu per mu_spu, with the theorem's curve; CLIP | supervised.

    Markers: mean over seeds with a min-max bar; hollow where Theorem 6.2's assumptions fail.
    Solid line: the paper's lower bound ``1 - Phi(kappa_1)`` (the theorem says the error lies
    above it where its assumptions hold).
    Dashed line: the population error derived in this module, where a closed form exists.
    ``sigma_inv`` / ``sigma_spu`` must be those the grid was run with (they draw the curves).
    Writes ``<path>.png`` and ``<path>.svg`` (any suffix on ``path`` is replaced).
    """
    # The object-oriented API (Figure + Agg canvas implied by savefig) leaves pyplot's global
    # state and backend alone, so plotting from a test or a headless job never opens a window.
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    base = Path(path).with_suffix("")
    base.parent.mkdir(parents=True, exist_ok=True)
    objectives = [o for o in ("clip", "supervised") if o in set(df["objective"])]
    mus = sorted(df["mu_spu"].unique())
    p_fine = np.linspace(float(df["p_spu"].min()), float(df["p_spu"].max()), 200)
    colours = colormaps["viridis"](np.linspace(0.0, 0.85, max(len(mus), 1)))
    fig = Figure(figsize=(5.2 * len(objectives), 4.2))
    axes = fig.subplots(1, len(objectives), sharey=True)
    axes = np.atleast_1d(axes)
    titles = {"clip": "linear CLIP, zero-shot", "supervised": "supervised linear classifier"}
    for ax, objective in zip(axes, objectives, strict=True):
        sub = df[df["objective"] == objective]
        for colour, mu in zip(colours, mus, strict=True):
            g = sub[sub["mu_spu"] == mu].groupby("p_spu")["ood_error"]
            mean, lo, hi = g.mean(), g.min(), g.max()
            ax.errorbar(
                mean.index, mean.values, yerr=[mean.values - lo.values, hi.values - mean.values],
                fmt="o", color=colour, ms=4, capsize=2, label=f"measured, μ_spu={mu:g}",
            )  # fmt: skip
            if "failed_assumptions" in sub:  # white centres: the theorem does not cover them
                failed = sub[sub["mu_spu"] == mu].groupby("p_spu")["failed_assumptions"].first()
                outside = failed.fillna("").astype(str).ne("").reindex(mean.index).to_numpy()
                ax.plot(mean.index[outside], mean.values[outside], "o", mfc="white",
                        mec=colour, ms=5, zorder=3)  # fmt: skip
            ax.plot(p_fine, theory_bound(p_fine, mu, sigma_inv, sigma_spu), "-", color=colour,
                    lw=1.2)  # fmt: skip
            if objective == "clip":
                ax.plot(p_fine, predicted_ood_error(p_fine, mu, sigma_inv, sigma_spu), "--",
                        color=colour, lw=1.0, alpha=0.8)  # fmt: skip
        ax.set_title(titles[objective])
        ax.set_xlabel("p_spu (training P[a = y])")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("OOD error on a ≠ y")
    handles, labels = axes[0].get_legend_handles_labels()
    handles += [
        Line2D([], [], color="k", ls="-", lw=1.2),
        Line2D([], [], color="k", ls="--", lw=1.0),
    ]
    labels += ["Thm 6.2 lower bound: 1 − Φ(κ₁)", "derived population error (CLIP)"]
    if "failed_assumptions" in df and df["failed_assumptions"].fillna("").astype(str).ne("").any():
        handles.append(Line2D([], [], color="k", marker="o", mfc="white", ls=""))
        labels.append("outside the theorem's assumptions")
    axes[-1].legend(handles, labels, fontsize=7, loc="upper left")
    fig.suptitle(f"Wang et al. 2024, Thm 6.2 — σ_inv={sigma_inv:g}, σ_spu={sigma_spu:g}",
                 fontsize=10)  # fmt: skip
    fig.tight_layout()
    png, svg = base.with_suffix(".png"), base.with_suffix(".svg")
    fig.savefig(png, dpi=150)
    fig.savefig(svg)
    return png, svg
