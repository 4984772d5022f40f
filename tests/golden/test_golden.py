"""Golden outputs: every number the demo stores, to 1e-6, so a change that moves one fails here.

The expected numbers (tests/golden/data/demo_seed0.json) come from ``make_golden.py`` and were
reviewed by hand: accuracies in [0, 1], drop = common − counter, each interval contains its
estimate. A change that moves a number on purpose regenerates the file and says so in its commit.
The demo run is the session's ``demo_run`` fixture, shared with tests/test_demo.py, so no tiny
model is trained for this test. Training is deterministic for a given torch build and thread
count; on other hardware the weights, and so every number, can differ.
"""

from __future__ import annotations

import json

import pytest

from spurbench.data.dataset import DROP_GROUP
from tests.golden.golden import GOLDEN, TOLERANCE, demo_numbers, differences

pytestmark = pytest.mark.slow


def test_demo_numbers_match_the_goldens(demo_run) -> None:
    out, res = demo_run
    assert res.exit_code == 0, res.output
    expected = json.loads(GOLDEN.read_text())
    moved = differences(expected, demo_numbers(out))
    assert not moved, f"{len(moved)} numbers moved by more than {TOLERANCE}:\n" + "\n".join(
        sorted(moved)[:40]
    )


def test_goldens_are_internally_consistent() -> None:
    """The hand review, kept as a check: rates in [0, 1], intervals around their estimate,
    drop = common − counter for every model and class."""
    g = json.loads(GOLDEN.read_text())["metrics"]
    assert g
    for key, (value, lo, hi, _) in g.items():
        metric = key.rsplit("|", 1)[1]
        if metric in ("accuracy", "top5_accuracy", "balanced_accuracy", "worst_cell_accuracy"):
            assert 0 <= value <= 1, key
        if lo is not None and hi is not None:
            assert lo - TOLERANCE <= value <= hi + TOLERANCE, key
    for key, (drop, *_) in g.items():
        model, scope, label, group, metric = key.split("|")
        if metric != "drop" or group != DROP_GROUP:
            continue
        common = g[f"{model}|{scope}|{label}|common|accuracy"][0]
        counter = g[f"{model}|{scope}|{label}|counter|accuracy"][0]
        assert drop == pytest.approx(common - counter, abs=TOLERANCE), key


def test_a_number_moved_by_more_than_the_tolerance_is_caught() -> None:
    expected = json.loads(GOLDEN.read_text())
    moved = json.loads(GOLDEN.read_text())
    key = next(k for k in moved["metrics"] if k.endswith(f"{DROP_GROUP}|drop"))
    moved["metrics"][key][0] += 2 * TOLERANCE
    assert differences(expected, moved) == [f"/metrics/{key}[0]: "
                                            f"{expected['metrics'][key][0]} -> "
                                            f"{moved['metrics'][key][0]}"]  # fmt: skip
    moved["metrics"][key][0] -= 1.5 * TOLERANCE  # within tolerance again
    assert differences(expected, moved) == []
    moved["discovery"]["10"]["counter"] += " (moved)"  # a string that is not the golden one
    assert len(differences(expected, moved)) == 1
