"""The CLI end to end on a generated CounterAnimal folder, and its error messages."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
from typer.testing import CliRunner

from spurbench.cli import app
from spurbench.store import ResultsStore

runner = CliRunner()


def test_eval_results_export(tiny_clip_dir, counteranimal_dir, tmp_path, monkeypatch):
    from spurbench.cli import console

    monkeypatch.setattr(console, "width", 250)  # one table row per line, whatever the terminal
    store = tmp_path / "r.duckdb"
    args = [
        "eval",
        "-m",
        f"local-dir:{tiny_clip_dir}",
        "-d",
        str(counteranimal_dir),
        "--protocol",
        "1v1000,1v20,1vN",
        "--reference",
        "self",
        "--store",
        str(store),
        "--cache-dir",
        str(tmp_path / "cache"),
        "-q",
    ]
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    assert "drop" in out.output and "1v20" in out.output
    summary = ResultsStore(store).summary()
    assert sorted(summary.protocol) == ["1v1000", "1v20", "1vN"]
    assert (summary.n_images == 27).all()
    # rerunning the same evaluation replaces its rows instead of duplicating them
    assert runner.invoke(app, args).exit_code == 0
    rs = ResultsStore(store)
    assert len(rs.runs()) == 3
    assert len(rs.query("SELECT * FROM predictions")) == 3 * 27
    run_1v20 = summary.loc[summary.protocol == "1v20", "run_id"].iloc[0]
    cand = rs.artifact(run_1v20, "candidates")
    assert set(cand) == {"9", "100", "296"} and all(len(v) == 20 for v in cand.values())

    out = runner.invoke(app, ["results", "--store", str(store)])
    assert out.exit_code == 0 and "1v1000" in out.output
    row_1v20 = next(line for line in out.output.splitlines() if "│ 1v20 " in line)
    digest = summary.loc[summary.protocol == "1v20", "candidates_hash"].iloc[0]
    assert "self (own confusions, not the paper's)" in row_1v20 and digest in row_1v20
    out = runner.invoke(
        app, ["results", "--store", str(store), "--export", str(tmp_path / "x"), "--format", "json"]
    )
    assert out.exit_code == 0
    metrics = json.loads((tmp_path / "x" / "metrics.json").read_text())
    assert {m["metric"] for m in metrics} >= {"balanced_accuracy", "drop", "accuracy"}
    assert len(pd.read_json(tmp_path / "x" / "predictions.json")) == 81


def test_predictions_allow_recomputing_metrics(tiny_clip_dir, counteranimal_dir, tmp_path):
    """Stored top-k predictions are enough to recompute accuracy without the model."""
    store = tmp_path / "r.duckdb"
    runner.invoke(
        app,
        [
            "eval",
            "-m",
            f"local-dir:{tiny_clip_dir}",
            "-d",
            str(counteranimal_dir),
            "--protocol",
            "1vN",
            "--store",
            str(store),
            "-q",
            "--cache-dir",
            str(tmp_path / "c"),
        ],
    )
    rs = ResultsStore(store)
    run_id = rs.runs().run_id.iloc[0]
    preds = rs.predictions(run_id)
    top1 = preds.topk_labels.map(lambda v: v[0])
    per_image = (top1 == preds.label).groupby(preds.group_name).mean()
    stored = rs.metrics([run_id], "overall").query("metric == 'accuracy'").set_index("group_name")
    for g, v in per_image.items():
        assert stored.loc[g, "value"] == v


@pytest.mark.subprocess
def test_errors_are_one_line_without_traceback(tmp_path, counteranimal_dir):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "spurbench.cli",
            "eval",
            "-m",
            "ViT-B-33,openai",
            "-d",
            str(counteranimal_dir),
            "--store",
            str(tmp_path / "s.duckdb"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "Unknown open_clip architecture 'ViT-B-33'" in proc.stderr and "ViT-B-32" in proc.stderr


def test_custom_classes_refuse_1v1000_before_loading_a_model(tmp_path):
    import numpy as np

    from tests.conftest import write_image

    rng = np.random.default_rng(0)
    for cls in ("zorp", "blick"):
        write_image(tmp_path / "d" / cls / "g" / "a.png", rng)
    out = runner.invoke(
        app,
        [
            "eval",
            "-m",
            "nonexistent-model,x",
            "-d",
            str(tmp_path / "d"),
            "--store",
            str(tmp_path / "s.duckdb"),
        ],
    )
    assert out.exit_code == 2 and "needs ImageNet-1k labels" in out.output


def test_models_lists_and_filters(tmp_path, monkeypatch):
    monkeypatch.setenv("SPURBENCH_CACHE", str(tmp_path))  # the name lists are cached there
    out = runner.invoke(app, ["models", "ViT-B-32,laion400m*", "--family", "open_clip"])
    assert out.exit_code == 0 and "laion400m_e31" in out.output


def test_theory_default_grid_meets_every_assumption():
    from spurbench.synth import theory

    n = theory.THEOREM_N_TRAIN
    for p in theory.THEOREM_P_SPU:
        for mu in theory.THEOREM_MU_SPU:
            report = theory.check_assumptions(
                p, mu, theory.THEOREM_SIGMA_INV, theory.THEOREM_SIGMA_SPU,
                n_train=n, d_image=n, d_text=n,
            )  # fmt: skip
            assert report.holds, (p, mu, report.summary())


def test_theory_writes_grid_and_figure(tmp_path):
    out = runner.invoke(app, ["theory", "--out", str(tmp_path), "--p-spu", "0.99",
                              "--mu-spu", "2", "--seeds", "1", "--n", "1000", "--n-test", "4000"])
    assert out.exit_code == 0, out.output
    df = pd.read_csv(tmp_path / "theory_grid.csv")
    assert len(df) == 1 * 1 * 2  # p values x mu values x objectives (one seed)
    assert set(df["assumptions"]) == {"all hold"} and set(df["d_image"]) == {1000}
    assert "Theorem 6.2" in out.output and "outside" not in out.output.split("err:")[0]
    assert (tmp_path / "theory_grid.png").stat().st_size > 10_000


def test_theory_refuses_points_outside_the_assumptions_unless_asked(tmp_path):
    args = ["theory", "--out", str(tmp_path), "--p-spu", "0.9", "--mu-spu", "1", "--seeds", "1",
            "--n", "1000", "--n-test", "2000"]  # fmt: skip
    out = runner.invoke(app, args)
    assert out.exit_code == 2
    assert out.output.startswith("error:") and "--outside-assumptions" in out.output
    assert not (tmp_path / "theory_grid.csv").exists()
    out = runner.invoke(app, [*args, "--outside-assumptions"])
    assert out.exit_code == 0, out.output
    df = pd.read_csv(tmp_path / "theory_grid.csv")
    assert set(df["assumptions"]) == {"outside: 2 (p_spu = 0.9 < 0.95); 4 (mu_spu = 1 < 1.5)"}
    assert "outside 2,4" in out.output




def test_theory_table7_rejects_a_bad_world_before_training(tmp_path):
    out = runner.invoke(app, ["theory", "--table7", "--rho", "1.5", "--out", str(tmp_path)])
    assert out.exit_code == 2
    assert out.output.startswith("error: Invalid world") and len(out.output.splitlines()) <= 2
    assert not (tmp_path / "table7").exists()
