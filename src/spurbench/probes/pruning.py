"""Pruning sweep over privileged directions: accuracy when the head sees only k directions.

Follows Crabbé, Rodríguez, Shankar, Zappella & Blaas, *Interpreting CLIP: Insights on the
Robustness to ImageNet Distribution Shifts* (TMLR 2024; arXiv:2310.13040), whose v1 abstract
reports that up to 80% of the least important representation directions can be pruned without
hurting accuracy or robustness. Pruning here means projecting each feature onto the span of the
kept directions V_k before the head,

    logits_k(x) = (h(x) V_kᵀ V_k) Wᵀ + b,

which keeps the head untouched and asks how much of what it reads lives in those k directions.
Keeping every direction of W's row space reproduces the unpruned logits exactly (up to rounding),
because W V_rᵀ V_r = W; the curve's k = r row is therefore the reference, and the directly
computed unpruned accuracy is reported next to it as a check.

The ranking of the directions (their importance, an average over images) and the accuracy of the
pruned head are measured on disjoint images: :func:`held_out_pruning` ranks on a seeded half of
the probe images and measures on the other half, so the curve is not flattered by a ranking fitted
to the very images it is scored on (with few images per class, an in-sample ranking can pick
directions that happen to separate those images).

Implementation: logits are built incrementally along the kept order, Z[:, k₀:k₁] @ (V W ᵀ)[k₀:k₁],
so the whole sweep costs one pass of O(n·r·c) per chunk of images — no per-image loops and no
(n × r × c) tensor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from spurbench.probes.directions import Directions, privileged_directions

__all__ = [
    "DEFAULT_FRACTIONS",
    "IMPORTANCE_FRACTION",
    "PruningSplit",
    "held_out_pruning",
    "held_out_split",
    "max_prunable_fraction",
    "pruning_curve",
]

DEFAULT_CHUNK = 4096
#: Fractions of directions kept when ``ks`` is not given.
DEFAULT_FRACTIONS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
#: Share of the probe images that rank the directions; the rest measure the pruned accuracy.
IMPORTANCE_FRACTION = 0.5


@dataclass(frozen=True)
class PruningSplit:
    """Which images rank the directions and which measure the pruned head (row positions)."""

    importance: np.ndarray
    evaluation: np.ndarray
    seed: int

    def describe(self) -> dict[str, int]:
        return {
            "n_importance_images": int(self.importance.size),
            "n_evaluation_images": int(self.evaluation.size),
            "split_seed": self.seed,
        }


def held_out_split(n: int, seed: int = 0, fraction: float = IMPORTANCE_FRACTION) -> PruningSplit:
    """A seeded random split of ``n`` images: ``fraction`` rank, the rest are held out.

    Both parts get at least one image; positions are sorted within each part.
    """
    if n < 2:
        raise ValueError(f"a held-out pruning split needs at least 2 images, got {n}")
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    k = min(max(round(n * fraction), 1), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    return PruningSplit(np.sort(perm[:k]), np.sort(perm[k:]), seed)


def held_out_pruning(
    H: np.ndarray,
    W: np.ndarray,
    b: np.ndarray | None,
    y: np.ndarray,
    ks: Sequence[int] | None = None,
    candidates: np.ndarray | None = None,
    *,
    seed: int = 0,
    fraction: float = IMPORTANCE_FRACTION,
) -> tuple[pd.DataFrame, PruningSplit]:
    """The pruning sweep (``keep`` most and least) with directions ranked on other images.

    Directions are :func:`privileged_directions` of ``W`` with importance averaged over the
    split's importance images; :func:`pruning_curve` then runs on the held-out images only.
    Returns the stacked curves and the split.
    """
    y = np.asarray(y)
    split = held_out_split(len(y), seed, fraction)
    directions = privileged_directions(W, np.asarray(H[split.importance]))
    held = np.asarray(H[split.evaluation])
    mask = None if candidates is None else np.asarray(candidates)[split.evaluation]
    curves = [
        pruning_curve(held, W, b, y[split.evaluation], directions, ks, mask, keep=keep)
        for keep in ("most", "least")
    ]
    return pd.concat(curves, ignore_index=True).assign(**split.describe()), split


def _masked_argmax(logits: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    if mask is None:
        return logits.argmax(axis=1)
    return np.where(mask, logits, -np.inf).argmax(axis=1)


def pruning_curve(
    H: np.ndarray,
    W: np.ndarray,
    b: np.ndarray | None,
    y: np.ndarray,
    directions: Directions,
    ks: Sequence[int] | None = None,
    candidates: np.ndarray | None = None,
    *,
    keep: Literal["most", "least"] = "most",
    chunk_size: int = DEFAULT_CHUNK,
) -> pd.DataFrame:
    """Accuracy of the head when features are projected onto k of its directions.

    Args:
        H: (n_images, d_H) features (float64 chunks; may be a memmap).
        W: (n_classes, d_H) head; b: (n_classes,) bias or None.
        y: (n_images,) integer labels in [0, n_classes).
        directions: ``privileged_directions(W, ·)`` — must span W's row space (checked).
        ks: numbers of directions to keep; default ``DEFAULT_FRACTIONS`` of r. The full rank r is
            always added as the reference row; duplicates are dropped. k = 0 leaves only b.
        candidates: optional (n_images, n_classes) boolean mask of the classes each image may be
            assigned (the 1-vs-N / subset protocols); argmax is taken over allowed classes only.
            Every row needs ≥ 1 allowed class and must allow its own label.
        keep: "most" keeps the k most important directions (the paper's sweep); "least" keeps
            the k least important ones — the ablation control: it should collapse to chance
            when the privileged directions are what carries the signal.

    Returns one row per k with columns ``k``, ``n_directions`` (r), ``fraction_kept``,
    ``fraction_pruned``, ``accuracy``, ``n_correct``, ``n_images``, ``unpruned_accuracy``
    (H Wᵀ + b computed directly), ``keep``. Fractions are relative to r = min(n_classes, d_H),
    not d_H: when n_classes < d_H the null-space directions are trivially prunable and counting
    them would flatter the model.
    """
    W = np.asarray(W, dtype=np.float64)
    H = np.asarray(H)
    y = np.asarray(y)
    if W.ndim != 2 or H.ndim != 2:
        raise ValueError(f"W and H must be 2-D, got {W.shape} and {H.shape}")
    n, d = H.shape
    c = W.shape[0]
    if W.shape[1] != d or directions.dim != d:
        raise ValueError(
            f"dimension mismatch: H d={d}, W d={W.shape[1]}, directions d={directions.dim}"
        )
    bias = np.zeros(c) if b is None else np.asarray(b, dtype=np.float64).reshape(-1)
    if bias.shape != (c,):
        raise ValueError(f"b must have shape ({c},), got {bias.shape}")
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y must be an integer array of shape ({n},), got {y.dtype} {y.shape}")
    if n == 0:
        raise ValueError("no images")
    if y.min() < 0 or y.max() >= c:
        raise ValueError(f"labels must lie in [0, {c})")
    if keep not in ("most", "least"):
        raise ValueError(f"keep must be 'most' or 'least', got {keep!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be ≥ 1, got {chunk_size}")

    V = np.asarray(directions.vectors, dtype=np.float64)
    r = V.shape[0]
    residual = W - (W @ V.T) @ V
    scale = max(float(np.linalg.norm(W)), np.finfo(float).tiny)
    if float(np.linalg.norm(residual)) > 1e-6 * scale:
        raise ValueError("directions do not span W's row space; were they computed from this W?")

    mask = None
    if candidates is not None:
        mask = np.asarray(candidates, dtype=bool)
        if mask.shape != (n, c):
            raise ValueError(f"candidates must have shape ({n}, {c}), got {mask.shape}")
        if not mask.any(axis=1).all():
            raise ValueError("every image needs at least one candidate class")
        if not mask[np.arange(n), y].all():
            bad = int((~mask[np.arange(n), y]).sum())
            raise ValueError(f"{bad} images have their label outside their candidate set")

    if ks is None:
        ks_arr = np.ceil(np.asarray(DEFAULT_FRACTIONS) * r).astype(np.int64)
    else:
        ks_arr = np.asarray(list(ks), dtype=np.int64).reshape(-1)
        if ks_arr.size and (ks_arr.min() < 0 or ks_arr.max() > r):
            raise ValueError(f"ks must lie in [0, {r}] (r = number of directions)")
    ks_sorted = np.unique(np.append(ks_arr, r))

    Vk = V if keep == "most" else V[::-1]
    M = Vk @ W.T  # (r, c): logit contribution of a unit coordinate along each kept direction
    correct = np.zeros(ks_sorted.size, dtype=np.int64)
    correct_unpruned = 0
    for start in range(0, n, chunk_size):
        X = np.asarray(H[start : start + chunk_size], dtype=np.float64)
        yc = y[start : start + chunk_size]
        mc = None if mask is None else mask[start : start + chunk_size]
        Z = X @ Vk.T
        logits = np.broadcast_to(bias, (X.shape[0], c)).copy()
        prev = 0
        for j, k in enumerate(ks_sorted):
            if k > prev:
                logits += Z[:, prev:k] @ M[prev:k]
                prev = int(k)
            correct[j] += int((_masked_argmax(logits, mc) == yc).sum())
        correct_unpruned += int((_masked_argmax(X @ W.T + bias, mc) == yc).sum())

    return pd.DataFrame(
        {
            "k": ks_sorted,
            "n_directions": r,
            "fraction_kept": ks_sorted / r,
            "fraction_pruned": 1.0 - ks_sorted / r,
            "accuracy": correct / n,
            "n_correct": correct,
            "n_images": n,
            "unpruned_accuracy": correct_unpruned / n,
            "keep": keep,
        }
    )


def max_prunable_fraction(curve: pd.DataFrame, tolerance: float = 0.01) -> float:
    """Largest fraction of directions removable while accuracy stays within ``tolerance``.

    Tolerance is absolute accuracy (0.01 = one percentage point) below the full-rank (k = r)
    accuracy of the curve. It is the largest *pruned fraction that works*, read off the sampled
    ks; it does not require every milder pruning to work too (sweeps are near-monotone in
    practice, and a non-monotone curve is worth looking at rather than hiding).
    """
    if tolerance < 0:
        raise ValueError(f"tolerance must be ≥ 0, got {tolerance}")
    required = {"k", "n_directions", "accuracy", "fraction_pruned"}
    if missing := required - set(curve.columns):
        raise ValueError(f"curve lacks columns {sorted(missing)}")
    if curve["n_directions"].nunique() != 1:
        raise ValueError("curve mixes heads with different numbers of directions")
    r = int(curve["n_directions"].iloc[0])
    full = curve.loc[curve["k"] == r, "accuracy"]
    if full.empty:
        raise ValueError("curve has no full-rank (k = n_directions) reference row")
    ok = curve["accuracy"] >= float(full.iloc[0]) - tolerance - 1e-12
    return float(curve.loc[ok, "fraction_pruned"].max())
