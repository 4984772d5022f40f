"""Metrics against hand computations and scipy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from spurbench.data.dataset import DROP_GROUP
from spurbench.evaluate.metrics import (
    Estimate,
    Summary,
    class_balanced_accuracy,
    clopper_pearson,
    headline,
    jeffreys_bootstrap_counts,
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
    assert s["drop", DROP_GROUP] == pytest.approx(0.875 - 0.25)
    assert s["accuracy", "common"] == pytest.approx(5 / 6)
    assert s["accuracy", "counter"] == pytest.approx(1 / 6)
    assert s["drop_per_image", DROP_GROUP] == pytest.approx(5 / 6 - 1 / 6)
    assert s["worst_cell_accuracy", "1/counter"] == 0.0


def test_headline_is_the_balanced_accuracies_and_the_drop():
    frame = summarize(LABELS, GROUPS, CORRECT, n_boot=500)
    h = headline(frame)
    assert isinstance(h, Summary) and isinstance(h.drop, Estimate)
    assert h.common.value == pytest.approx((3 / 4 + 2 / 2) / 2) and h.common.n == 2
    assert h.counter.value == pytest.approx((1 / 2 + 0 / 4) / 2) and h.counter.n == 2
    assert h.drop.value == pytest.approx(0.875 - 0.25) and h.drop.n == 2  # classes paired
    for e in (h.common, h.counter, h.drop):
        assert e.lo <= e.value <= e.hi
    with pytest.raises(AttributeError):  # frozen: a headline is read, not edited
        h.drop = h.common  # type: ignore[misc]


def test_headline_without_counter_group_has_no_drop():
    h = headline(summarize(LABELS, np.full(LABELS.size, "common"), CORRECT, n_boot=50))
    assert h.common is not None and h.common.value == pytest.approx((4 / 6 + 2 / 6) / 2)
    assert h.counter is None and h.drop is None


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


def test_bootstrap_drop_matches_independent_beta_binomial_draws():
    """Each cell's draw is beta-binomial (Jeffreys rate, then a binomial count): drawn here with
    scipy, one cell at a time, the drop's percentile interval agrees with the vectorised one."""
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 40)
    groups = np.tile(np.repeat(["common", "counter"], 20), 3)
    correct = rng.random(120) < np.where(groups == "common", 0.8, 0.5)
    fast = summarize(labels, groups, correct, n_boot=4000, seed=3)
    row = fast[fast.metric == "drop"].iloc[0]
    acc = {}
    for g in ("common", "counter"):
        per_class = []
        for y in range(3):
            sel = (labels == y) & (groups == g)
            n, k = int(sel.sum()), int(correct[sel].sum())
            draws = stats.betabinom.rvs(n, k + 0.5, n - k + 0.5, size=4000, random_state=rng)
            per_class.append(draws / n)
        acc[g] = np.mean(per_class, axis=0)
    lo, hi = np.percentile(acc["common"] - acc["counter"], [2.5, 97.5])
    assert row.ci_low == pytest.approx(lo, abs=0.02)
    assert row.ci_high == pytest.approx(hi, abs=0.02)


def test_a_cell_at_100_percent_keeps_an_interval():
    """One class, common 10/10, counter 5/10: the common side is uncertain too, as the
    beta-binomial quantiles say (scipy), so the drop's interval is wider than the counter's."""
    labels = np.zeros(20, int)
    groups = np.repeat(["common", "counter"], 10)
    correct = np.r_[np.ones(10, bool), np.arange(10) < 5]
    h = headline(summarize(labels, groups, correct, n_boot=4000, seed=0))
    common, counter, drop = h.common, h.counter, h.drop
    assert common.value == 1.0 and common.lo < 1.0
    expected_lo = stats.betabinom.ppf(0.025, 10, 10.5, 0.5) / 10
    assert common.lo == pytest.approx(expected_lo, abs=0.1 + 1e-9)  # one count of 10
    assert drop.hi - drop.lo > counter.hi - counter.lo


def test_many_cells_at_100_percent_keep_the_estimate_inside_the_interval():
    """The Jeffreys rate leans towards ½; with 45 perfect classes every draw is below 100 %,
    and the interval is widened to contain the estimate rather than exclude it."""
    labels = np.repeat(np.arange(45), 40)
    groups = np.tile(np.repeat(["common", "counter"], 20), 45)
    correct = (groups == "common") | (np.arange(labels.size) % 2 == 0)
    h = headline(summarize(labels, groups, correct, n_boot=1000))
    assert h.common.lo < h.common.value == h.common.hi == 1.0
    assert h.drop.lo < h.drop.value == 0.5 < h.drop.hi


def _drop_coverage(resample, n, p_common, p_counter, *, reps=1000, n_boot=800, seed=0):
    """Share of simulated test sets whose 95 % percentile interval of the class-balanced drop
    contains the true drop; ``resample(k, n, n_boot, rng)`` draws counts of shape (n_boot, *k)."""
    rng = np.random.default_rng(seed)
    p = np.r_[p_common, p_counter]
    n = np.broadcast_to(np.asarray(n), p.shape)
    k = rng.binomial(n, p, size=(reps, p.size))
    acc = resample(k, n, n_boot, rng) / n  # (n_boot, reps, cells)
    c = len(p_common)
    drop = acc[..., :c].mean(-1) - acc[..., c:].mean(-1)
    lo, hi = np.percentile(drop, [2.5, 97.5], axis=0)
    truth = np.mean(p_common) - np.mean(p_counter)
    return float(np.mean((lo <= truth + 1e-12) & (truth - 1e-12 <= hi)))


def _plain_binomial(k, n, n_boot, rng):
    return rng.binomial(n, k / n, size=(n_boot, *k.shape))


COVERAGE_CASES = [  # (images per cell, common rates, counter rates)
    (5, [0.98, 0.9, 0.98], [0.02, 0.3, 0.1]),
    (10, [0.98, 0.9, 0.98], [0.02, 0.3, 0.1]),
    (20, [0.98, 0.9, 0.98], [0.02, 0.3, 0.1]),
    (5, [0.98, 0.98, 0.98], [0.5, 0.5, 0.5]),
    (10, [0.98, 0.98, 0.98], [0.5, 0.5, 0.5]),
    ([5, 12, 20, 8, 15, 6], [0.98, 0.8, 0.6], [0.5, 0.02, 0.3]),
]


def test_jeffreys_bootstrap_covers_the_true_drop_on_small_cells():
    """Nominal 95 %: the Jeffreys bootstrap covers at least 94 % in every case; the plain
    binomial bootstrap (a cell at 0/n or n/n never moves) falls short in some."""
    ours = [_drop_coverage(jeffreys_bootstrap_counts, *case) for case in COVERAGE_CASES]
    plain = [_drop_coverage(_plain_binomial, *case) for case in COVERAGE_CASES]
    assert min(ours) >= 0.94, dict(zip(map(str, COVERAGE_CASES), ours, strict=True))
    assert min(plain) < 0.94


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
