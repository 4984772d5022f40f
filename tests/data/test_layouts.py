"""Dataset layouts: CounterAnimal folders, class folders, manifests, and their bad inputs."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from spurbench.data.layouts import open_dataset
from spurbench.errors import DatasetError
from tests.conftest import COUNTERANIMAL_CLASSES


def test_counteranimal_release_layout(counteranimal_dir):
    ds = open_dataset(counteranimal_dir)
    assert ds.classes.is_imagenet
    assert ds.present_labels == sorted(COUNTERANIMAL_CLASSES)
    t = ds.table
    assert len(t) == 3 * (5 + 4)
    assert set(t["group"]) == {"common", "counter"}
    cell = t[(t.label == 296) & (t.group == "counter")]
    assert set(cell["background"]) == {"grass"} and len(cell) == 4
    assert set(t.loc[t.label == 296, "class_name"]) == {"polar bear"}  # OpenAI names
    assert set(
        open_dataset(counteranimal_dir, name_set="wordnet").table.query("label == 296")[
            "class_name"
        ]
    ) == {"ice bear"}


def test_appendix_layout_maps_names_to_imagenet(tmp_path, counteranimal_dir):
    for folder in list(counteranimal_dir.iterdir()):
        folder.rename(
            counteranimal_dir / folder.name.split(" ", 1)[1]
        )  # "296 ice bear" -> "ice bear"
    assert open_dataset(counteranimal_dir).present_labels == sorted(COUNTERANIMAL_CLASSES)


def test_index_name_mismatch_is_refused(counteranimal_dir):
    (counteranimal_dir / "9 ostrich").rename(counteranimal_dir / "10 ostrich")
    with pytest.raises(DatasetError, match="index 10"):
        open_dataset(counteranimal_dir)


def test_missing_counter_folder_is_refused(counteranimal_dir):
    shutil.rmtree(counteranimal_dir / "9 ostrich" / "counter-water")
    with pytest.raises(DatasetError, match="exactly one common"):
        open_dataset(counteranimal_dir)


def test_empty_group_is_refused(counteranimal_dir):
    folder = counteranimal_dir / "100 black swan" / "counter-ground"
    for f in folder.iterdir():
        f.unlink()
    with pytest.raises(DatasetError, match="holds no images"):
        open_dataset(counteranimal_dir)


def test_custom_class_folders_get_their_own_label_space(tmp_path):
    import numpy as np

    from tests.conftest import write_image

    rng = np.random.default_rng(0)
    for cls in ("zorp", "blick"):
        for g in ("indoor", "outdoor"):
            write_image(tmp_path / "d" / cls / g / "a.png", rng)
    ds = open_dataset(tmp_path / "d")
    assert ds.classes.names == ("blick", "zorp") and not ds.classes.is_imagenet
    assert set(ds.table["group"]) == {"indoor", "outdoor"}


def _manifest(root, rows):
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(root / "m.csv", index=False)
    return root / "m.csv"


def test_manifest_with_imagenet_indices_and_split(counteranimal_dir):
    rows = [
        {
            "path": f"9 ostrich/common-ground/{i:03d}.png",
            "label": 9,
            "group": "common",
            "split": "test" if i < 3 else "train",
        }
        for i in range(5)
    ]
    ds = open_dataset(_manifest(counteranimal_dir, rows), split="test")
    assert len(ds) == 3 and ds.classes.is_imagenet and set(ds.table["class_name"]) == {"ostrich"}


def test_manifest_with_names_gets_dataset_classes(counteranimal_dir):
    rows = [
        {"path": "9 ostrich/common-ground/000.png", "label": "bird"},
        {"path": "296 ice bear/common-snow/000.png", "label": "bear"},
    ]
    ds = open_dataset(_manifest(counteranimal_dir, rows))
    assert ds.classes.names == ("bear", "bird") and set(ds.table["group"]) == {"all"}


@pytest.mark.parametrize("bad", ["../outside.png", "/etc/passwd"])
def test_manifest_paths_escaping_the_root_are_refused(tmp_path, bad):
    manifest = _manifest(tmp_path / "data", [{"path": bad, "label": 1}])
    with pytest.raises(DatasetError, match="outside the dataset root"):
        open_dataset(manifest)


def test_manifest_symlink_out_of_root_is_refused(tmp_path):
    (tmp_path / "secret.png").write_bytes(b"x")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "link.png").symlink_to(tmp_path / "secret.png")
    manifest = _manifest(tmp_path / "data", [{"path": "link.png", "label": 1}])
    with pytest.raises(DatasetError, match="outside"):
        open_dataset(manifest)
    from spurbench.data.layouts import load_manifest

    assert len(load_manifest(manifest, allow_outside_root=True)) == 1


def test_manifest_without_label_column(tmp_path):
    with pytest.raises(DatasetError, match="'label' column"):
        open_dataset(_manifest(tmp_path / "d", [{"path": "a.png"}]))


def test_not_a_dataset(tmp_path):
    with pytest.raises(DatasetError, match="neither a dataset folder"):
        open_dataset(tmp_path / "nope")
