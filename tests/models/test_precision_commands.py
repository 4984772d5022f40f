"""--precision on probe and suite (library precision=): run and recorded like eval's."""

from __future__ import annotations

import json

import duckdb
import pytest
from typer.testing import CliRunner

from spurbench.cli import app
from spurbench.models import create_model
from spurbench.probes.run import probe
from spurbench.store.results import ResultsStore
from spurbench.suite import run_suite
from tests.suite import standins as F
from tests.suite.test_loaders import ON_FOLDERS, WNIDS


@pytest.fixture()
def model(tiny_clip_dir):
    return create_model(f"local-dir:{tiny_clip_dir}")


def _probe_configs(store) -> dict[str, dict]:
    with duckdb.connect(str(store), read_only=True) as con:
        rows = con.execute("SELECT probe_id, config FROM probe_runs").fetchall()
    return {pid: json.loads(cfg) for pid, cfg in rows}


def test_probe_runs_and_records_its_precision(model, counteranimal_dir, tmp_path):
    kw = dict(probes=["kurtosis"], cache_dir=tmp_path / "c", show_progress=False)
    store = tmp_path / "s.duckdb"
    fp32 = probe(model, counteranimal_dir, store=store, **kw)
    bf16 = probe(model, counteranimal_dir, store=store, precision="bf16", **kw)
    assert fp32.probe_ids["kurtosis"] != bf16.probe_ids["kurtosis"]  # both kept
    configs = _probe_configs(store)
    assert configs[fp32.probe_ids["kurtosis"]]["precision"] == "fp32"
    assert configs[bf16.probe_ids["kurtosis"]]["precision"] == "bf16"
    # the bf16 probe read bf16 features: a second feature-cache entry exists
    assert len(list((tmp_path / "c" / "features").iterdir())) == 2


def test_suite_runs_and_records_its_precision(model, tmp_path):
    F.make_val(tmp_path / "data", [WNIDS[i] for i in (1, 2)])
    F.make_objectnet(tmp_path / "data", ON_FOLDERS)  # the border-cropped wrapper too
    store = tmp_path / "s.duckdb"
    kw = dict(store=store, cache_dir=tmp_path / "c", templates=["a photo of a {c}."])
    result = run_suite(model, tmp_path / "data", n_boot=20, show_progress=False,
                       precision="bf16", **kw)  # fmt: skip
    assert set(result.runs) == {"imagenet", "objectnet"}
    runs = ResultsStore(store, read_only=True).runs()
    assert {json.loads(c)["precision"] for c in runs["config"]} == {"bf16"}


@pytest.mark.parametrize("command", ["eval", "probe", "suite"])
def test_cli_refuses_an_unknown_precision_before_the_model_loads(command, tmp_path):
    args = [command, "-m", "no-such-model", "--precision", "fp64"]
    args += ["--root", str(tmp_path)] if command == "suite" else ["-d", str(tmp_path)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2
    assert "error:" in res.output and "fp64" in res.output


def test_report_labels_runs_off_the_papers_image_pass(model, counteranimal_dir, tmp_path):
    """A bf16 / onnx / draft run is labelled in the tables and named in the Methods."""
    from spurbench.evaluate import evaluate
    from spurbench.report.collect import collect
    from spurbench.report.html import ReportOptions, build_report

    store = tmp_path / "s.duckdb"
    kw = dict(store=store, cache_dir=tmp_path / "c", show_progress=False, n_boot=20)
    evaluate(model, counteranimal_dir, ["1vN"], **kw)
    evaluate(model, counteranimal_dir, ["1vN"], precision="bf16", decode="draft", **kw)
    runs = collect(store, images=False).runs
    assert sorted(runs["image_pass"]) == ["", "bf16 · draft decode"]
    labelled = runs.loc[runs["image_pass"] != "", "display"].item()
    assert labelled.endswith(" · bf16 · draft decode")
    out = build_report(store, tmp_path / "rep", ReportOptions(n_boot=20))
    methods = out.html.read_text(encoding="utf-8").split('id="methods"')[1]
    assert "bf16 · draft decode" in methods and "fp32" in methods
