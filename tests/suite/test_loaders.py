"""Each loader on a generated stand-in of its published layout, and on wrong layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from spurbench.data import imagenet_shifts as S
from spurbench.errors import DatasetError
from tests.suite import standins as F

WNIDS = F.timm_info("imagenet_synsets.txt")
R_WNIDS = F.timm_info("imagenet_r_synsets.txt")
A_WNIDS = F.timm_info("imagenet_a_synsets.txt")
R_INDICES = [int(i) for i in F.timm_info("imagenet_r_indices.txt")]
A_INDICES = [int(i) for i in F.timm_info("imagenet_a_indices.txt")]
A_ONLY = next(w for w in A_WNIDS if w not in R_WNIDS)
ON_FOLDERS = ["alarm_clock", "backpack", "banana", "air_freshener"]  # the last is not in ImageNet


def _handful(tmp_path: Path, name: str) -> tuple[Path, list[int]]:
    """A few classes of dataset ``name``; returns its folder and the ImageNet labels expected."""
    if name == "imagenet":
        return F.make_val(tmp_path, [WNIDS[i] for i in (0, 1, 999)]), [0, 1, 999]
    if name == "imagenet-v2":
        return F.make_v2(tmp_path, [0, 2, 10, 999]), [0, 2, 10, 999]
    if name == "imagenet-sketch":
        return F.make_sketch(tmp_path, [WNIDS[i] for i in (5, 500)]), [5, 500]
    if name == "imagenet-r":
        return F.make_r(tmp_path, R_WNIDS[:3]), R_INDICES[:3]
    if name == "imagenet-a":
        return F.make_a(tmp_path, A_WNIDS[-3:]), A_INDICES[-3:]
    return F.make_objectnet(tmp_path, ON_FOLDERS), [409, 414, 954]


@pytest.mark.parametrize("name", S.SUITE_NAMES)
def test_loader_finds_every_class(tmp_path, name):
    folder, expected = _handful(tmp_path, name)
    ds = S.load_shift(name, folder)
    assert ds.name == name and ds.groups == [name]
    assert ds.present_labels == sorted(expected)
    assert ds.classes.is_imagenet
    assert (ds.table.groupby("label").size() == 2).all()
    assert ds.table["path"].map(lambda p: Path(p).is_file()).all()
    subset = {"imagenet-r": R_INDICES, "imagenet-a": A_INDICES, "objectnet": S.objectnet_indices()}
    assert ds.label_subset == (tuple(subset[name]) if name in subset else None)


def test_objectnet_labels_and_names(tmp_path):
    ds = S.load_objectnet(F.make_objectnet(tmp_path, ON_FOLDERS))
    by_folder = ds.table.drop_duplicates("class_folder").set_index("class_folder")
    assert set(by_folder.index) == {"alarm_clock", "backpack", "banana"}  # air_freshener skipped
    assert by_folder.loc["alarm_clock", "label"] == 409
    assert by_folder.loc["alarm_clock", "class_name"] == "Alarm clock"


def test_full_published_structures(tmp_path):
    """All 200 ImageNet-R / -A folders and all 313 ObjectNet folders are accepted."""
    r = S.load_imagenet_r(F.make_r(tmp_path, R_WNIDS, n=1))
    a = S.load_imagenet_a(F.make_a(tmp_path, A_WNIDS, n=1))
    on = S.load_objectnet(F.make_objectnet(tmp_path, sorted(S.objectnet_folders()), n=1))
    assert r.present_labels == R_INDICES == list(r.label_subset)
    assert a.present_labels == A_INDICES == list(a.label_subset)
    assert len(on.present_labels) == 113 and len(on) == 113
    assert set(on.present_labels) <= set(on.label_subset) and len(on.label_subset) == 125


def test_wrapper_folders_and_v2_integer_order(tmp_path):
    F.make_val(tmp_path, WNIDS[:2])
    assert S.load_imagenet_val(tmp_path / "imagenet").present_labels == [0, 1]  # val/ inside
    on = F.make_objectnet(tmp_path, ["banana"])
    assert S.load_objectnet(on / "images").present_labels == [954]
    v2 = S.load_imagenet_v2(F.make_v2(tmp_path, [2, 10]))
    # an ImageFolder would sort "10" before "2" and swap the labels
    assert dict(zip(v2.table["class_folder"], v2.table["label"], strict=True)) == {"2": 2, "10": 10}


@pytest.mark.parametrize(
    ("name", "folders", "message"),
    [
        ("imagenet-r", ["goldfish", "n01443537"], r"imagenet-r/<wnid>/\*\.jpg"),
        ("imagenet-r", [A_ONLY], "ImageNet-A classes"),
        ("imagenet", ["0", "1"], "ImageNetV2's layout"),
        ("imagenet-v2", [WNIDS[0]], r"<0\.\.999>"),
        ("imagenet-sketch", ["alarm_clock"], "ObjectNet folders"),
        ("objectnet", ["n01443537"], r"objectnet-1\.0/images/<folder>/\*\.png"),
    ],
)
def test_wrong_layout_names_the_expected_one(tmp_path, name, folders, message):
    F.class_folders(tmp_path / "d", folders, ".jpg", n=1)
    with pytest.raises(DatasetError, match="does not have the published layout") as err:
        S.load_shift(name, tmp_path / "d")
    assert err.match(message)


def test_unsorted_val_and_empty_class_folder(tmp_path):
    F.image(tmp_path / "val" / "ILSVRC2012_val_00000001.JPEG", np.random.default_rng())
    with pytest.raises(DatasetError, match="not sorted into class folders"):
        S.load_imagenet_val(tmp_path / "val")
    (tmp_path / "r" / R_WNIDS[0]).mkdir(parents=True)
    with pytest.raises(DatasetError, match="holds no images"):
        S.load_imagenet_r(tmp_path / "r")
    with pytest.raises(DatasetError, match="Unknown suite datasets"):
        S.load_shift("imagenet-c", tmp_path)
