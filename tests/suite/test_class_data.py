"""The packaged class lists and the ObjectNet mapping against independent published copies."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest
from open_clip import IMAGENET_CLASSNAMES
from torchvision.models._meta import _IMAGENET_CATEGORIES

from spurbench.data import imagenet_shifts as S
from tests.suite.standins import timm_info


def _packaged(name: str) -> str:
    return resources.files("spurbench.data").joinpath("imagenet", name).read_text()


def test_wnid_lists_are_timms_files_and_in_index_order():
    for ours, theirs in (
        ("wnids.txt", "imagenet_synsets.txt"),
        ("imagenet_r_wnids.txt", "imagenet_r_synsets.txt"),
        ("imagenet_a_wnids.txt", "imagenet_a_synsets.txt"),
    ):
        assert _packaged(ours).split() == timm_info(theirs)
    wnids = S.imagenet_wnids()
    assert len(wnids) == 1000 and list(wnids) == sorted(wnids)  # ImageFolder order = index order
    assert wnids[0] == "n01440764" and IMAGENET_CLASSNAMES[0] == "tench"


@pytest.mark.parametrize(
    ("indices", "timm_file"),
    [
        (S.imagenet_r_indices, "imagenet_r_indices.txt"),
        (S.imagenet_a_indices, "imagenet_a_indices.txt"),
    ],
)
def test_subset_indices_equal_timms_published_indices(indices, timm_file):
    assert list(indices()) == [int(i) for i in timm_info(timm_file)]
    assert len(indices()) == 200


def test_objectnet_mapping_derivation():
    classes = S.objectnet_classes()
    assert len(classes) == 113
    assert len(S.objectnet_folders()) == 313
    assert {c.folder for c in classes} <= set(S.objectnet_folders())
    union = [i for c in classes for i in c.imagenet]
    assert len(union) == len(set(union)) == 125  # no ImageNet class belongs to two ObjectNet ones
    assert S.objectnet_indices() == tuple(sorted(union))
    alarm = next(c for c in classes if c.folder == "alarm_clock")
    assert alarm.label == "Alarm clock"
    assert [IMAGENET_CLASSNAMES[i] for i in alarm.imagenet] == ["analog clock", "digital clock"]
    # every resolved index carries the label string the mapping named (first lemma = torchvision's)
    raw = json.loads(_packaged("objectnet_to_imagenet_1k.json"))
    for c in classes:
        named = {t.split(",")[0].strip() for t in raw[c.label].split("; ")}
        assert {_IMAGENET_CATEGORIES[i] for i in c.imagenet} == named


def test_objectnet_rule_hand_example():
    # alarm clock (409 analog, 530 digital), backpack (414), banana (954)
    labels = [409, 409, 409, 414, 954]
    predicted = [530, 409, 414, 409, 954]
    assert S.objectnet_correct(predicted, labels).tolist() == [True, True, False, False, True]
    assert S.objectnet_accuracy(predicted, labels) == pytest.approx(3 / 5)
    with pytest.raises(ValueError, match="representative"):
        S.objectnet_correct([409], [530])  # 530 is not a representative label


def test_objectnet_rule_equals_wise_ft_projection():
    """Masked argmax + set rule == wise-ft's project_logits (max per class, argmax over 113)."""
    rng = np.random.default_rng(0)
    classes = S.objectnet_classes()
    logits = rng.normal(size=(500, 1000))
    true = rng.integers(0, len(classes), size=500)
    mask = np.full(1000, -np.inf)
    mask[list(S.objectnet_indices())] = 0.0
    top1 = np.argmax(logits + mask, axis=1)
    ours = S.objectnet_correct(top1, [classes[t].representative for t in true])
    projected = np.stack([logits[:, list(c.imagenet)].max(axis=1) for c in classes], axis=1)
    theirs = projected.argmax(axis=1) == true
    np.testing.assert_array_equal(ours, theirs)
