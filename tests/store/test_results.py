"""The results store: transactions replace a run's rows, probes live beside evaluations."""

from __future__ import annotations

import pandas as pd
import pytest

from spurbench.store import ResultsStore


def _run(run_id):
    return {"run_id": run_id, "model": "m", "dataset": "d", "protocol": "1vN", "n_images": 2,
            "n_skipped": 0}


def _metrics(run_id, value):
    return pd.DataFrame({"run_id": [run_id], "scope": ["overall"], "label": [-1],
                         "class_name": [""], "group_name": ["common"],
                         "metric": ["balanced_accuracy"], "value": [value], "ci_low": [0.0],
                         "ci_high": [1.0], "n": [2]})


def _preds(run_id):
    return pd.DataFrame({"run_id": [run_id] * 2, "image_id": ["a", "b"], "label": [1, 2],
                         "correct": [True, False], "topk_labels": [[1, 2], [1, 2]]})


def test_rewriting_a_run_replaces_it(tmp_path):
    rs = ResultsStore(tmp_path / "s.duckdb")
    rs.write_run(_run("r1"), _preds("r1"), _metrics("r1", 0.5))
    rs.write_run(_run("r1"), _preds("r1"), _metrics("r1", 0.7))
    assert len(rs.runs()) == 1 and len(rs.predictions("r1")) == 2
    assert rs.summary().common.tolist() == [0.7]


def test_failed_write_leaves_previous_results(tmp_path):
    rs = ResultsStore(tmp_path / "s.duckdb")
    rs.write_run(_run("r1"), _preds("r1"), _metrics("r1", 0.5))
    bad = _metrics("r1", 0.9).assign(value="not a number")
    with pytest.raises(Exception):  # noqa: B017 - any DuckDB conversion error
        rs.write_run(_run("r1"), _preds("r1"), bad)
    assert rs.summary().common.tolist() == [0.5]


def test_probe_rows(tmp_path):
    rs = ResultsStore(tmp_path / "s.duckdb")
    record = {"probe_id": "p1", "model": "m", "dataset": "d", "probe": "kurtosis",
              "config": {"seed": 0}}
    rows = pd.DataFrame({"metric": ["mean_image_kurtosis"], "key": [""], "value": [12.5]})
    rs.write_probe(record, rows)
    rs.write_probe(record, rows.assign(value=13.0))
    df = rs.probe_results("kurtosis")
    assert df.value.tolist() == [13.0] and df.model.tolist() == ["m"]
