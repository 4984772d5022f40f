"""Cases 16.14 and 16.19: what ``--store`` points at is checked first; reading never writes.

A FIFO as the store used to block DuckDB forever (with the store's lock held); a SQLite file made
DuckDB try to download its SQLite extension. Both now stop with one ``error:`` line before the
model loads. A valid store on read-only media used to be unreadable: ``results`` and ``report``
created the lock file and opened the database read-write. They now open it read-only and create
nothing beside it.
"""

from __future__ import annotations

import os
import sqlite3
import stat

import duckdb
import pytest
from typer.testing import CliRunner

from spurbench.cli import app
from spurbench.store import ResultsStore
from spurbench.store import results as results_module
from tests.reliability.conftest import make_grouped, run_cli
from tests.reliability.rows import run_rows

runner = CliRunner()


def _sqlite(path) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE t (x INTEGER)")
    con.commit()
    con.close()


def _eval_args(store, data, tmp_path) -> list[str]:
    return [
        "eval", "-m", "RN50,random", "-d", str(data), "--protocol", "1vN",
        "--store", str(store), "--cache-dir", str(tmp_path / "c"), "-q",
    ]  # fmt: skip


@pytest.mark.parametrize("kind", ["fifo", "sqlite", "folder"])
def test_bad_store_path_is_one_error_before_the_model_loads(kind, tmp_path, no_model_load):
    data = make_grouped(tmp_path / "data", per_group=1)
    store = tmp_path / "r.duckdb"
    if kind == "fifo":
        os.mkfifo(store)
    elif kind == "sqlite":
        _sqlite(store)
    else:
        store.mkdir()
    out = runner.invoke(app, _eval_args(store, data, tmp_path))
    assert out.exit_code == 2, out.output
    lines = [ln for ln in out.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), out.output
    assert {"fifo": "not a regular file", "sqlite": "SQLite", "folder": "folder"}[kind] in lines[0]
    assert no_model_load == []


@pytest.mark.subprocess
def test_fifo_store_does_not_hang_results(tmp_path):
    """Through a real process, with a timeout: a regression must fail, not hang the suite."""
    store = tmp_path / "r.duckdb"
    os.mkfifo(store)
    done = run_cli(["results", "--store", str(store)], timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().startswith("error:") and "not a regular file" in done.stderr
    assert not (tmp_path / "r.duckdb.lock").exists()


def test_sqlite_store_is_refused_without_touching_duckdb(tmp_path, monkeypatch):
    store = tmp_path / "r.db"
    _sqlite(store)
    monkeypatch.setattr(duckdb, "connect", lambda *a, **k: pytest.fail("DuckDB opened it"))
    out = runner.invoke(app, ["results", "--store", str(store)])
    assert out.exit_code == 2 and "SQLite" in out.output, out.output


def _stored(tmp_path):
    store = tmp_path / "ro" / "r.duckdb"
    store.parent.mkdir()
    ResultsStore(store).write_run(*run_rows("run1"))
    (tmp_path / "ro" / "r.duckdb.lock").unlink()  # as copied to a DVD or a read-only share
    return store


def test_reading_commands_open_read_only_and_create_nothing(tmp_path, monkeypatch):
    """Works as root too: checks what is opened and what appears, not permission bits."""
    store = _stored(tmp_path)
    before = sorted(p.name for p in store.parent.iterdir())
    modes: list[bool] = []
    real = duckdb.connect
    monkeypatch.setattr(
        duckdb,
        "connect",
        lambda path, **kw: modes.append(kw.get("read_only", False)) or real(path, **kw),
    )
    out = runner.invoke(app, ["results", "--store", str(store)])
    assert out.exit_code == 0, out.output
    assert "run1" in out.output or "m" in out.output
    assert modes and all(modes), modes
    assert sorted(p.name for p in store.parent.iterdir()) == before  # no lock, no WAL


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits")
def test_store_in_a_read_only_folder_can_be_read(tmp_path):
    store = _stored(tmp_path)
    os.chmod(store.parent, stat.S_IRUSR | stat.S_IXUSR)
    os.chmod(store, stat.S_IRUSR)
    try:
        out = runner.invoke(app, ["results", "--store", str(store)])
        assert out.exit_code == 0, out.output
    finally:
        os.chmod(store.parent, stat.S_IRWXU)


def test_check_store_path_accepts_new_and_duckdb_files(tmp_path):
    assert results_module.check_store_path(tmp_path / "new.duckdb") == tmp_path / "new.duckdb"
    store = _stored(tmp_path)
    assert results_module.check_store_path(store) == store


def test_read_only_store_without_probe_tables_reads(tmp_path):
    """A store from before probes existed is read as it is (read-only opens do not migrate)."""
    store = _stored(tmp_path)
    con = duckdb.connect(str(store))
    con.execute("DROP TABLE probes")
    con.execute("DROP TABLE probe_runs")
    con.close()
    rs = ResultsStore(store, read_only=True)
    assert rs.probe_results().empty
    assert len(rs.runs()) == 1
