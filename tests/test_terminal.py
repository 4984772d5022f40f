"""Tables at 80 columns keep every cell whole; piped output is not wrapped; --width wins."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console
from rich.table import Table

from spurbench.terminal import print_table, set_width

NAMES = ["triceratops", "poison dart frog", "hartebeest", "American alligator", "ox"]
REASON = "OSError: image file is truncated (17 bytes not processed) at offset 40213"


def wide_table() -> Table:
    """A table like curate's: many columns, long class names and long reasons."""
    t = Table(title="curation summary")
    for col in ("class", "common bg", "counter bg", "n common", "n counter", "gap", "ci", "reason"):
        t.add_column(col)
    for name in NAMES:
        t.add_row(name, "grassland", "shallow water", "120", "37", "23.5", "[12.1, 31.0]", REASON)
    return t


def render(table: Table, width: int, terminal: bool = True) -> str:
    out = io.StringIO()
    console = Console(file=out, width=width, force_terminal=terminal, color_system=None)
    print_table(console, table)
    return out.getvalue()


@pytest.fixture(autouse=True)
def _no_override():
    set_width(None)
    yield
    set_width(None)


def test_80_columns_cuts_no_cell():
    text = render(wide_table(), 80)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text
    for name in NAMES:  # every class name whole, on one line
        assert name in text
    assert all(word in text.split() for word in REASON.split())


def test_plain_rich_would_have_cut_them():
    """The check above can fail: rich alone truncates these cells at 80 columns."""
    out = io.StringIO()
    Console(file=out, width=80, force_terminal=True, color_system=None).print(wide_table())
    text = out.getvalue()
    assert "…" in text or any(name not in text for name in NAMES)


def test_a_table_that_fits_is_printed_as_a_table():
    t = Table()
    t.add_column("class")
    t.add_row("triceratops")
    text = render(t, 80)
    assert "┃ class" in text or "class" in text.splitlines()[1]


def test_piped_output_keeps_one_line_per_row():
    text = render(wide_table(), 80, terminal=False)
    rows = [line for line in text.splitlines() if REASON in line]
    assert len(rows) == len(NAMES)


def test_width_override():
    set_width(60)
    text = render(wide_table(), 200, terminal=False)
    assert max(len(line) for line in text.splitlines()) <= 60
    assert "…" not in text and all(name in text for name in NAMES)


def test_cli_width_option(tmp_path, tiny_clip_dir, counteranimal_dir):
    from typer.testing import CliRunner

    from spurbench.cli import app

    runner = CliRunner()
    store = str(tmp_path / "r.duckdb")
    args = [
        "eval",
        "-m",
        f"local-dir:{tiny_clip_dir}",
        "-d",
        str(counteranimal_dir),
        "--store",
        store,
        "--cache-dir",
        str(tmp_path / "c"),
        "--json",
    ]
    assert runner.invoke(app, args).exit_code == 0
    narrow = runner.invoke(app, ["--width", "40", "results", "--store", store])
    assert narrow.exit_code == 0, narrow.output
    assert max(len(line) for line in narrow.output.splitlines()) <= 40
    assert "…" not in narrow.output and "1v1000" in narrow.output
    wide = runner.invoke(app, ["results", "--store", store])
    assert sum(1 for line in wide.output.splitlines() if "1v1000" in line) == 1
    assert json.loads(runner.invoke(app, ["results", "--store", store, "--json"]).stdout)
