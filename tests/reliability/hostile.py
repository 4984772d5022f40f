"""A results store whose every user string is hostile: rich markup, mathtext, HTML, formulas.

Model folder, dataset folder, store path and class names are what a careless (or hostile) user
controls; each is printed by the CLI, drawn by matplotlib, or written to Markdown and CSV. The
store is built once per session with the real pipeline (tiny random-init CLIP, 1vN).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import save_tiny_clip, write_image

#: one of each: mathtext, broken mathtext (a parse error), formula, HTML, rich markup
CLASSES = ("$x$ cat", "$x^$ bird", "=HYPERLINK(1)", "<b>bold</b> dog", "[bold]fox[/x]")
#: the dataset's name (a manifest's stem): a formula and HTML
DATASET = "=SUM(1) <b>ds"


@dataclass(frozen=True)
class HostileStore:
    store: Path
    model_dir: Path
    manifest: Path
    cache: Path


def hostile_manifest(root: Path, classes: tuple[str, ...] = CLASSES, per_group: int = 3) -> Path:
    """A manifest (in a folder whose name is rich markup) of common/counter images per class."""
    rng = np.random.default_rng(0)
    rows = []
    for k, c in enumerate(classes):
        for g in ("common", "counter"):
            for i in range(per_group):
                path = f"c{k}_{g}_{i}.png"
                write_image(root / path, rng, size=16)
                rows.append({"path": path, "label": c, "group": g})
    manifest = root / f"{DATASET}.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest


@pytest.fixture(scope="session")
def hostile_store(tmp_path_factory: pytest.TempPathFactory) -> HostileStore:
    from spurbench.evaluate import evaluate

    tmp = tmp_path_factory.mktemp("hostile")
    model_dir = save_tiny_clip(tmp / "[bold]model[/x]")
    manifest = hostile_manifest(tmp / "data[/x]")
    store = tmp / "store[/x].duckdb"
    evaluate(
        f"local-dir:{model_dir}",
        manifest,
        ["1vN"],
        store=store,
        cache_dir=tmp / "cache",
        show_progress=False,
        n_boot=20,
    )
    return HostileStore(store, model_dir, manifest, tmp / "cache")
