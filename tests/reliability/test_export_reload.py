"""Issue 16, items 4 and 22: a ``curate export`` reloads exactly, whatever its class names.

An export is a dataset other people download: reading it back through the folder or through
its ``manifest.csv`` must give the same classes (true names, not ImageNet's "tench"), the same
images and the same groups. Class names that share a sanitised folder name (``a/b``, ``a-b``)
must stay apart, and the folder names must decode back to the true names.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pandas as pd
import pytest

from spurbench.curate import export_dataset, load_pool
from spurbench.curate.discovery import Discovery, DiscoveryConfig
from spurbench.data.layouts import load_folder, open_dataset
from tests.conftest import write_image

BACKGROUNDS = ("grass", "x/y")  # the second needs escaping in a folder name too


def _pool(tmp_path: Path, names: list[str]) -> Path:
    """A manifest pool: 2 images per (class, background), labels written as class names
    (and repeated as ``class_name``, which keeps a digit name such as ``7`` a name)."""
    rng = np.random.default_rng(0)
    rows = []
    for k, name in enumerate(names):
        for b, bg in enumerate(BACKGROUNDS):
            for i in range(2):
                rel = f"img/{k}-{b}-{i}.png"
                write_image(tmp_path / rel, rng, size=8)
                rows.append({"path": rel, "label": name, "class_name": name, "background": bg})
    pd.DataFrame(rows).to_csv(tmp_path / "pool.csv", index=False)
    return tmp_path / "pool.csv"


def _keep_all(pool) -> Discovery:
    """A discovery that keeps every class with common = grass, counter = x/y (no model run)."""
    selection = pd.DataFrame(
        {
            "label": range(len(pool.classes)),
            "class_name": pool.classes.names,
            "kept": True,
            "reason": "",
            "common": BACKGROUNDS[0],
            "counter": BACKGROUNDS[1],
            "gap": 0.5,
            "ci_separated": True,
        }
    )
    cells = pd.DataFrame(columns=["model", "label", "background", "accuracy", "n"])
    bias = pd.DataFrame(columns=["model", "selection_bias"])
    return Discovery(cells, selection, pd.DataFrame(columns=["model"]), bias, [], DiscoveryConfig())


def _content(ds) -> list[tuple[str, str, str, int]]:
    """(class name, group, background, file size) per image: what must survive a reload."""
    t = ds.table
    sizes = [Path(p).stat().st_size for p in t.path]
    return sorted(zip(t.class_name, t.group, t.background, sizes, strict=True))


@pytest.mark.parametrize(
    "names",
    [
        ["heron", "otter"],  # plain custom names: read back as ImageNet "tench", "goldfish"
        ["a/b", "a-b", "a%2Fb", "a\\b"],  # one sanitised folder for all four
        [".hidden", "7", "True", "50% off"],  # hidden folder, a digit name, a boolean word
    ],
)
def test_every_export_reloads_with_its_true_names(tmp_path, names):
    pool = load_pool(_pool(tmp_path / "pool", names))
    assert sorted(pool.classes.names) == sorted(names)
    out = export_dataset(pool, _keep_all(pool), tmp_path / "export").root
    group = {BACKGROUNDS[0]: "common", BACKGROUNDS[1]: "counter"}
    expected = sorted((n, group[bg], bg, s) for n, _, bg, s in _content(pool))
    assert open_dataset(out).name == "export"
    for entry in (out, out / "manifest.csv"):
        again = open_dataset(entry)
        assert sorted(again.classes.names) == sorted(names), entry
        assert _content(again) == expected, entry
    # the folder names are unique and decode to the true names; the layout alone reads the
    # same images and groups
    folders = [p.name for p in out.iterdir() if p.is_dir()]
    assert sorted(unquote(f) for f in folders) == sorted(names)
    raw = load_folder(out)
    assert sorted(unquote(n) for n in raw.classes.names) == sorted(names)
    assert sorted((unquote(n), g, unquote(b), s) for n, g, b, s in _content(raw)) == expected
