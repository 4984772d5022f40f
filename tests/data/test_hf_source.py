"""Hugging Face datasets (save_to_disk folders, image Parquet, hf: specs) read in place."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spurbench.data.dataset import SourceColumns
from spurbench.data.images import load_rgb
from spurbench.data.layouts import open_dataset
from spurbench.errors import DatasetError
from tests.conftest import make_counteranimal, write_image

datasets = pytest.importorskip("datasets")


@pytest.fixture(autouse=True)
def _hf_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))


def _rows(folder: Path) -> pd.DataFrame:
    """The CounterAnimal world as plain rows, the way a user would build a `datasets` table."""
    table = open_dataset(folder).table
    return table.assign(data=[Path(p).read_bytes() for p in table["path"]])


def _same(a, b) -> None:
    cols = ["label", "class_name", "group"]
    pd.testing.assert_frame_equal(a.table[cols], b.table[cols])
    assert a.classes == b.classes
    for pa, pb in zip(a.table["path"][::4], b.table["path"][::4], strict=True):
        assert np.array_equal(np.asarray(load_rgb(pa)), np.asarray(load_rgb(pb)))


def test_imagefolder_saved_to_disk(tmp_path):
    """`load_dataset("imagefolder")` + `save_to_disk`: ClassLabel names become the classes."""
    rng = np.random.default_rng(0)
    src = tmp_path / "pets"
    for cls, n in (("zorblax", 3), ("quuxling", 4)):
        for i in range(n):
            write_image(src / cls / f"{i}.png", rng)
    built = datasets.load_dataset("imagefolder", data_dir=str(src), split="train")
    built.save_to_disk(str(tmp_path / "saved"))
    ds = open_dataset(tmp_path / "saved")
    folder = open_dataset(src)
    assert sorted(ds.classes.names) == sorted(folder.classes.names)
    assert _labelled_pixels(ds) == _labelled_pixels(folder)


def _labelled_pixels(ds) -> list[tuple[str, bytes]]:
    pixels = [load_rgb(p).tobytes() for p in ds.table["path"]]
    return sorted(zip(ds.table["class_name"], pixels, strict=True))


def test_parquet_with_embedded_bytes_equals_the_folder(tmp_path, tiny_clip_dir):
    from spurbench.evaluate import evaluate

    folder = make_counteranimal(tmp_path / "ca")
    rows = _rows(folder)
    table = datasets.Dataset.from_dict(
        {
            "image": [{"bytes": b, "path": None} for b in rows["data"]],
            "label": rows["label"].tolist(),
            "group": rows["group"].tolist(),
        },
        features=datasets.Features(
            {
                "image": datasets.Image(),
                "label": datasets.Value("int64"),
                "group": datasets.Value("string"),
            }
        ),
    )
    table.to_parquet(str(tmp_path / "ca.parquet"))
    ds = open_dataset(tmp_path / "ca.parquet")
    _same(open_dataset(folder), ds)
    kw = dict(cache_dir=tmp_path / "c", show_progress=False, decode_workers=0, batch_size=8)
    (a,) = evaluate(f"local-dir:{tiny_clip_dir}", folder, ("1v1000",), **kw)
    (b,) = evaluate(f"local-dir:{tiny_clip_dir}", ds, ("1v1000",), **kw)
    pd.testing.assert_frame_equal(a.summary, b.summary)


def test_saved_dataset_dict_with_named_columns(tmp_path):
    folder = make_counteranimal(tmp_path / "ca", n_common=2, n_counter=2)
    rows = _rows(folder)
    names = sorted(set(rows["class_name"]))
    built = datasets.Dataset.from_dict(
        {
            "picture": [{"bytes": b, "path": None} for b in rows["data"]],
            "species": [names.index(c) for c in rows["class_name"]],
            "split_kind": rows["group"].tolist(),
        },
        features=datasets.Features(
            {
                "picture": datasets.Image(decode=False),
                "species": datasets.Value("int64"),
                "split_kind": datasets.Value("string"),
            }
        ),
    )
    datasets.DatasetDict({"test": built, "train": built.select([0, 1])}).save_to_disk(
        str(tmp_path / "saved")
    )
    with pytest.raises(DatasetError, match="--label-column"):
        open_dataset(tmp_path / "saved")
    cols = SourceColumns(image="picture", label="species", group="split_kind")
    ds = open_dataset(tmp_path / "saved", columns=cols, classes=_class_file(tmp_path, names))
    assert len(ds) == len(rows) and set(ds.table["split"]) == {"test"}  # test split preferred
    assert ds.table["class_name"].tolist() == rows["class_name"].tolist()
    assert ds.table["group"].tolist() == rows["group"].tolist()
    train = open_dataset(
        tmp_path / "saved", split="train", columns=cols, classes=_class_file(tmp_path, names)
    )
    assert len(train) == 2
    again = open_dataset(tmp_path / "saved", columns=cols, classes=_class_file(tmp_path, names))
    assert again.images_digest() == ds.images_digest()  # a rerun finds the feature cache


def _class_file(tmp_path: Path, names: list[str]) -> Path:
    path = tmp_path / "classes.txt"
    path.write_text("\n".join(names) + "\n")
    return path


@pytest.mark.subprocess
def test_hub_spec_offline_says_how_to_use_a_local_copy(tmp_path, tiny_clip_dir):
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "spurbench.cli",
            "eval",
            "-m",
            f"local-dir:{tiny_clip_dir}",
            "-d",
            "hf:nobody/no-such-set:cfg@test",
            "--store",
            str(tmp_path / "r.duckdb"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:")
    assert "save_to_disk" in lines[0] and "hf:/path/to/clone" in lines[0]


def test_hub_spec_reads_a_local_clone(tmp_path):
    """``hf:`` goes through load_dataset, which also takes a local clone of a hub repository."""
    folder = make_counteranimal(tmp_path / "ca", n_common=2, n_counter=1)
    rows = _rows(folder)
    clone = tmp_path / "clone" / "data"
    clone.mkdir(parents=True)
    datasets.Dataset.from_dict(
        {
            "image": [{"bytes": b, "path": None} for b in rows["data"]],
            "label": rows["label"].tolist(),
        },
        features=datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")}),
    ).to_parquet(str(clone / "test-00000-of-00001.parquet"))
    ds = open_dataset(f"hf:{tmp_path / 'clone'}@test")
    assert ds.table["label"].tolist() == rows["label"].tolist()
    assert (ds.table["group"] == "all").all()


def test_missing_library_gives_the_install_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(DatasetError, match=r"pip install 'spurbench\[hf\]'"):
        open_dataset("hf:org/name")
