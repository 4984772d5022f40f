"""Case 5: manifest paths that leave the dataset root are refused unless the user opts in.

A manifest downloaded with a dataset could point at ``~/.ssh/id_rsa`` or ``/etc/shadow``; its
"images" would be read (and their failures, with paths, written to the store). The library
tests in tests/data cover ``load_manifest``; these go through the CLI, and check that the
refusal comes before any model is loaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from spurbench.cli import app
from spurbench.store import ResultsStore
from tests.conftest import write_image

runner = CliRunner()


def _dataset(tmp_path: Path, escape: str) -> Path:
    """A manifest of two good images inside ``data/`` and one that escapes it as ``escape``."""
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    for name in ("a.png", "b.png"):
        write_image(data / name, rng, size=16)
    outside = tmp_path / "outside" / "secret.png"
    write_image(outside, rng, size=16)
    if escape == "dotdot":
        bad = "../outside/secret.png"
    elif escape == "absolute":
        bad = str(outside)
    else:
        (data / "link.png").symlink_to(outside)
        bad = "link.png"
    rows = [("a.png", "cat"), ("b.png", "dog"), (bad, "cat")]
    pd.DataFrame(rows, columns=["path", "label"]).to_csv(data / "m.csv", index=False)
    return data / "m.csv"


@pytest.mark.parametrize("escape", ["dotdot", "absolute", "symlink"])
def test_cli_refuses_paths_outside_the_root(tmp_path, escape, no_model_load):
    manifest = _dataset(tmp_path, escape)
    out = runner.invoke(
        app,
        ["eval", "-m", "ViT-B-32,openai", "-d", str(manifest), "--protocol", "1vN",
         "--store", str(tmp_path / "s.db")],
    )  # fmt: skip
    assert out.exit_code == 2, out.output
    assert "outside the dataset root" in out.output and "--allow-outside-root" in out.output
    assert no_model_load == []


def test_cli_opt_in_reads_them(tmp_path, tiny_clip_dir):
    manifest = _dataset(tmp_path, "symlink")
    store = tmp_path / "s.db"
    out = runner.invoke(
        app,
        ["eval", "-m", f"local-dir:{tiny_clip_dir}", "-d", str(manifest), "--protocol", "1vN",
         "--allow-outside-root", "--store", str(store), "--cache-dir", str(tmp_path / "c"), "-q"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    run = ResultsStore(store).runs().iloc[0]
    assert (run.n_images, run.n_skipped) == (3, 0)
