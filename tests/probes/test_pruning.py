"""Ground-truth tests for spurbench.probes.pruning."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ortho_group

from spurbench.probes import max_prunable_fraction, privileged_directions, pruning_curve

SQ2 = np.sqrt(2.0)


def _planted_problem(n: int = 2000, seed: int = 0):
    """4 classes separated only along v₂, v₃; W also has larger-σ nuisance directions v₀, v₁.

    W = U diag(σ) V with U's columns chosen so that v₂, v₃ carry the class signal, v₀ moves all
    logits equally and v₁ favours classes {0, 2} vs {1, 3} by the sign of a pure-noise
    coordinate. Keeping only v₀, v₁ therefore predicts at chance (1/4).
    """
    rng = np.random.default_rng(seed)
    d_h = 16
    V = ortho_group.rvs(d_h, random_state=seed)[:4]
    U = np.column_stack(
        [
            np.array([1, 1, 1, 1]) / 2,
            np.array([1, -1, 1, -1]) / 2,
            np.array([1, 0, -1, 0]) / SQ2,
            np.array([0, 1, 0, -1]) / SQ2,
        ]
    )
    S = np.array([3.0, 2.5, 1.0, 0.8])
    W = U @ np.diag(S) @ V
    b = np.array([0.01, -0.02, 0.0, 0.01])
    y = rng.integers(0, 4, size=n)
    theta = y * np.pi / 2
    means = 4.0 * (np.cos(theta)[:, None] * V[2] + np.sin(theta)[:, None] * V[3])
    H = means + 0.3 * rng.standard_normal((n, d_h))
    return H, W, b, y


def test_planted_directions_carry_the_accuracy() -> None:
    H, W, b, y = _planted_problem()
    d = privileged_directions(W, H)
    assert set(d.original_index[:2].tolist()) == {2, 3}

    unpruned = float(((H @ W.T + b).argmax(axis=1) == y).mean())
    curve = pruning_curve(H, W, b, y, d, ks=[0, 1, 2, 3])
    assert curve["k"].tolist() == [0, 1, 2, 3, 4]
    acc = dict(zip(curve["k"], curve["accuracy"], strict=True))
    assert acc[4] == unpruned  # full rank reproduces the unpruned head exactly
    assert (curve["unpruned_accuracy"] == unpruned).all()
    assert unpruned > 0.9
    assert acc[2] >= unpruned - 0.01
    assert abs(acc[1] - 0.5) < 0.05  # v₂ alone separates classes 0/2 only
    assert max_prunable_fraction(curve) == 0.5
    np.testing.assert_allclose(curve["fraction_pruned"], [1.0, 0.75, 0.5, 0.25, 0.0])

    least = pruning_curve(H, W, b, y, d, ks=[2], keep="least")
    acc_least = float(least.loc[least["k"] == 2, "accuracy"].iloc[0])
    assert abs(acc_least - 0.25) < 0.05  # chance


def test_matches_explicit_projection() -> None:
    rng = np.random.default_rng(1)
    H, W, b = rng.standard_normal((300, 12)), rng.standard_normal((5, 12)), rng.standard_normal(5)
    y = rng.integers(0, 5, size=300)
    d = privileged_directions(W, H)
    curve = pruning_curve(H, W, b, y, d, ks=[1, 2, 3], chunk_size=64)
    for k in (1, 2, 3):
        Vk = d.vectors[:k]
        pred = ((H @ Vk.T @ Vk) @ W.T + b).argmax(axis=1)
        assert curve.loc[curve["k"] == k, "n_correct"].iloc[0] == int((pred == y).sum())
    # chunk size does not matter
    other = pruning_curve(H, W, b, y, d, ks=[1, 2, 3], chunk_size=1000)
    pd.testing.assert_frame_equal(curve, other)


def test_candidate_mask_restricts_argmax() -> None:
    rng = np.random.default_rng(2)
    n, c, d_h = 200, 6, 10
    H, W = rng.standard_normal((n, d_h)), rng.standard_normal((c, d_h))
    y = rng.integers(0, c, size=n)
    mask = rng.random((n, c)) < 0.4
    mask[np.arange(n), y] = True
    d = privileged_directions(W, H)
    curve = pruning_curve(H, W, None, y, d, ks=[2], candidates=mask)

    def by_hand(logits: np.ndarray) -> int:
        hits = 0
        for i in range(n):
            allowed = np.flatnonzero(mask[i])
            hits += int(allowed[np.argmax(logits[i, allowed])] == y[i])
        return hits

    full = int(curve.loc[curve["k"] == len(d), "n_correct"].iloc[0])
    assert full == by_hand(H @ W.T)
    V2 = d.vectors[:2]
    assert int(curve.loc[curve["k"] == 2, "n_correct"].iloc[0]) == by_hand(H @ V2.T @ V2 @ W.T)
    unmasked = pruning_curve(H, W, None, y, d, ks=[2])
    assert curve["accuracy"].iloc[-1] > unmasked["accuracy"].iloc[-1]  # the mask is used


def test_validation() -> None:
    rng = np.random.default_rng(3)
    H, W = rng.standard_normal((20, 8)), rng.standard_normal((4, 8))
    y = rng.integers(0, 4, size=20)
    d = privileged_directions(W, H)
    with pytest.raises(ValueError, match="span"):
        pruning_curve(H, rng.standard_normal((4, 8)), None, y, d, ks=[1])
    bad_mask = np.ones((20, 4), dtype=bool)
    bad_mask[0, y[0]] = False
    with pytest.raises(ValueError, match="label"):
        pruning_curve(H, W, None, y, d, ks=[1], candidates=bad_mask)
    with pytest.raises(ValueError):
        pruning_curve(H, W, None, y, d, ks=[5])
    with pytest.raises(ValueError):
        pruning_curve(H, W, None, y + 4, d, ks=[1])
    default = pruning_curve(H, W, None, y, d)
    assert default["k"].iloc[-1] == 4 and default["k"].is_monotonic_increasing


def test_max_prunable_fraction_hand_curve() -> None:
    curve = pd.DataFrame(
        {
            "k": [10, 20, 50, 80, 100],
            "n_directions": 100,
            "accuracy": [0.50, 0.795, 0.79, 0.805, 0.80],
            "fraction_pruned": [0.9, 0.8, 0.5, 0.2, 0.0],
        }
    )
    assert max_prunable_fraction(curve, tolerance=0.01) == 0.8
    assert max_prunable_fraction(curve, tolerance=0.004) == 0.2
    assert max_prunable_fraction(curve, tolerance=0.0) == 0.2
    assert max_prunable_fraction(curve, tolerance=0.3) == 0.9
    with pytest.raises(ValueError):
        max_prunable_fraction(curve[curve["k"] < 100])


def _independent_curve(H, W, b, y, rank_on, measure_on, k):
    """Pruned accuracy from numpy alone: SVD of W, importance averaged over ``rank_on``,
    accuracy on ``measure_on`` keeping the k most important right singular vectors."""
    _, S, Vt = np.linalg.svd(W, full_matrices=False)
    X = H[rank_on]
    cos = np.abs(X @ Vt.T) / np.linalg.norm(X, axis=1, keepdims=True)
    order = np.argsort(-(S / S.sum()) * cos.mean(axis=0), kind="stable")
    V = Vt[order[:k]]
    logits = H[measure_on] @ V.T @ V @ W.T + b
    return float((logits.argmax(axis=1) == y[measure_on]).mean())


def test_held_out_pruning_ranks_and_measures_on_disjoint_images() -> None:
    from spurbench.probes import held_out_pruning
    from spurbench.probes.pruning import held_out_split

    H, W, b, y = _planted_problem(n=400, seed=3)
    curve, split = held_out_pruning(H, W, b, y, ks=[1, 2, 3], seed=5)
    assert np.intersect1d(split.importance, split.evaluation).size == 0
    assert np.union1d(split.importance, split.evaluation).tolist() == list(range(400))
    assert split.importance.size == split.evaluation.size == 200
    again = held_out_split(400, seed=5)  # seeded: the same split again
    np.testing.assert_array_equal(again.evaluation, split.evaluation)
    most = curve[curve["keep"] == "most"].set_index("k")
    assert (most["n_images"] == 200).all() and (curve["n_importance_images"] == 200).all()
    for k in (1, 2, 3, 4):
        expected = _independent_curve(H, W, b, y, split.importance, split.evaluation, k)
        assert most.loc[k, "accuracy"] == pytest.approx(expected)


def test_held_out_pruning_is_not_fooled_by_the_ranking_images() -> None:
    """A nuisance direction dominates only the ranking images: held out, keeping the top
    direction is at chance, whereas an in-sample measurement (ranking on the held-out images
    themselves) would keep a signal direction and look far better."""
    from spurbench.probes import held_out_pruning
    from spurbench.probes.pruning import held_out_split

    H, W, b, y = _planted_problem(n=400, seed=4)
    split = held_out_split(400, seed=0)
    V = np.linalg.svd(W, full_matrices=False)[2]
    H = H.copy()
    H[split.importance] += 40.0 * V[0]  # v₀ moves every logit equally: no class signal
    curve, used = held_out_pruning(H, W, b, y, ks=[1], seed=0)
    np.testing.assert_array_equal(used.importance, split.importance)
    held_out = curve[(curve["keep"] == "most") & (curve["k"] == 1)]["accuracy"].iloc[0]
    in_sample = _independent_curve(H, W, b, y, split.evaluation, split.evaluation, 1)
    assert held_out == pytest.approx(
        _independent_curve(H, W, b, y, split.importance, split.evaluation, 1)
    )
    assert held_out < 0.35 and in_sample > 0.45  # chance is 1/4; v₂ alone gets 1/2
