"""Issue 16, items 17, 18 and 20: user strings are shown as typed, never interpreted.

Rich markup in a path or name (``[/x]``) used to crash the CLI after the run was stored, and
``results`` then crashed on that store forever; ``[bold]`` vanished from names. A ``$`` in a
class name made matplotlib's mathtext fail mid-report (or render maths). ``summary.md`` pasted
names as raw HTML, and CSV exports wrote formula-leading cells as they were.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from spurbench.cli import app
from tests.reliability.hostile import CLASSES, DATASET, hostile_store  # noqa: F401  (fixture)

runner = CliRunner()
WIDE = {"COLUMNS": "250"}  # rich would wrap long names


def test_eval_prints_markup_in_paths_and_names_as_typed(hostile_store, tmp_path):  # noqa: F811
    store = tmp_path / "other[/x].duckdb"
    args = ["eval", "-m", f"local-dir:{hostile_store.model_dir}", "-d", str(hostile_store.manifest)]
    args += ["--protocol", "1vN", "--store", str(store), "--cache-dir", str(hostile_store.cache)]
    result = runner.invoke(app, [*args, "-q"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert "[bold]model[/x]" in result.stdout  # not swallowed as a style
    assert str(store) in result.stdout


def test_results_reads_a_store_full_of_markup(hostile_store):  # noqa: F811
    result = runner.invoke(app, ["results", "--store", str(hostile_store.store)], env=WIDE)
    assert result.exit_code == 0, result.output
    assert "[bold]model[/x]" in result.stdout


def test_error_message_quoting_a_markup_path_is_one_line(tmp_path):
    missing = tmp_path / "[bold]no[/x].duckdb"
    result = runner.invoke(app, ["results", "--store", str(missing)], env=WIDE)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and str(missing) in lines[0]


def test_report_draws_dollar_signs_as_text_and_escapes_summary(hostile_store, tmp_path):  # noqa: F811
    out = tmp_path / "report"
    args = ["report", "--store", str(hostile_store.store), "-o", str(out), "--no-thumbnails"]
    result = runner.invoke(app, [*args, "--n-boot", "10"], env=WIDE)
    assert result.exit_code == 0, result.output
    svg = next((out / "figures").glob("class_drops_*.svg")).read_text(encoding="utf-8")
    # SVG text is drawn as paths; matplotlib keeps the string in a comment per text object
    assert "$x$ cat" in svg and "$x^$ bird" in svg
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert "<b>" not in summary and "\\<b\\>ds" in summary


def _csv_cells(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as fh:
        return [cell for row in csv.reader(fh) for cell in row]


def test_csv_exports_neutralise_formulas(hostile_store, tmp_path):  # noqa: F811
    out = tmp_path / "export"
    store = str(hostile_store.store)
    result = runner.invoke(app, ["results", "--store", store, "--export", str(out)])
    assert result.exit_code == 0, result.output
    cells = [c for f in out.glob("*.csv") for c in _csv_cells(f)]
    formulas = [c for c in cells if c[:1] in ("=", "+", "@") or (c[:1] == "-" and not _number(c))]
    assert formulas == []
    assert "'=HYPERLINK(1)" in cells and f"'{DATASET}" in cells
    assert any(_number(c) and float(c) < 0 for c in cells), "negative numbers stay numbers"
    pq = tmp_path / "pq"
    runner.invoke(app, ["results", "--store", store, "--export", str(pq), "--format", "parquet"])
    raw = pd.read_parquet(pq / "predictions.parquet")
    assert set(raw["class_name"]) == set(CLASSES)  # programs get the raw values


def test_models_csv_neutralises_formulas(hostile_store, tmp_path):  # noqa: F811
    out = tmp_path / "report"
    args = ["report", "--store", str(hostile_store.store), "-o", str(out), "--no-thumbnails"]
    assert runner.invoke(app, [*args, "--n-boot", "10"]).exit_code == 0
    cells = _csv_cells(out / "models.csv")
    assert f"'{DATASET}" in cells and DATASET not in cells


def _number(text: str) -> bool:
    return re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", text) is not None


def test_every_text_of_a_saved_figure_is_literal(tmp_path):
    """Tick labels are made while drawing: they too must skip mathtext."""
    from matplotlib.figure import Figure
    from matplotlib.text import Text

    from spurbench.report.plots import save_literal

    fig = Figure()
    ax = fig.subplots()
    ax.barh([0, 1], [1, 2])
    ax.set_yticks([0, 1], ["$x$ cat", "$x^$ bird"])
    ax.set_title("$y$")
    save_literal(fig, tmp_path / "f.png", tmp_path / "f.svg")
    texts = [t for t in fig.findobj(Text) if t.get_text()]
    assert {"$x$ cat", "$x^$ bird", "$y$"} <= {t.get_text() for t in texts}
    assert not any(t.get_parse_math() for t in texts)
