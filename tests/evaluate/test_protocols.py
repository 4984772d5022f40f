"""Protocols are restrictions of one set of logits: check against plain numpy argmax."""

from __future__ import annotations

import numpy as np

from spurbench.evaluate import protocols as P


def test_restricted_predictions_equal_argmax_over_candidates():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 1000))
    labels = rng.choice([9, 100, 296], size=50)
    cand = {y: np.sort(rng.choice(1000, 20, replace=False)) for y in (9, 100, 296)}
    top, _ = P.restricted_topk(logits, P.mask_for(cand, labels, 1000), k=5)
    for i in range(50):
        c = cand[int(labels[i])]
        assert top[i, 0] == c[np.argmax(logits[i, c])]
        assert list(top[i]) == list(c[np.argsort(-logits[i, c])[:5]])


def test_1v1000_is_plain_argmax_and_1vN_restricts_to_present():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(30, 1000))
    labels = rng.choice([9, 100, 296], size=30)
    top, _ = P.restricted_topk(
        logits, P.mask_for(P.candidates_all(1000, [9, 100, 296]), labels, 1000)
    )
    assert (top[:, 0] == logits.argmax(1)).all()
    present = np.array([9, 100, 296])
    top, _ = P.restricted_topk(
        logits, P.mask_for(P.candidates_present([9, 100, 296]), labels, 1000), k=3
    )
    assert (top[:, 0] == present[logits[:, present].argmax(1)]).all()


def test_confusable_candidates_hand_example():
    # 3 labels, k=2: class 0's images score label 2 highest on average, then label 0.
    scores = np.array([[0.5, 0.1, 0.9], [0.7, 0.0, 0.6], [0.1, 0.9, 0.2]])
    labels = np.array([0, 0, 1])
    cand = P.confusable_candidates(scores, labels, k=2)
    assert list(cand[0]) == [0, 2]  # means: 0.6, 0.05, 0.75
    assert list(cand[1]) == [1, 2]  # 0.9 and 0.2 beat 0.1


def test_true_class_always_among_candidates():
    scores = np.array([[0.0, 1.0, 0.9, 0.8]])
    cand = P.confusable_candidates(scores, np.array([0]), k=2)
    assert 0 in cand[0] and len(cand[0]) == 2


def test_candidates_round_trip(tmp_path):
    cand = {9: np.array([1, 9, 50]), 100: np.array([3, 100, 7])}
    P.save_candidates(cand, tmp_path / "c.json")
    back = P.load_candidates(tmp_path / "c.json", [9, 100], size=3)
    assert {k: list(v) for k, v in back.items()} == {9: [1, 9, 50], 100: [3, 7, 100]}
