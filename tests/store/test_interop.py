"""Results leave and enter as clip_benchmark JSON, as frames, as notebook tables, as --json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score
from typer.testing import CliRunner

from spurbench.cli import app
from spurbench.store import ResultsStore, load_results

runner = CliRunner()


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, tiny_clip_dir):
    from tests.conftest import make_counteranimal

    tmp = tmp_path_factory.mktemp("interop")
    data = make_counteranimal(tmp / "ca")
    store = tmp / "r.duckdb"
    args = [
        "eval",
        "-m",
        f"local-dir:{tiny_clip_dir}",
        "-d",
        str(data),
        "--protocol",
        "1v1000,1vN",
        "--store",
        str(store),
        "--cache-dir",
        str(tmp / "c"),
        "--json",
    ]
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    return store, json.loads(out.stdout)


def test_eval_json_is_the_runs(evaluated):
    store, printed = evaluated
    assert [r["protocol"] for r in printed] == ["1v1000", "1vN"]
    summary = ResultsStore(store).summary().set_index("protocol")
    for run in printed:
        drop = next(s for s in run["summary"] if s["metric"] == "drop")
        assert drop["value"] == pytest.approx(summary.loc[run["protocol"], "drop"])


def test_clip_benchmark_export_schema_and_values(evaluated, tmp_path):
    store, _ = evaluated
    out = runner.invoke(
        app,
        [
            "results",
            "--store",
            str(store),
            "--export",
            str(tmp_path / "cb"),
            "--format",
            "clip_benchmark",
        ],
    )
    assert out.exit_code == 0, out.output
    files = sorted((tmp_path / "cb").glob("*.json"))
    assert len(files) == 2
    rs = ResultsStore(store)
    for f in files:
        rec = json.loads(f.read_text())
        assert {"dataset", "model", "pretrained", "task", "metrics"} <= set(rec)
        assert rec["task"] == "zeroshot_classification"
        preds = rs.predictions(rec["spurbench"]["run_id"])
        top1 = np.array([row[0] for row in preds["topk_labels"]])
        labels = preds["label"].to_numpy()
        if rec["spurbench"]["protocol"] == "1v1000":  # top-k are ImageNet labels: check directly
            assert rec["metrics"]["acc1"] == pytest.approx(np.mean(top1 == labels))
            assert rec["metrics"]["mean_per_class_recall"] == pytest.approx(
                balanced_accuracy_score(labels, top1)
            )
            top5 = [
                label in row[:5] for row, label in zip(preds["topk_labels"], labels, strict=True)
            ]
            assert rec["metrics"]["acc5"] == pytest.approx(np.mean(top5))
        assert 0 <= rec["metrics"]["acc1"] <= rec["metrics"]["acc5"] <= 1


def test_import_results_as_published_rows(evaluated, tmp_path):
    store, _ = evaluated
    theirs = tmp_path / "benchmark_imagenet1k_laion2b_ViT-B-32_en_zeroshot_classification.json"
    theirs.write_text(
        json.dumps(
            {
                "dataset": "imagenet1k",
                "model": "ViT-B-32",
                "pretrained": "laion2b_s34b_b79k",
                "task": "zeroshot_classification",
                "language": "en",
                "metrics": {"acc1": 0.6591, "acc5": 0.8908, "mean_per_class_recall": 0.6588},
            }
        )
    )
    for _ in range(2):  # importing twice leaves one row
        out = runner.invoke(app, ["import-results", str(theirs), "--store", str(store)])
        assert out.exit_code == 0, out.output
    shown = runner.invoke(app, ["results", "--store", str(store), "--json"])
    published = [p for p in json.loads(shown.stdout)["published"] if p["dataset"] == "imagenet1k"]
    assert len(published) == 1
    assert published[0]["acc1"] == pytest.approx(0.6591)
    assert published[0]["pretrained"] == "laion2b_s34b_b79k"
    assert len(json.loads(shown.stdout)["runs"]) == 2  # our runs are untouched
    table = runner.invoke(app, ["results", "--store", str(store)])
    assert "published elsewhere" in table.output and "65.91" in table.output


def test_import_refuses_what_is_not_a_clip_benchmark_result(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"dataset": "x", "metrics": {"acc1": 1}}))
    out = runner.invoke(app, ["import-results", str(bad), "--store", str(tmp_path / "s.duckdb")])
    assert out.exit_code == 2
    assert out.output.startswith("error:") and "lacks ['model', 'pretrained', 'task']" in out.output
    assert not (tmp_path / "s.duckdb").exists()


def test_frames_and_notebook_tables(evaluated):
    store, _ = evaluated
    frames = load_results(store)
    assert len(frames.summary) == 2 and len(frames.runs) == 2
    assert {"overall", "class"} <= set(frames.metrics["scope"])
    assert "<table" in frames._repr_html_()
    assert "<table" in ResultsStore(store)._repr_html_()


def test_run_result_renders_in_a_notebook(tiny_clip_dir, counteranimal_dir, tmp_path):
    from spurbench.evaluate import evaluate

    (r,) = evaluate(
        f"local-dir:{tiny_clip_dir}",
        counteranimal_dir,
        ("1v1000",),
        cache_dir=tmp_path,
        show_progress=False,
    )
    html = r._repr_html_()
    assert "<table" in html and "balanced_accuracy" in html and "counter" in html


def test_models_json(tmp_path, monkeypatch):
    monkeypatch.setenv("SPURBENCH_CACHE", str(tmp_path))  # the name lists are cached there
    out = runner.invoke(app, ["models", "RN50*", "--family", "open_clip", "--json"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.stdout)
    assert rows and all(r["arch"].startswith("RN50") for r in rows)


def test_missing_store_for_frames(tmp_path: Path):
    from spurbench.errors import StoreError

    with pytest.raises(StoreError):
        load_results(tmp_path / "none.duckdb")


def test_report_places_imported_results_on_their_panel(evaluated, tmp_path):
    """An export from elsewhere (another spurbench) joins the same dataset/protocol panel."""
    from spurbench.report.collect import collect, panel_points
    from spurbench.store.clip_benchmark import export_runs

    store, _ = evaluated
    (f, *_) = [p for p in export_runs(ResultsStore(store), tmp_path) if "1v1000" in p.name]
    rec = json.loads(f.read_text())
    rec.update(model="ViT-Other", pretrained="elsewhere_e1")
    f.write_text(json.dumps(rec))
    assert runner.invoke(app, ["import-results", str(f), "--store", str(store)]).exit_code == 0
    data = collect(store, images=False)
    (panel,) = [p for p in data.panels if p.protocol == "1v1000"]
    points = panel_points(data, panel).set_index("model_name")
    row = points.loc["ViT-Other,elsewhere_e1"]
    assert row["source"] == "published elsewhere" and row["family"] == "clip"
    assert row["common"] == pytest.approx(100 * rec["spurbench"]["common"])
    assert row["counter"] == pytest.approx(100 * rec["spurbench"]["counter"])
    (other,) = [p for p in data.panels if p.protocol == "1vN"]
    assert "ViT-Other,elsewhere_e1" not in set(panel_points(data, other)["model_name"])
