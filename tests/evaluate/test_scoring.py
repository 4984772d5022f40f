"""The scoring pipeline on hand-made logits: label spaces, restricted top-k, accepted sets."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from spurbench.data.classes import ClassList
from spurbench.data.dataset import ImageDataset
from spurbench.errors import ClassListError
from spurbench.evaluate.label_space import LabelSpace, label_space
from spurbench.evaluate.scoring import predictions, score_features, skipped
from spurbench.models.base import LinearHead

N_LABELS = 6


def _dataset(labels: list[int], **extra: object) -> ImageDataset:
    n = len(labels)
    table = pd.DataFrame(
        {
            "image_id": [f"i{k}" for k in range(n)],
            "path": [f"/x/{k}.png" for k in range(n)],
            "label": labels,
            "class_name": [f"c{y}" for y in labels],
            "group": ["common", "counter"] * (n // 2) + ["common"] * (n % 2),
        }
    )
    classes = ClassList(tuple(f"c{k}" for k in range(N_LABELS)))
    return ImageDataset("toy", Path("toy"), table, classes, **extra)  # type: ignore[arg-type]


def _scored(logits: np.ndarray, ok: np.ndarray, space: LabelSpace, dataset: ImageDataset):
    """Features are the rows of ``logits`` over every label; the head picks ``space.labels``."""
    head = LinearHead(np.eye(N_LABELS, dtype=np.float32)[space.labels])
    feats = SimpleNamespace(
        ok=ok, embedding=logits.astype(np.float32), errors=["" if g else "bad" for g in ok]
    )
    return score_features(feats, head, space, dataset)  # type: ignore[arg-type]


def test_1vn_competes_among_present_classes_only() -> None:
    ds = _dataset([1, 1, 3, 3])
    space = label_space("1vN", ds)
    assert space.labels.tolist() == [1, 3] and space.stored_sets == {} and space.digest is None
    # label 5 has the highest logit everywhere but is not present: it never wins
    logits = np.array(
        [[0, 2, 0, 1, 0, 9], [0, 1, 0, 2, 0, 9], [0, 1, 0, 3, 0, 9], [0, 4, 0, 3, 0, 9]]
    )
    scores = _scored(logits, np.ones(4, bool), space, ds)
    preds = predictions(scores, ds, space)
    assert [t[0] for t in preds["topk_labels"]] == [1, 3, 3, 1]
    assert preds["correct"].tolist() == [True, False, True, False]
    assert preds["correct_top5"].all()  # two labels compete: the truth is always in the top 2


def test_label_subset_restricts_1v1000_and_accepted_sets_decide_right() -> None:
    """ObjectNet-like: logits restricted to the subset {0, 2, 4}; class 0 accepts 0 and 2."""
    ds = _dataset([0, 4, 0], label_subset=(0, 2, 4), label_sets={0: (0, 2), 4: (4,)})
    space = label_space("1v1000", ds)
    assert space.labels.tolist() == [0, 2, 4]
    logits = np.array([[0, 0, 5, 9, 1, 0], [0, 0, 5, 9, 1, 0], [1, 0, 0, 9, 0, 7]])
    ok = np.array([True, True, False])
    scores = _scored(logits, ok, space, ds)
    preds = predictions(scores, ds, space)
    assert [t[0] for t in preds["topk_labels"]] == [2, 2]  # 3 and 5 are outside the subset
    assert preds["correct"].tolist() == [True, False]  # 2 is accepted for class 0, not for 4
    assert skipped(scores, ds).to_dict("records") == [{"image_id": "i2", "reason": "bad"}]


def test_per_class_sets_mask_each_image_and_are_stored() -> None:
    ds = _dataset([0, 1])
    sets = {0: np.array([0, 2]), 1: np.array([1, 5])}
    space = LabelSpace("1v20", sets)
    assert space.labels.tolist() == [0, 1, 2, 5]
    assert space.mask(np.array([0, 1])).tolist() == [[1, 0, 1, 0], [0, 1, 0, 1]]
    assert space.stored_sets == {0: [0, 2], 1: [1, 5]} and space.digest is not None
    logits = np.array([[0, 9, 1, 0, 0, 0], [0, 0, 9, 0, 0, 1]])  # the top label is masked out
    preds = predictions(_scored(logits, np.ones(2, bool), space, ds), ds, space)
    assert [t.tolist() for t in preds["topk_labels"]] == [[2, 0], [5, 1]]


def test_no_readable_image_is_an_error() -> None:
    ds = _dataset([0, 1])
    with pytest.raises(ClassListError, match="No image"):
        _scored(np.zeros((2, N_LABELS)), np.zeros(2, bool), label_space("1vN", ds), ds)
