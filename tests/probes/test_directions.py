"""Ground-truth tests for spurbench.probes.directions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ortho_group

from spurbench.probes import privileged_directions

SQ2 = np.sqrt(2.0)


def test_importance_hand_computed() -> None:
    # W = diag-like 2×3: σ = (2, 1), v₀ = ±e₁, v₁ = ±e₃.
    W = np.array([[2.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    H = np.array([[0, 0, 1], [0, 0, 1], [0, 1, 1], [1, 0, 0]], dtype=float)
    # |cos(h, e₁)| = 0, 0, 0, 1            → mean 1/4
    # |cos(h, e₃)| = 1, 1, 1/√2, 0         → mean (2 + 1/√2)/4
    imp_e1 = (2 / 3) * (1 / 4)
    imp_e3 = (1 / 3) * (2 + 1 / SQ2) / 4
    assert imp_e3 > imp_e1  # the data factor overturns the σ order
    d = privileged_directions(W, H)
    assert len(d) == 2 and d.dim == 3
    np.testing.assert_allclose(d.importance, [imp_e3, imp_e1], atol=1e-12)
    np.testing.assert_array_equal(d.original_index, [1, 0])
    np.testing.assert_allclose(d.singular_values, [1.0, 2.0], atol=1e-12)
    np.testing.assert_allclose(d.mean_abs_cos, [(2 + 1 / SQ2) / 4, 1 / 4], atol=1e-12)
    np.testing.assert_allclose(np.abs(d.vectors), [[0, 0, 1], [1, 0, 0]], atol=1e-12)
    assert d.concentration(1) == pytest.approx(imp_e3 / (imp_e1 + imp_e3), abs=1e-12)
    assert d.summary()["top1_original_index"] == 1


def test_importance_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    W = rng.standard_normal((7, 12))
    H = rng.standard_normal((50, 12)) + 0.3
    H[3] = 0.0  # zero feature vector contributes cos = 0
    d = privileged_directions(W, H, chunk_size=9)
    _, S, Vt = np.linalg.svd(W, full_matrices=False)
    for row in range(len(d)):
        i = d.original_index[row]
        v = Vt[i]
        cos = [abs(h @ v) / np.linalg.norm(h) if np.linalg.norm(h) > 0 else 0.0 for h in H]
        expected = S[i] / S.sum() * np.mean(cos)
        assert d.importance[row] == pytest.approx(expected, rel=1e-10)
    assert np.all(np.diff(d.importance) <= 0)


def test_planted_low_rank_directions_ranked_first() -> None:
    rng = np.random.default_rng(1)
    d_h, c, r = 64, 30, 3
    B = np.linalg.qr(rng.standard_normal((d_h, r)))[0]  # planted orthonormal directions
    A = rng.standard_normal((c, r)) * 5.0
    W = A @ B.T + 1e-3 * rng.standard_normal((c, d_h))
    H = rng.standard_normal((400, r)) @ B.T + 0.01 * rng.standard_normal((400, d_h))
    d = privileged_directions(W, H)
    assert len(d) == min(c, d_h)
    in_span = np.linalg.norm(d.vectors @ B, axis=1)  # norm of projection onto span(B)
    assert np.all(in_span[:r] > 0.999)
    assert np.all(in_span[r:] < 0.05)
    assert d.concentration(r) > 0.99
    assert d.summary()["concentration_top10"] > 0.99


def test_importance_can_demote_the_largest_singular_value() -> None:
    """Features never point along W's strongest directions: those must rank last."""
    rng = np.random.default_rng(2)
    d_h = 20
    V = ortho_group.rvs(d_h, random_state=3)[:5]  # 5 orthonormal rows
    U = ortho_group.rvs(8, random_state=4)[:, :5]
    S = np.array([10.0, 8.0, 1.0, 0.9, 0.8])
    W = U @ np.diag(S) @ V
    H = rng.standard_normal((300, 3)) @ V[2:] + 1e-3 * rng.standard_normal((300, d_h))
    d = privileged_directions(W, H)
    assert set(d.original_index[:3].tolist()) == {2, 3, 4}
    assert set(d.original_index[3:5].tolist()) == {0, 1}
    # W is 8×20 of rank 5: the 3 remaining SVD directions have σ ≈ 0 and rank last
    assert set(d.original_index[5:].tolist()) == {5, 6, 7}
    assert np.all(d.importance[5:] < 1e-12)


@pytest.mark.parametrize("shape", [(3, 8), (8, 3), (5, 5)])
def test_shapes_and_reconstruction(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(5)
    W = rng.standard_normal(shape)
    H = rng.standard_normal((20, shape[1]))
    d = privileged_directions(W, H)
    r = min(shape)
    assert d.vectors.shape == (r, shape[1])
    assert d.class_loadings.shape == (shape[0], r)
    np.testing.assert_allclose(d.vectors @ d.vectors.T, np.eye(r), atol=1e-12)
    W_rec = d.class_loadings @ np.diag(d.singular_values) @ d.vectors
    np.testing.assert_allclose(W_rec, W, atol=1e-12)
    np.testing.assert_array_equal(np.sort(d.original_index), np.arange(r))


def test_concentration_behaves() -> None:
    rng = np.random.default_rng(6)
    d = privileged_directions(rng.standard_normal((10, 16)), rng.standard_normal((40, 16)))
    conc = [d.concentration(k) for k in range(len(d) + 1)]
    assert conc[0] == 0.0
    assert conc[-1] == pytest.approx(1.0)
    assert np.all(np.diff(conc) >= 0)
    assert d.concentration(1000) == pytest.approx(1.0)
    # top-1 of a sorted list holds at least the average share
    assert conc[1] >= 1.0 / len(d)
    with pytest.raises(ValueError):
        d.concentration(-1)
    np.testing.assert_array_equal(d.top(2), d.vectors[:2])


def test_chunking_and_validation() -> None:
    rng = np.random.default_rng(7)
    W, H = rng.standard_normal((6, 10)), rng.standard_normal((33, 10)).astype(np.float32)
    a, b = privileged_directions(W, H), privileged_directions(W, H, chunk_size=4)
    np.testing.assert_allclose(a.importance, b.importance, rtol=1e-12)
    with pytest.raises(ValueError):
        privileged_directions(W, H[:, :9])
