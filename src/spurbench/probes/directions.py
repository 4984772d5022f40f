"""Privileged directions of a linear head: SVD of the head weighted by how features use it.

Follows Crabbé, Rodríguez, Shankar, Zappella & Blaas, *Interpreting CLIP: Insights on the
Robustness to ImageNet Distribution Shifts* (TMLR 2024; arXiv:2310.13040). A linear head
W (n_classes × d_H) only ever reads features through its row space, and its SVD W = UΣVᵀ gives
an orthonormal basis of that space, the right singular vectors v_i, ordered by how strongly W
amplifies them. Which of those directions *matter* also depends on the data: a direction W
amplifies a lot but that features never point along contributes nothing to the logits. Hence
the importance score

    importance_i = (σ_i / Σ_j σ_j) · E_x |cos(h(x), v_i)|,

a head factor times a data factor. In robust CLIP models the outlier features make a few v_i
dominate this score ("privileged directions"), and pruning (see ``pruning.py``) shows those few
carry the predictive power.

Representation directions are signless: SVD determines each v_i only up to sign, which is why
the data factor uses |cos|.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Directions", "privileged_directions"]

DEFAULT_CHUNK = 8192


@dataclass(frozen=True)
class Directions:
    """Right singular directions of a head, sorted by importance (most important first).

    Fields (r = min(n_classes, d_H) directions; row/entry i always refers to the same direction):
        vectors: (r, d_H) orthonormal rows v_i.
        singular_values: (r,) σ_i of each direction.
        importance: (r,) (σ_i/Σσ)·E|cos(h, v_i)|, non-increasing.
        mean_abs_cos: (r,) the data factor E_x|cos(h(x), v_i)|.
        original_index: (r,) position of the direction in the SVD's σ-descending order, so
            ``original_index[0] != 0`` means the most important direction is not the one W
            stretches most.
        class_loadings: (n_classes, r) left singular vectors u_i: how each direction moves each
            class logit (W = Σ σ_i u_i v_iᵀ); same sign convention as ``vectors``.
        n_images: number of images the data factor was averaged over.
    """

    vectors: np.ndarray = field(repr=False)
    singular_values: np.ndarray
    importance: np.ndarray
    mean_abs_cos: np.ndarray
    original_index: np.ndarray
    class_loadings: np.ndarray = field(repr=False)
    n_images: int

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def dim(self) -> int:
        """Representation dimension d_H."""
        return int(self.vectors.shape[1])

    def top(self, k: int) -> np.ndarray:
        """The k most important directions as (k, d_H) rows."""
        return self.vectors[: self._check_k(k)]

    def _check_k(self, k: int) -> int:
        if int(k) != k or k < 0:
            raise ValueError(f"k must be a non-negative integer, got {k}")
        return min(int(k), len(self))

    def concentration(self, k: int) -> float:
        """Share of total importance held by the top-k directions (k ≥ r gives 1).

        1/r per direction would mean no privileged directions; the paper's robust models put a
        large share in very few.
        """
        total = float(self.importance.sum())
        if total <= 0:
            return float("nan")
        return float(self.importance[: self._check_k(k)].sum() / total)

    def summary(self) -> dict[str, float | int]:
        """Headline numbers: top-1 and top-10 concentration, direction count."""
        return {
            "n_directions": len(self),
            "dim": self.dim,
            "concentration_top1": self.concentration(1),
            "concentration_top10": self.concentration(10),
            "top1_original_index": int(self.original_index[0]),
        }


def privileged_directions(
    W: np.ndarray, H: np.ndarray, *, chunk_size: int = DEFAULT_CHUNK
) -> Directions:
    """SVD of the head W and importance of each right singular vector on features H.

    Args:
        W: (n_classes, d_H) head weights; either side may be larger. Only the r = min(n_classes,
            d_H) directions of the thin SVD are returned: when n_classes < d_H the rest of the
            representation space is W's null space and cannot affect any logit.
        H: (n_images, d_H) features feeding the head (processed in float64 chunks; may be a
            memmap). Images with h = 0 contribute cos = 0.

    Ties in importance keep SVD (σ-descending) order, so the result is deterministic.
    """
    W = np.asarray(W, dtype=np.float64)
    H = np.asarray(H)
    if W.ndim != 2 or H.ndim != 2:
        raise ValueError(f"W and H must be 2-D, got shapes {W.shape} and {H.shape}")
    if W.shape[1] != H.shape[1]:
        raise ValueError(f"W has d_H={W.shape[1]} but H has d_H={H.shape[1]}")
    if H.shape[0] == 0:
        raise ValueError("H has no images")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be ≥ 1, got {chunk_size}")
    U, S, Vt = np.linalg.svd(W, full_matrices=False)
    n = H.shape[0]
    abs_cos_sum = np.zeros(S.shape[0])
    for start in range(0, n, chunk_size):
        X = np.asarray(H[start : start + chunk_size], dtype=np.float64)
        norms = np.linalg.norm(X, axis=1)
        proj = np.abs(X @ Vt.T)
        nz = norms > 0
        abs_cos_sum += (proj[nz] / norms[nz, None]).sum(axis=0)
    mean_abs_cos = abs_cos_sum / n
    s_total = S.sum()
    weight = S / s_total if s_total > 0 else np.zeros_like(S)
    importance = weight * mean_abs_cos
    order = np.argsort(-importance, kind="stable")
    return Directions(
        vectors=Vt[order],
        singular_values=S[order],
        importance=importance[order],
        mean_abs_cos=mean_abs_cos[order],
        original_index=order.astype(np.int64),
        class_loadings=U[:, order],
        n_images=int(n),
    )
