"""Case 7: evaluations running side by side share one results store without corrupting it.

DuckDB allows one writer process at a time. The store takes a file lock around every short
transaction, so a second writer waits its turn instead of failing, and only gives up (with a
clear message) after ``LOCK_TIMEOUT_S``. A real CLI process and this test process evaluate at
once against the same store and feature cache; a helper process holding the lock makes the
waiting (and the giving up) deterministic.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from spurbench.errors import StoreError
from spurbench.evaluate import evaluate
from spurbench.store import ResultsStore
from spurbench.store import results as results_module
from tests.reliability.conftest import cli_command, cli_env, make_grouped
from tests.reliability.rows import run_rows

PER_GROUP = 4  # 2 classes x 2 groups x 4 = 16 images
MAX_OURS = 25  # runs stored by this process (bounds its CPU use on a slow machine)
HOLD_S = 0.4  # how long each of this process's "long writes" keeps the store open
GAP_S = 0.15  # > filelock's 50 ms polling interval


@pytest.mark.subprocess
def test_evaluations_in_two_processes_at_once_are_all_stored(tmp_path, tiny_clip_dir, tiny_model):
    """A CLI evaluation runs in a subprocess while this process keeps evaluating and storing.

    Two CLI subprocesses would each pay ~11 s of CPU on imports and touch the store for a few
    milliseconds each, at moments that rarely coincide: the test would pass without the lock.
    Here this process stores a run, then keeps a store connection open for a while (as a long
    write would), over and over for the whole life of the subprocess: the subprocess's schema
    creation and its write almost surely meet it (without the lock, DuckDB refuses the second
    opener: "Conflicting lock"). The lock tests below make the waiting deterministic. Both
    processes share the feature cache too.
    """
    data = make_grouped(tmp_path / "data", PER_GROUP)
    store, cache = tmp_path / "shared.duckdb", tmp_path / "cache"
    proc = subprocess.Popen(
        cli_command(
            "eval", "-m", f"local-dir:{tiny_clip_dir}", "-d", str(data), "--protocol", "1vN",
            "--store", str(store), "--cache-dir", str(cache), "--batch-size", "4", "-q",
        ),
        env=cli_env(SPURBENCH_SHARD_ROWS="4"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    ours: list[str] = []
    busy = ResultsStore(store)
    while proc.poll() is None or len(ours) < 3:
        if len(ours) < MAX_OURS:
            templates = [f"a photo of a {{c}}, take {len(ours)}."]  # a new run id each time
            result = evaluate(
                tiny_model, data, ["1vN"], templates=templates, store=store, cache_dir=cache,
                batch_size=4, n_boot=20, show_progress=False,
            )[0]  # fmt: skip
            ours.append(result.run_id)
        with busy._connect():  # a long transaction of another writer; idle for the CPU
            time.sleep(HOLD_S)
        time.sleep(GAP_S)  # the lock is not fair: leave a waiting writer time to take it
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err

    rs = ResultsStore(store)
    runs = rs.runs()
    assert runs.run_id.is_unique and len(runs) == len(ours) + 1  # every run, each once
    assert set(ours) < set(runs.run_id)
    per_run = rs.query("SELECT run_id, count(*) AS n, count(DISTINCT image_id) AS d "
                       "FROM predictions GROUP BY run_id")  # fmt: skip
    assert len(per_run) == len(runs)
    assert (per_run.n == 4 * PER_GROUP).all() and (per_run.n == per_run.d).all()
    assert set(rs.summary().run_id) == set(runs.run_id)  # every table readable and joined
    assert not list(cache.glob("features/*/.shard-*"))  # no temporary file left behind


HOLD_LOCK = """
import sys, time
from filelock import FileLock
lock = FileLock(sys.argv[1])
lock.acquire()
open(sys.argv[2], "w").close()
time.sleep(float(sys.argv[3]))
lock.release()
"""


def _hold_lock(store: Path, seconds: float) -> subprocess.Popen:
    """Another process holds the store's lock for ``seconds``; returns once it holds it."""
    ready = store.with_suffix(".ready")
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, f"{store}.lock", str(ready), str(seconds)]
    )
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "lock holder did not start"
        time.sleep(0.01)
    return proc


@pytest.mark.subprocess
def test_a_writer_waits_for_the_lock_then_writes(tmp_path):
    store = tmp_path / "s.duckdb"
    rs = ResultsStore(store)
    rs.write_run(*run_rows("first"))
    holder = _hold_lock(store, 1.5)
    start = time.monotonic()
    rs.write_run(*run_rows("second"))
    waited = time.monotonic() - start
    holder.wait(timeout=30)
    assert waited > 0.5  # it queued behind the other process ...
    assert sorted(ResultsStore(store).runs().run_id) == ["first", "second"]  # ... then wrote


@pytest.mark.subprocess
def test_a_writer_gives_up_with_a_clear_message(tmp_path, monkeypatch):
    store = tmp_path / "s.duckdb"
    ResultsStore(store).write_run(*run_rows("first"))
    monkeypatch.setattr(results_module, "LOCK_TIMEOUT_S", 0.3)
    holder = _hold_lock(store, 3)
    try:
        with pytest.raises(StoreError, match=r"stayed locked .* another spurbench process"):
            ResultsStore(store).write_run(*run_rows("second"))
    finally:
        holder.wait(timeout=30)
    assert list(ResultsStore(store).runs().run_id) == ["first"]
