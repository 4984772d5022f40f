"""Metrics against hand computations and scipy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from spurbench.evaluate.metrics import (
    class_balanced_accuracy,
    clopper_pearson,
    per_class,
    summarize,
)


@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 10), (10, 10), (57, 113), (1, 1), (250, 260)])
def test_clopper_pearson_equals_scipy_binomtest(k, n):
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    lo, hi = clopper_pearson(k, n)
    assert lo == pytest.approx(ci.low, abs=1e-10)
    assert hi == pytest.approx(ci.high, abs=1e-10)


# A hand-made table: two classes, common and counter groups.
#   class 0 common: 3/4 correct, counter: 1/2 correct
#   class 1 common: 2/2 correct, counter: 0/4 correct
LABELS = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
GROUPS = np.array(["common"] * 4 + ["counter"] * 2 + ["common"] * 2 + ["counter"] * 4)
CORRECT = np.array([1, 1, 1, 0, 1, 0, 1, 1, 0, 0, 0, 0], bool)


def test_summary_equals_hand_computation():
    s = summarize(LABELS, GROUPS, CORRECT, n_boot=500).set_index(["metric", "group"])["value"]
    assert s["balanced_accuracy", "common"] == pytest.approx((3 / 4 + 2 / 2) / 2)
    assert s["balanced_accuracy", "counter"] == pytest.approx((1 / 2 + 0 / 4) / 2)
    assert s["drop", "common-counter"] == pytest.approx(0.875 - 0.25)
    assert s["accuracy", "common"] == pytest.approx(5 / 6)
    assert s["accuracy", "counter"] == pytest.approx(1 / 6)
    assert s["drop_per_image", "common-counter"] == pytest.approx(5 / 6 - 1 / 6)
    assert s["worst_cell_accuracy", "1/counter"] == 0.0


def test_class_balanced_differs_from_per_image():
    assert class_balanced_accuracy(CORRECT[GROUPS == "common"], LABELS[GROUPS == "common"]) == 0.875


def test_per_class_drops():
    df = per_class(LABELS, GROUPS, CORRECT)
    drops = df.drop_duplicates("label").set_index("label")["drop"]
    assert drops[0] == pytest.approx(0.25) and drops[1] == pytest.approx(1.0)


def test_bootstrap_interval_is_seeded_and_shrinks_with_data():
    a = summarize(LABELS, GROUPS, CORRECT, n_boot=400, seed=1)
    b = summarize(LABELS, GROUPS, CORRECT, n_boot=400, seed=1)
    assert a.equals(b)
    big = summarize(np.tile(LABELS, 20), np.tile(GROUPS, 20), np.tile(CORRECT, 20), n_boot=400)
    width = lambda df: float((df.ci_high - df.ci_low)[df.metric == "drop"].iloc[0])  # noqa: E731
    assert width(big) < width(a) / 2


def _balanced(c, labels, groups, g):
    return np.mean([c[(labels == y) & (groups == g)].mean() for y in np.unique(labels)])


def test_bootstrap_drop_matches_direct_resampling():
    """Binomial cell draws are the image-level stratified bootstrap, in distribution."""
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 40)
    groups = np.tile(np.repeat(["common", "counter"], 20), 3)
    correct = rng.random(120) < np.where(groups == "common", 0.8, 0.5)
    fast = summarize(labels, groups, correct, n_boot=4000, seed=3)
    row = fast[fast.metric == "drop"].iloc[0]
    draws = []
    for _ in range(1500):
        c = correct.copy()
        for y in range(3):
            for g in ("common", "counter"):
                idx = np.flatnonzero((labels == y) & (groups == g))
                c[idx] = correct[rng.choice(idx, size=len(idx))]
        draws.append(
            _balanced(c, labels, groups, "common") - _balanced(c, labels, groups, "counter")
        )
    lo, hi = np.percentile(draws, [2.5, 97.5])
    assert row.ci_low == pytest.approx(lo, abs=0.03)
    assert row.ci_high == pytest.approx(hi, abs=0.03)


cells = st.lists(
    st.tuples(st.integers(0, 3), st.sampled_from(["common", "counter"]), st.booleans()),
    min_size=2,
    max_size=60,
)


@settings(max_examples=60, deadline=None)
@given(cells)
def test_metric_properties(rows):
    labels = np.array([r[0] for r in rows])
    groups = np.array([r[1] for r in rows])
    correct = np.array([r[2] for r in rows])
    s = summarize(labels, groups, correct, n_boot=100)
    acc = s[s.metric.str.contains("accuracy")]
    assert ((acc.value >= 0) & (acc.value <= 1)).all()
    assert ((acc.ci_low <= acc.value + 1e-12) & (acc.value <= acc.ci_high + 1e-12)).all()
    swapped = np.where(groups == "common", "counter", "common")
    s2 = summarize(labels, swapped, correct, n_boot=100)
    d1 = s[s.metric == "drop"].value
    d2 = s2[s2.metric == "drop"].value
    if len(d1):
        assert float(d1.iloc[0]) == pytest.approx(-float(d2.iloc[0]))
