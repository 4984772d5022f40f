"""Issue 16, item 16: a dataset whose images are all unreadable stops before the model loads.

Typically a manifest copied away from its images: every path is missing. It used to load the
model, "encode" every image into a placeholder, and crash in scoring on an empty array; the
intended message was never reached. ``curate run`` crashed the same way.
"""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from spurbench.cli import app
from spurbench.data.layouts import open_dataset
from spurbench.evaluate.preflight import check_readable
from spurbench.models.base import ModelAdapter
from tests.conftest import write_image
from tests.reliability.expect import one_error_line
from tests.reliability.hostile import hostile_manifest

runner = CliRunner()
MODEL = "ViT-B-32,laion400m_e31"  # never loaded


def _moved_manifest(tmp: Path) -> Path:
    manifest = hostile_manifest(tmp / "data", classes=("cat", "dog"), per_group=2)
    (tmp / "elsewhere").mkdir()
    return Path(shutil.copy(manifest, tmp / "elsewhere" / "m.csv"))


def _garbage_images(tmp: Path) -> Path:
    manifest = hostile_manifest(tmp / "data", classes=("cat", "dog"), per_group=2)
    for png in manifest.parent.glob("*.png"):
        png.write_bytes(b"not an image")
    return manifest


@pytest.mark.parametrize(
    "make, words",
    [(_moved_manifest, "moved away from its images"), (_garbage_images, "can be read")],
    ids=["manifest-moved", "all-undecodable"],
)
def test_eval_refuses_before_the_model(make, words, tmp_path, no_model_load):
    args = ["eval", "-m", MODEL, "-d", str(make(tmp_path)), "--protocol", "1vN", "-q"]
    result = runner.invoke(app, [*args, "--store", str(tmp_path / "s.duckdb")])
    assert words in one_error_line(result)
    assert no_model_load == []


def test_curate_run_refuses_before_the_model(tmp_path, monkeypatch):
    loaded: list[str] = []

    def refuse(name: str, *args: object, **kwargs: object) -> ModelAdapter:
        loaded.append(name)
        raise AssertionError("a model was loaded before the pool was checked")

    registry = importlib.import_module("spurbench.models.registry")
    monkeypatch.setattr(registry, "create_model", refuse)  # curation loads through it
    args = ["curate", "run", "-p", str(_moved_manifest(tmp_path)), "--work", str(tmp_path / "w")]
    result = runner.invoke(app, [*args, "-r", MODEL, "-q"])
    assert "moved away from its images" in one_error_line(result)
    assert loaded == []


def test_one_readable_image_is_enough(tmp_path):
    manifest = _garbage_images(tmp_path)
    write_image(tmp_path / "data" / "c0_common_0.png", np.random.default_rng(0), size=16)
    check_readable(open_dataset(manifest))  # no error: the other images are skipped later
