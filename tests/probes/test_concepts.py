"""Ground-truth tests for spurbench.probes.concepts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from spurbench.probes import (
    binary_concepts,
    concept_direction_scores,
    concepts_per_direction,
    count_concepts,
    encoded_concepts,
    linear_probe_concepts,
    privileged_directions,
    top_concepts_per_direction,
    unique_concepts,
)


def _score(scores: pd.DataFrame, concept: str, original_index: int) -> pd.Series:
    row = scores[(scores["concept"] == concept) & (scores["original_index"] == original_index)]
    assert len(row) == 1
    return row.iloc[0]


def test_ap_hand_example() -> None:
    # v for original index 0 is ±e₁ (σ = 1 > 0.5), so ⟨h, v⟩ = ±first column.
    W = np.array([[1.0, 0.0], [0.0, 0.5]])
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    H = np.column_stack([s, [0.1, -0.2, 0.3, 0.0, 0.2]])
    table = pd.DataFrame({"c": ["y", "n", "y", "y", "n"]})
    d = privileged_directions(W, H)
    scores = concept_direction_scores(H, d, table)
    # "y" ranked by +s: hits at ranks 1, 3, 4 → (1 + 2/3 + 3/4)/3; by −s: ranks 2, 3, 5
    ap_y = max((1 + 2 / 3 + 3 / 4) / 3, (1 / 2 + 2 / 3 + 3 / 5) / 3)
    # "n" by +s: ranks 2, 5 → (1/2 + 2/5)/2 = 0.45; by −s: ranks 1, 4 → (1 + 2/4)/2 = 0.75
    ap_n = 0.75
    assert _score(scores, "c=y", 0)["ap"] == pytest.approx(ap_y, abs=1e-12)
    assert _score(scores, "c=n", 0)["ap"] == pytest.approx(ap_n, abs=1e-12)
    y = table["c"].eq("y").to_numpy()
    assert ap_y == pytest.approx(max(average_precision_score(y, s), average_precision_score(y, -s)))
    # the orientation that won is reported against the stored vector's sign
    v0 = d.vectors[d.original_index == 0][0]
    expected_sign = 1 if v0[0] > 0 else -1
    assert _score(scores, "c=y", 0)["sign"] == expected_sign
    assert _score(scores, "c=n", 0)["sign"] == -expected_sign


def test_ap_equals_sklearn_with_ties() -> None:
    rng = np.random.default_rng(0)
    n, d_h = 120, 6
    H = np.round(rng.standard_normal((n, d_h)), 1)  # many tied projections along e-axes
    W = np.eye(d_h)[:4] * np.array([[4.0], [3.0], [2.0], [1.0]])
    table = pd.DataFrame(
        {"a": rng.choice(["p", "q", "r"], size=n), "b": rng.integers(0, 4, size=n)}
    )
    d = privileged_directions(W, H)
    scores = concept_direction_scores(H, d, table)
    meta, Y = binary_concepts(table)
    assert len(scores) == len(meta) * len(d)
    for row in range(len(d)):
        proj = H @ d.vectors[row]
        assert len(np.unique(proj)) < n  # ties really occur
        for j, name in enumerate(meta["concept"]):
            expected = max(
                average_precision_score(Y[:, j], proj), average_precision_score(Y[:, j], -proj)
            )
            got = scores[(scores["direction"] == row) & (scores["concept"] == name)]["ap"]
            assert got.iloc[0] == pytest.approx(expected, abs=1e-12)


def _planted_concepts(n: int = 600, seed: int = 1):
    rng = np.random.default_rng(seed)
    d_h = 32
    W = rng.standard_normal((10, d_h))
    H0 = rng.standard_normal((n, d_h))
    d0 = privileged_directions(W, H0)
    v, idx = d0.vectors[0], int(d0.original_index[0])
    color = rng.choice(["red", "blue", "green"], size=n)
    H = H0 - 4.0 * np.outer(color == "red", v)  # negative shift: tests the ±v handling
    table = pd.DataFrame({"color": color, "noise": rng.choice(["a", "b"], size=n)})
    return H, W, table, idx


def test_planted_concept_is_encoded_random_is_not() -> None:
    H, W, table, idx = _planted_concepts()
    d = privileged_directions(W, H)
    scores = concept_direction_scores(H, d, table)
    planted = _score(scores, "color=red", idx)
    assert planted["ap"] >= 0.9
    assert planted["n_positives"] == (table["color"] == "red").sum()
    v = d.vectors[d.original_index == idx][0]
    assert planted["sign"] == (-1 if (H[table["color"] == "red"] @ v).mean() < 0 else 1)
    noise_aps = scores.loc[scores["column"] == "noise", "ap"]
    assert noise_aps.max() < 0.7

    found = encoded_concepts(scores, threshold=0.9)
    assert "color=red" in found
    assert not any(c.startswith("noise=") for c in found)
    assert count_concepts(scores, threshold=0.9) == len(found)
    # only the planted direction encodes red
    red_dirs = scores.loc[(scores["concept"] == "color=red") & (scores["ap"] >= 0.9)]
    assert red_dirs["original_index"].tolist() == [idx]

    per_dir = concepts_per_direction(scores, threshold=0.9)
    assert len(per_dir) == len(d)
    assert per_dir.sum() == len(red_dirs) + len(found - {"color=red"})
    top = top_concepts_per_direction(scores, n=2)
    red_row = int(red_dirs["direction"].iloc[0])
    first = top[(top["direction"] == red_row) & (top["rank"] == 0)]
    assert first["concept"].iloc[0] == "color=red"
    assert (top.groupby("direction").size() == 2).all()


def test_top_n_directions_and_skipping() -> None:
    H, W, table, _ = _planted_concepts(n=200)
    table = table.assign(rare=["x"] * 2 + ["y"] * 198, always=True)
    d = privileged_directions(W, H)
    scores = concept_direction_scores(H, d, table, top_n_directions=3, min_positives=5)
    assert sorted(scores["direction"].unique().tolist()) == [0, 1, 2]
    skipped = scores.attrs["skipped"]
    assert set(skipped) == {"rare=x", "always=True"}
    assert "rare=y" in set(scores["concept"])


def test_binary_concepts_expansion() -> None:
    table = pd.DataFrame(
        {"bg": ["land", None, "water", "land"], "flag": [True, False, True, False],
         "n": [10, 9, 10, 2]}
    )
    meta, Y = binary_concepts(table)
    assert meta["concept"].tolist() == [
        "bg=land", "bg=water", "flag=True", "n=2", "n=9", "n=10"
    ]
    np.testing.assert_array_equal(Y[:, 0], [True, False, False, True])
    np.testing.assert_array_equal(Y[:, 2], [True, False, True, False])
    np.testing.assert_array_equal(Y[:, 5], [True, False, True, False])


def test_unique_concepts() -> None:
    per_model = {"clip": {"a", "b", "c"}, "sup": {"b", "d"}, "ft": {"c", "e"}}
    assert unique_concepts(per_model) == {"clip": {"a"}, "sup": {"d"}, "ft": {"e"}}
    assert unique_concepts({"only": {"x"}}) == {"only": {"x"}}
    assert unique_concepts({"m1": {"x"}, "m2": {"x"}}) == {"m1": set(), "m2": set()}


def test_linear_probe_finds_planted_concept() -> None:
    H, _, table, _ = _planted_concepts(n=300, seed=2)
    table = table.assign(rare=["x"] * 3 + ["y"] * 297)
    res = linear_probe_concepts(H, table, cv=5, seed=0)
    by = res.set_index("concept")
    assert by.loc["color=red", "score_mean"] >= 0.9
    assert by.loc["noise=a", "score_mean"] < 0.75
    assert "rare=x" in res.attrs["skipped"] and "rare=x" not in by.index
    assert "rare=y" in res.attrs["skipped"]  # only 3 negatives
    acc = linear_probe_concepts(H, table[["color"]], metric="accuracy")
    assert acc.set_index("concept").loc["color=red", "score_mean"] > 0.9
    again = linear_probe_concepts(H, table[["color"]], cv=5, seed=0)
    pd.testing.assert_frame_equal(again, res[res["column"] == "color"].reset_index(drop=True))


def test_both_orientations_from_one_sort_equal_sklearn() -> None:
    from spurbench.probes.concepts import _average_precision_columns

    rng = np.random.default_rng(4)
    scores = np.round(rng.standard_normal(80), 1)
    Y = rng.random((80, 5)) < np.array([0.05, 0.2, 0.5, 0.8, 0.95])
    ap_pos, ap_neg = _average_precision_columns(scores, Y)
    for j in range(Y.shape[1]):
        assert ap_pos[j] == pytest.approx(average_precision_score(Y[:, j], scores), abs=1e-12)
        assert ap_neg[j] == pytest.approx(average_precision_score(Y[:, j], -scores), abs=1e-12)


def test_multi_label_boolean_columns_keep_their_category_name() -> None:
    from spurbench.probes.concepts import binary_concepts

    table = pd.DataFrame({"object=dog": [True, False, True], "object=cat": [True, True, False],
                          "flag": [False, True, False]})  # fmt: skip
    meta, Y = binary_concepts(table)
    assert meta["concept"].tolist() == ["object=dog", "object=cat", "flag=True"]
    assert meta["column"].tolist() == ["object", "object", "flag"]
    assert meta["value"].tolist() == ["dog", "cat", True]
    np.testing.assert_array_equal(Y[:, 0], [True, False, True])
    np.testing.assert_array_equal(Y[:, 1], [True, True, False])
