"""``--json`` prints machine-readable JSON alone on stdout, for every table-printing command."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from spurbench.cli import app
from tests.suite.test_timm_baseline import one_clip_store, published_clip  # noqa: F401

runner = CliRunner()


def _json(args: list[str]):
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)  # fails if anything else was printed on stdout


def test_theory_json(tmp_path):
    rows = _json(["theory", "--out", str(tmp_path), "--outside-assumptions",
                  "--p-spu", "0.5,0.9", "--mu-spu", "1",
                  "--seeds", "1", "--n", "2000", "--json"])  # fmt: skip
    assert len(rows) == 4 and {"p_spu", "mu_spu", "objective", "ood_error", "bound"} <= set(rows[0])


def test_probe_json(tmp_path, tiny_clip_dir, counteranimal_dir):
    rows = _json(["probe", "-m", f"local-dir:{tiny_clip_dir}", "-d", str(counteranimal_dir),
                  "--probe", "kurtosis", "--store", str(tmp_path / "p.duckdb"),
                  "--cache-dir", str(tmp_path / "c"), "--json"])  # fmt: skip
    assert rows and {r["model"] for r in rows} == {f"local-dir:{tiny_clip_dir}"}
    assert isinstance(rows[0]["extra"], dict)


def test_curate_diagnose_json(tmp_path, tiny_clip_dir, counteranimal_dir):
    model, cache = f"local-dir:{tiny_clip_dir}", str(tmp_path / "c")
    (d,) = _json(["curate", "diagnose", "-m", model, "-d", str(counteranimal_dir),
                  "--cache-dir", cache, "--json"])  # fmt: skip
    cells = {(c["class_name"], c["background"]) for c in d["cells"]}
    assert len(cells) == 6  # three classes, two backgrounds each
    assert all(0 <= c["accuracy"] <= 1 for c in d["cells"])


def test_suite_json(one_clip_store):  # noqa: F811
    printed = _json(["suite", "--store", str(one_clip_store.path), "--baseline", "timm", "--json"])
    assert printed["models"] and "model" in printed["models"][0] and printed["notes"]
