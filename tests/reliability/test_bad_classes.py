"""Case 2: datasets whose classes cannot be evaluated fail before any model is loaded.

Loading a large model (and downloading its weights) takes minutes; a typo in a class folder or
class list must be reported first, naming the offending classes so the user can fix them.
Every test here replaces the runner's model loader with a sentinel that fails the test if it
is called (fixture ``no_model_load``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from spurbench.cli import app
from spurbench.errors import ClassListError, DatasetError, SpurbenchError
from spurbench.evaluate import evaluate
from tests.conftest import write_image

runner = CliRunner()
MODEL = "ViT-B-32,laion400m_e31"  # never loaded: the sentinel refuses it


def _eval(data: Path | str, protocol: str = "1v1000", **kw: object) -> None:
    evaluate(MODEL, data, [protocol], show_progress=False, **kw)


def test_empty_group_is_named(counteranimal_dir, no_model_load):
    for f in (counteranimal_dir / "100 black swan" / "counter-ground").iterdir():
        f.unlink()
    with pytest.raises(DatasetError, match="100 black swan/counter-ground holds no images"):
        _eval(counteranimal_dir)
    assert no_model_load == []


def test_empty_class_folder_is_named(counteranimal_dir, no_model_load):
    (counteranimal_dir / "296 ice bear").rename(counteranimal_dir / "old")
    shutil.rmtree(counteranimal_dir / "old")
    (counteranimal_dir / "296 ice bear").mkdir()
    with pytest.raises(DatasetError, match="296 ice bear holds no images"):
        _eval(counteranimal_dir)
    assert no_model_load == []


def _manifest(root: Path, labels: list[str]) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for i, label in enumerate(labels):
        write_image(root / f"{i}.png", rng, size=16)
        rows.append({"path": f"{i}.png", "label": label, "group": "common"})
    pd.DataFrame(rows).to_csv(root / "m.csv", index=False)
    return root / "m.csv"


def test_label_missing_from_class_list_is_named(tmp_path, no_model_load):
    manifest = _manifest(tmp_path / "d", ["cat", "dog", "zebra", "okapi"])
    classes = tmp_path / "classes.txt"
    classes.write_text("cat\ndog\n# comment\n")
    with pytest.raises(DatasetError, match=r"not in the class list: \['okapi', 'zebra'\]"):
        _eval(manifest, "1vN", classes=classes)
    assert no_model_load == []


def test_integer_label_outside_imagenet_is_named(tmp_path, no_model_load):
    manifest = _manifest(tmp_path / "d", ["9", "100", "1234"])
    with pytest.raises(DatasetError, match=r"\[1234\] are outside the class list of 1000"):
        _eval(manifest)
    assert no_model_load == []


def test_custom_classes_refuse_imagenet_protocols(tmp_path, no_model_load):
    manifest = _manifest(tmp_path / "d", ["cat", "dog"])
    for protocol in ("1v1000", "1v20"):
        with pytest.raises(ClassListError, match=f"{protocol} needs ImageNet-1k labels"):
            _eval(manifest, protocol)
    assert no_model_load == []


def test_class_outside_imagenet_is_named_among_many(counteranimal_dir, no_model_load):
    """One unknown class among many ImageNet ones: the message must name *that* class."""
    rng = np.random.default_rng(0)
    for folder in ("1 goldfish", "2 great white shark", "3 tiger shark", "zz unicorn"):
        for g in ("common-a", "counter-b"):
            write_image(counteranimal_dir / folder / g / "0.png", rng, size=16)
    with pytest.raises(ClassListError, match="zz unicorn"):
        _eval(counteranimal_dir)
    assert no_model_load == []


def test_cli_reports_bad_classes_with_exit_code_2(tmp_path, no_model_load):
    manifest = _manifest(tmp_path / "d", ["cat", "dog", "zebra"])
    classes = tmp_path / "classes.txt"
    classes.write_text("cat\ndog\n")
    out = runner.invoke(
        app,
        ["eval", "-m", MODEL, "-d", str(manifest), "--classes", str(classes),
         "--protocol", "1vN", "--store", str(tmp_path / "s.duckdb")],
    )  # fmt: skip
    assert out.exit_code == 2, out.output
    assert "Labels not in the class list: ['zebra']" in out.output
    assert not isinstance(out.exception, AssertionError | SpurbenchError)
    assert no_model_load == []
