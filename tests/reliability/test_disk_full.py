"""Case 8: a full disk gives one clear error, and nothing already written is lost or torn.

A full disk is how week-long sweeps usually die while writing. The user must read "No space
left" (a :class:`SpurbenchError`, so the CLI prints it without traceback); the results store
must still open with every earlier run intact and no trace of the failed one; the feature cache
must hold no half-written shard, and a rerun after freeing space must resume.

The writer is patched to fail half-way with ``ENOSPC`` (works everywhere); where the tests run as
root, a tiny tmpfs gives the real thing.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest
from typer.testing import CliRunner

from spurbench import atomic
from spurbench.atomic import DiskFullError
from spurbench.cli import app
from spurbench.data.layouts import open_dataset
from spurbench.errors import SpurbenchError, StoreError
from spurbench.evaluate import evaluate
from spurbench.features.cache import encode_dataset, feature_key
from spurbench.store import ResultsStore
from tests.reliability.conftest import make_grouped
from tests.reliability.rows import run_rows

runner = CliRunner()
ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class FillingFile:
    """A file that accepts ``budget`` bytes, writes part of the next chunk, then hits ENOSPC."""

    def __init__(self, fh: Any, budget: int) -> None:
        self._fh, self._left = fh, budget

    def write(self, data: bytes) -> int:
        if len(data) > self._left:
            self._fh.write(bytes(data)[: self._left])  # a torn tail, as a real full disk leaves
            self._fh.flush()
            self._left = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._left -= len(data)
        return self._fh.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)

    def __enter__(self) -> FillingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._fh.close()


def fill_disk_for(monkeypatch: pytest.MonkeyPatch, wanted: str, budget: int = 300) -> None:
    """Atomic writes of files whose temporary name starts with ``.<wanted>`` run out of space."""
    real_open = open

    def patched_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        fh = real_open(file, mode, *args, **kwargs)
        if "w" in mode and Path(file).name.startswith(f".{wanted}"):
            return FillingFile(fh, budget)
        return fh

    monkeypatch.setattr(atomic, "open", patched_open, raising=False)


def test_feature_cache_keeps_no_half_written_shard(tiny_model, counteranimal_dir, tmp_path):
    ds = open_dataset(counteranimal_dir)
    cache = tmp_path / "cache"
    kw: dict[str, Any] = dict(batch_size=4, shard_rows=8, show_progress=False)
    with pytest.MonkeyPatch.context() as m:
        fill_disk_for(m, "shard-00001.npz")
        with pytest.raises(DiskFullError, match="No space left on device") as info:
            encode_dataset(tiny_model, ds, cache, **kw)
    assert isinstance(info.value, SpurbenchError) and info.value.errno == errno.ENOSPC
    folder = cache / "features" / feature_key(tiny_model, ds)
    assert sorted(p.name for p in folder.iterdir()) == ["meta.json", "shard-00000.npz"]
    shard0 = folder / "shard-00000.npz"
    before = shard0.stat().st_mtime_ns

    resumed = encode_dataset(tiny_model, ds, cache, **kw)  # space freed: resume
    assert shard0.stat().st_mtime_ns == before  # the complete shard was kept, not redone
    clean = encode_dataset(tiny_model, ds, tmp_path / "clean", **kw)
    np.testing.assert_array_equal(resumed.embedding, clean.embedding)


def test_cli_says_no_space_and_keeps_earlier_results(tiny_clip_dir, tmp_path, monkeypatch):
    data = make_grouped(tmp_path / "data", 3)
    store, cache = tmp_path / "r.duckdb", tmp_path / "cache"
    args = ["eval", "-m", f"local-dir:{tiny_clip_dir}", "-d", str(data), "--protocol", "1vN",
            "--store", str(store), "--cache-dir", str(cache), "-q"]  # fmt: skip
    assert runner.invoke(app, args).exit_code == 0
    first = list(ResultsStore(store).runs().run_id)

    templates = tmp_path / "templates.txt"
    templates.write_text("a blurry photo of a {c}.\n")  # a new head must be written to the cache
    fill_disk_for(monkeypatch, "")  # every atomic write fails
    out = runner.invoke(app, [*args, "--templates", str(templates)])
    assert out.exit_code == 2, out.output
    assert "No space left on device" in out.output
    assert isinstance(out.exception, SystemExit) and "Traceback" not in out.output
    monkeypatch.undo()

    assert list(ResultsStore(store).runs().run_id) == first
    assert not [p for p in cache.rglob(".*") if p.is_file()]  # no temporary file left behind


class _FailingConnection:
    """A DuckDB connection whose disk fills up at a chosen statement."""

    def __init__(self, con: Any, at: str) -> None:
        self._con, self._at = con, at

    def execute(self, sql: str, *args: Any) -> Any:
        if sql.startswith(self._at):
            if self._at == "COMMIT":
                # DuckDB drops a transaction whose commit failed; a later ROLLBACK then raises
                # "no transaction is active", which must not hide the real error.
                self._con.execute("ROLLBACK")
            raise duckdb.IOException('Could not write file "r.duckdb.wal": No space left on device')
        return self._con.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


@pytest.mark.parametrize("at", ["INSERT INTO metrics", "COMMIT"])
def test_store_full_mid_run_keeps_earlier_runs(tmp_path, monkeypatch, at):
    store = tmp_path / "r.duckdb"
    ResultsStore(store).write_run(*run_rows("first"))
    real_connect = duckdb.connect
    monkeypatch.setattr(
        duckdb, "connect", lambda *a, **k: _FailingConnection(real_connect(*a, **k), at)
    )
    with pytest.raises(StoreError, match="No space left on device") as info:
        ResultsStore(store).write_run(*run_rows("second"))
    assert "earlier results are intact" in str(info.value)
    monkeypatch.undo()

    rs = ResultsStore(store)
    assert list(rs.runs().run_id) == ["first"]
    assert list(rs.query("SELECT DISTINCT run_id FROM predictions").run_id) == ["first"]


def test_store_directory_full_is_a_clear_error(tmp_path, monkeypatch):
    """Even creating the lock file can fail on a full disk: still one clear line."""

    def no_space(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "new"))

    monkeypatch.setattr(Path, "mkdir", no_space)
    with pytest.raises(StoreError, match="No space left on device") as info:
        ResultsStore(tmp_path / "new" / "r.duckdb")
    assert "Free some space" in str(info.value)  # told what to do, not just what failed


@pytest.fixture()
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 6 MB tmpfs: a disk that really fills up (needs root and mount; skipped otherwise)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _fill(folder: Path) -> Path:
    filler = folder / "filler"
    with open(filler, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError as e:
            assert e.errno == errno.ENOSPC
    return filler


@pytest.mark.subprocess
def test_real_full_disk(tiny_tmpfs, tiny_model, tmp_path):
    data = make_grouped(tmp_path / "data", 3)
    store, cache = tiny_tmpfs / "r.duckdb", tiny_tmpfs / "cache"
    kw: dict[str, Any] = dict(cache_dir=cache, batch_size=4, n_boot=20, show_progress=False)
    first = evaluate(tiny_model, data, ["1vN"], store=store, **kw)[0]
    other = ["a sketch of a {c}."]
    evaluate(tiny_model, data, ["1vN"], templates=other, **kw)  # features and head cached

    filler = _fill(tiny_tmpfs)
    with pytest.raises(StoreError, match="No space left on device"):  # DuckDB's own write
        evaluate(tiny_model, data, ["1vN"], templates=other, store=store, **kw)
    with pytest.raises(DiskFullError, match="No space left on device"):  # a new cache entry
        evaluate(tiny_model, data, ["1vN"], templates=["a drawing of a {c}."], **kw)
    filler.unlink()

    rs = ResultsStore(store)
    assert list(rs.runs().run_id) == [first.run_id]
    assert len(rs.predictions(first.run_id)) == len(first.predictions)
    assert not [p for p in cache.rglob(".*") if p.is_file()]
    second = evaluate(tiny_model, data, ["1vN"], templates=other, store=store, **kw)[0]
    assert sorted(ResultsStore(store).runs().run_id) == sorted([first.run_id, second.run_id])
