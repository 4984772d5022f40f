"""Issue 16, item 15: ordinary mistakes on the command line give one ``error:`` line, exit 2.

Each case used to end in a traceback, most of them after the model had loaded (minutes for a
large model). The runner's model loader is replaced by a sentinel (``no_model_load``) so a case
that reaches it fails; damaged ``local-dir:`` folders are the exception: they are found by
loading, and must then fail as one line too.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from spurbench.cli import app
from tests.conftest import save_tiny_clip, write_image
from tests.reliability.expect import one_error_line

runner = CliRunner()
MODEL = "ViT-B-32,laion400m_e31"  # never loaded: the sentinel refuses it
NOT_UTF8 = b"A photo of a \xff\xfe {c}.\n"


def _file(tmp: Path, name: str, content: bytes | str) -> Path:
    path = tmp / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def _int_manifest(root: Path) -> Path:
    """Integer labels 0..3 (a class list of 2 names leaves 2 and 3 out of range)."""
    rng = np.random.default_rng(0)
    rows = []
    for label in range(4):
        for group in ("common", "counter"):
            write_image(root / f"{label}{group}.png", rng, size=16)
            rows.append({"path": f"{label}{group}.png", "label": label, "group": group})
    pd.DataFrame(rows).to_csv(root / "m.csv", index=False)
    return root / "m.csv"


def _candidates(path: Path) -> list[str]:
    return ["--protocol", "1v20", "--candidates", str(path)]


# each case: (id, build args from (tmp, counteranimal dir) -> extra CLI args, expected words)
Case = tuple[str, Callable[[Path, Path], list[str]], str]
CASES: list[Case] = [
    ("batch-0", lambda t, d: ["--batch-size", "0"], "batch-size"),
    ("batch-neg", lambda t, d: ["--batch-size", "-1"], "batch-size"),
    ("tpl-photo", lambda t, d: ["--templates", str(_file(t, "t", "a {photo} of {c}"))], "{photo}"),
    ("tpl-brace", lambda t, d: ["--templates", str(_file(t, "t", "a {c} {"))], "format"),
    ("tpl-bytes", lambda t, d: ["--templates", str(_file(t, "t", NOT_UTF8))], "UTF-8"),
    ("tpl-dir", lambda t, d: ["--templates", str(t)], "folder"),
    ("cand-missing", lambda t, d: _candidates(t / "no.json"), "does not exist"),
    ("cand-dir", lambda t, d: _candidates(t), "folder"),
    ("cand-bytes", lambda t, d: _candidates(_file(t, "c", NOT_UTF8)), "UTF-8"),
    ("cand-json", lambda t, d: _candidates(_file(t, "c", "{9: [")), "not valid JSON"),
    ("device-unknown", lambda t, d: ["--device", "gpu0"], "Unknown --device"),
    ("device-typo", lambda t, d: ["--device", "cuda:x"], "Unknown --device"),
    ("cache-file", lambda t, d: ["--cache-dir", str(_file(t, "cache", "x"))], "is a file"),
    ("cache-under-file", lambda t, d: ["--cache-dir", str(_file(t, "f", "x") / "sub")],
     "cannot be written"),
]
if not torch.cuda.is_available():
    CASES.append(("device-cuda", lambda t, d: ["--device", "cuda"], "no usable CUDA"))
else:
    CASES.append(("device-cuda-index", lambda t, d: ["--device", "cuda:99"], "CUDA GPU(s)"))
if not torch.backends.mps.is_available():
    CASES.append(("device-mps", lambda t, d: ["--device", "mps"], "MPS"))


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_eval_option_mistake_is_one_line_before_the_model(
    case: Case, counteranimal_dir, tmp_path, no_model_load
):
    _, extra, words = case
    (tmp_path / "x").mkdir()
    args = ["eval", "-m", MODEL, "-d", str(counteranimal_dir), "-q", "--store",
            str(tmp_path / "s.duckdb"), "--cache-dir", str(tmp_path / "cache")]
    line = one_error_line(runner.invoke(app, [*args, *extra(tmp_path / "x", counteranimal_dir)]))
    assert words in line
    assert no_model_load == []


CLASS_CASES: list[tuple[str, Callable[[Path], Path], str]] = [
    ("missing", lambda t: t / "no.txt", "does not exist"),
    ("folder", lambda t: t, "folder"),
    ("not-utf8", lambda t: _file(t, "c.txt", b"cat\n\xff\xfe dog\n"), "UTF-8"),
    ("out-of-range", lambda t: _file(t, "c.txt", "cat\ndog\n"), "outside the class list"),
]


@pytest.mark.parametrize("case", CLASS_CASES, ids=[c[0] for c in CLASS_CASES])
def test_classes_file_mistake_is_one_line_before_the_model(case, tmp_path, no_model_load):
    _, make, words = case
    manifest = _int_manifest(tmp_path / "d")
    (tmp_path / "x").mkdir()
    args = ["eval", "-m", MODEL, "-d", str(manifest), "--protocol", "1vN", "-q",
            "--classes", str(make(tmp_path / "x")), "--store", str(tmp_path / "s.duckdb")]
    assert words in one_error_line(runner.invoke(app, args))
    assert no_model_load == []


def test_read_only_cache_dir_is_one_line(counteranimal_dir, tmp_path, monkeypatch, no_model_load):
    """Root writes anywhere, so the refusal is injected where the cache is first written."""
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o555)

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(cache))

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    args = ["eval", "-m", MODEL, "-d", str(counteranimal_dir), "-q", "--cache-dir", str(cache),
            "--store", str(tmp_path / "s.duckdb")]
    assert "Permission denied" in one_error_line(runner.invoke(app, args))
    assert no_model_load == []


def _corrupt(folder: Path) -> None:
    (folder / "open_clip_model.safetensors").write_bytes(b"not safetensors at all" * 8)


def _bad_json(folder: Path) -> None:
    (folder / "open_clip_config.json").write_text("{model_cfg: ")


def _mismatch(folder: Path) -> None:
    cfg = json.loads((folder / "open_clip_config.json").read_text())
    cfg["model_cfg"]["embed_dim"] = 16
    (folder / "open_clip_config.json").write_text(json.dumps(cfg))


def _truncated(folder: Path) -> None:
    weights = folder / "open_clip_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:4096])


@pytest.mark.parametrize("damage", [_corrupt, _bad_json, _mismatch, _truncated],
                         ids=["corrupt", "bad-json", "mismatch", "truncated"])
def test_damaged_local_dir_is_one_line(damage, counteranimal_dir, tmp_path):
    folder = save_tiny_clip(tmp_path / "clip")
    damage(folder)
    args = ["eval", "-m", f"local-dir:{folder}", "-d", str(counteranimal_dir), "-q",
            "--protocol", "1vN", "--store", str(tmp_path / "s.duckdb"),
            "--cache-dir", str(tmp_path / "cache")]
    assert "damaged" in one_error_line(runner.invoke(app, args))
