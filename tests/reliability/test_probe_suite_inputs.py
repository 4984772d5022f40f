"""`probe` and `suite` check batch size, device and cache folder before any model loads.

`eval` got these checks in issue 16; `probe` ended in a ZeroDivisionError, a CUDA driver
traceback or a FileNotFoundError, after loading the model. Every case must be one `error:`
line with exit 2, and the model loader (replaced by a sentinel) must never be reached.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from spurbench.cli import app
from tests.reliability.expect import one_error_line
from tests.suite.standins import make_r

runner = CliRunner()
MODEL = "ViT-B-32,laion400m_e31"  # never loaded: the sentinel refuses it

CASES: list[tuple[str, Callable[[Path], list[str]], str]] = [
    ("batch-0", lambda t: ["--batch-size", "0"], "batch-size"),
    ("device-unknown", lambda t: ["--device", "gpu0"], "Unknown --device"),
    ("cache-under-file", lambda t: ["--cache-dir", str(_file(t) / "sub")], "cannot be written"),
]
if not torch.cuda.is_available():
    CASES.append(("device-cuda", lambda t: ["--device", "cuda:7"], "no usable CUDA"))


def _file(tmp: Path) -> Path:
    path = tmp / "a-file"
    path.write_text("x")
    return path


@pytest.fixture
def no_load(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []

    def refuse(name: str, *args: object, **kwargs: object) -> None:
        calls.append(str(name))
        raise AssertionError(f"a model ({name}) was loaded before input validation")

    # every stage loads through the registry (the suite through create_classifier)
    registry = importlib.import_module("spurbench.models.registry")
    monkeypatch.setattr(registry, "create_model", refuse)
    return calls


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_probe_option_mistake_is_one_line_before_the_model(
    case, counteranimal_dir, tmp_path, no_load
):
    _, extra, words = case
    args = ["probe", "-m", MODEL, "-d", str(counteranimal_dir), "-q",
            "--store", str(tmp_path / "s.duckdb"), *extra(tmp_path)]  # fmt: skip
    assert words in one_error_line(runner.invoke(app, args))
    assert no_load == []


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_suite_option_mistake_is_one_line_before_the_model(case, tmp_path, no_load):
    _, extra, words = case
    make_r(tmp_path / "root", ["n01443537", "n01484850"])
    args = ["suite", "-m", MODEL, "--root", str(tmp_path / "root"), "--datasets", "imagenet-r",
            "--store", str(tmp_path / "s.duckdb"), *extra(tmp_path)]  # fmt: skip
    assert words in one_error_line(runner.invoke(app, args))
    assert no_load == []
