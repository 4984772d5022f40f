"""Case 16.11: when a class lacks one group, every place that shows the drop says what it covers.

The balanced common and counter accuracies average all classes with images in the group; the
drop only the classes that have both. With a class missing its counter images the printed drop
is then not common − counter, which reads as an arithmetic error unless it is said.
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from spurbench.cli import app
from spurbench.store import ResultsStore
from tests.reliability.conftest import make_grouped

runner = CliRunner()
CLASSES = ("9 ostrich", "100 black swan", "296 ice bear")


def test_drop_over_paired_classes_is_said_everywhere(tmp_path, tiny_clip_dir):
    folder = make_grouped(tmp_path / "data", per_group=3, classes=CLASSES)
    shutil.rmtree(folder / "296 ice bear" / "counter-water")  # ice bear: common images only
    rows = [
        (str(f.relative_to(folder)), f.parts[-3].split()[0], f.parts[-2].split("-")[0])
        for f in sorted(folder.rglob("*.png"))
    ]
    data = folder / "manifest.csv"
    pd.DataFrame(rows, columns=["path", "label", "group"]).to_csv(data, index=False)
    store = tmp_path / "r.duckdb"
    out = runner.invoke(
        app,
        [
            "eval", "-m", f"local-dir:{tiny_clip_dir}", "-d", str(data), "--protocol", "1vN",
            "--store", str(store), "--cache-dir", str(tmp_path / "c"), "--batch-size", "8", "-q",
        ],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    flat = " ".join(out.output.split())
    assert "drop is over the 2 classes with both groups" in flat
    assert "common averages 3 classes and counter 2" in flat

    # The stored drop really is the paired-class one (independent recomputation).
    rs = ResultsStore(store)
    (run_id,) = rs.runs()["run_id"]
    p = rs.predictions(run_id)
    acc = p.groupby(["label", "group_name"])["correct"].mean().unstack()
    paired = acc.dropna()
    assert len(paired) == 2
    expected_drop = (paired["common"] - paired["counter"]).mean()
    summary = rs.summary().iloc[0]
    assert np.isclose(summary["drop"], expected_drop)
    assert (summary["classes_common"], summary["classes_counter"], summary["classes_paired"]) == (
        3,
        2,
        2,
    )

    out = runner.invoke(app, ["results", "--store", str(store)])
    assert out.exit_code == 0, out.output
    assert "drop is over the 2 classes with both groups" in " ".join(out.output.split())

    report = tmp_path / "report"
    out = runner.invoke(
        app, ["report", "--store", str(store), "-o", str(report), "--no-thumbnails"]
    )
    assert out.exit_code == 0, out.output
    md = (report / "summary.md").read_text()
    assert "drop is over the 2 classes with both groups" in md
    assert "drop is over the 2 classes with both groups" in (report / "index.html").read_text()
    models = pd.read_csv(report / "models.csv")
    assert models["classes_paired"].tolist() == [2]


def test_no_note_when_every_class_has_both_groups(tmp_path, tiny_clip_dir):
    data = make_grouped(tmp_path / "data", per_group=2)
    out = runner.invoke(
        app,
        [
            "eval", "-m", f"local-dir:{tiny_clip_dir}", "-d", str(data), "--protocol", "1vN",
            "--store", str(tmp_path / "r.duckdb"), "--cache-dir", str(tmp_path / "c"), "-q",
        ],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "classes with both groups" not in out.output
