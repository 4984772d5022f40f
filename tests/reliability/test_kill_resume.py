"""Case 6: kill -9 in the middle of an evaluation, rerun, and lose nothing.

The real CLI runs as a subprocess and is killed with SIGKILL once some feature shards exist (no
handler runs, exactly as with an OOM kill or a pre-empted node). The rerun must resume from the
complete shards (they are left untouched, so only the rest is encoded), give results identical
to an uninterrupted run, and leave no row twice or half-written in the store. The rerun goes
through the same CLI in this process (a second subprocess would only add its ~10 s of imports).
A second test kills a store writer inside its transaction.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from spurbench.cli import app
from spurbench.data.layouts import open_dataset
from spurbench.errors import SpurbenchError
from spurbench.evaluate import evaluate
from spurbench.features.cache import encode_dataset, feature_key
from spurbench.store import ResultsStore
from tests.reliability.conftest import SRC, cli_command, cli_env, make_grouped

CLASSES = ("1 goldfish", "9 ostrich", "100 black swan", "296 ice bear", "330 wood rabbit")
SHARD_ROWS, BATCH, PER_GROUP = 8, 4, 8  # 5 classes x 2 groups x 8 = 80 images, 10 shards
N_IMAGES = len(CLASSES) * 2 * PER_GROUP
N_SHARDS = -(-N_IMAGES // SHARD_ROWS)


def _shards(cache: Path) -> dict[str, tuple[int, int]]:
    """Shard file name -> (inode, mtime in ns): a rewritten shard changes both."""
    out = {}
    for p in cache.glob("features/*/shard-*.npz"):
        st = p.stat()
        out[p.name] = (st.st_ino, st.st_mtime_ns)
    return out


def _kill_when_shards(proc: subprocess.Popen, cache: Path, at_least: int) -> None:
    deadline = time.monotonic() + 180
    while len(_shards(cache)) < at_least:
        if proc.poll() is not None:
            pytest.fail(f"the CLI ended before it could be killed:\n{proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("no feature shard appeared within 180 s")
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


@pytest.mark.subprocess
def test_kill_9_mid_evaluation_resumes_to_identical_results(
    tmp_path, tiny_clip_dir, tiny_model, monkeypatch
):
    data = make_grouped(tmp_path / "data", PER_GROUP, CLASSES)
    store, cache = tmp_path / "r.duckdb", tmp_path / "cache"
    args = [
        "eval", "-m", f"local-dir:{tiny_clip_dir}", "-d", str(data), "--protocol", "1vN",
        "--store", str(store), "--cache-dir", str(cache), "--batch-size", str(BATCH), "-q",
    ]  # fmt: skip
    env = {"SPURBENCH_SHARD_ROWS": str(SHARD_ROWS)}
    proc = subprocess.Popen(
        cli_command(*args), env=cli_env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    _kill_when_shards(proc, cache, at_least=3)
    assert proc.returncode == -signal.SIGKILL

    survived = _shards(cache)
    assert 3 <= len(survived) < N_SHARDS, "killed too late to test resuming"
    for name in survived:  # every shard on disk is complete; a torn write is never visible
        with np.load(next(cache.glob(f"features/*/{name}"))) as z:
            start, stop = (int(v) for v in z["rows"])
            assert len(z["embedding"]) == stop - start == SHARD_ROWS
    if store.exists():
        assert len(ResultsStore(store).runs()) == 0  # nothing stored from the killed run

    monkeypatch.setenv("SPURBENCH_SHARD_ROWS", str(SHARD_ROWS))
    rerun = CliRunner().invoke(app, args)
    assert rerun.exit_code == 0, rerun.output
    after = _shards(cache)
    assert len(after) == N_SHARDS
    # reused as they were, not re-encoded: only N_SHARDS - len(survived) shards were encoded
    assert {k: after[k] for k in survived} == survived

    reference = evaluate(
        tiny_model, data, ["1vN"], cache_dir=tmp_path / "ref", batch_size=BATCH,
        show_progress=False,
    )[0]  # fmt: skip
    rs = ResultsStore(store)
    runs = rs.runs()
    assert list(runs.run_id) == [reference.run_id]
    stored = rs.predictions(reference.run_id)
    ref = reference.predictions.sort_values("image_id").reset_index(drop=True)
    assert list(stored.image_id) == list(ref.image_id)
    assert np.array_equal(np.stack(stored.topk_labels), np.stack(ref.topk_labels))
    assert np.array_equal(
        np.stack(stored.topk_scores).astype(np.float32), np.stack(ref.topk_scores)
    )  # bit-identical scores, not merely close
    overall = rs.metrics([reference.run_id], "overall").set_index(["metric", "group_name"])
    for row in reference.summary.itertuples():
        got = overall.loc[(row.metric, row.group)]
        assert (got.value, got.ci_low, got.ci_high) == (row.value, row.ci_low, row.ci_high)

    # Once more, as a user unsure whether the rerun finished would: rows are replaced, not added.
    assert CliRunner().invoke(app, args).exit_code == 0
    assert list(rs.runs().run_id) == [reference.run_id]
    sql = "SELECT count(*) AS n, count(DISTINCT image_id) AS d FROM predictions"
    counts = rs.query(sql).iloc[0]
    assert counts.n == counts.d == N_IMAGES
    dup = rs.query(
        "SELECT scope, label, group_name, metric, count(*) AS c FROM metrics "
        "GROUP BY ALL HAVING count(*) > 1"
    )
    assert dup.empty and len(rs.metrics([reference.run_id])) > 0


KILL_IN_TRANSACTION = """
import os, signal, sys
sys.path.insert(0, sys.argv[1])
from tests.reliability.rows import import_store_without_torch, run_rows
results = import_store_without_torch(sys.argv[2])
import duckdb

store = results.ResultsStore(sys.argv[3])
store.write_run(*run_rows("first", 10))
real_connect = duckdb.connect


class KillMidTransaction:
    # A connection whose owner dies (SIGKILL) after the run's first rows were inserted.
    def __init__(self, con):
        self._con = con

    def execute(self, sql, *args):
        if sql.startswith("INSERT INTO metrics"):
            os.kill(os.getpid(), signal.SIGKILL)
        return self._con.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self._con, name)


duckdb.connect = lambda *a, **k: KillMidTransaction(real_connect(*a, **k))
store.write_run(*run_rows("second", 500))
print("not killed")
"""


@pytest.mark.subprocess
def test_kill_9_inside_a_store_transaction_leaves_no_partial_run(tmp_path):
    """The killed run's `runs` and `predictions` rows were inserted, but never committed."""
    store = tmp_path / "r.duckdb"
    repo = str(Path(__file__).resolve().parents[2])
    proc = subprocess.run(
        [sys.executable, "-c", KILL_IN_TRANSACTION, repo, str(SRC), str(store)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr

    rs = ResultsStore(store)  # opens (DuckDB replays its WAL) ...
    assert list(rs.runs().run_id) == ["first"]  # ... with the committed run only
    by_run = rs.query("SELECT run_id, count(*) AS n FROM predictions GROUP BY run_id")
    assert by_run.set_index("run_id").n.to_dict() == {"first": 10}
    assert list(rs.query("SELECT DISTINCT run_id FROM skipped").run_id) == ["first"]


KILL_IN_ATOMIC_WRITE = """
import os, signal, sys
sys.path.insert(0, sys.argv[1])
from tests.reliability.rows import import_store_without_torch
import_store_without_torch(sys.argv[2])  # installs the light ``spurbench`` package stub
from spurbench.atomic import write_atomic


def torn(fh):
    fh.write(b"NEW-HALF")
    fh.flush()
    os.kill(os.getpid(), signal.SIGKILL)


write_atomic(sys.argv[3], torn)
"""


@pytest.mark.subprocess
def test_kill_9_during_a_file_write_leaves_the_old_file(tmp_path):
    """Every cache file goes through ``write_atomic``: a writer killed half-way changes nothing.

    The torn bytes stay in a dot-prefixed temporary file that no reader looks at (old ones are
    removed by the feature cache), never under the real name.
    """
    target = tmp_path / "shard-00000.npz"
    target.write_bytes(b"OLD-COMPLETE")
    repo = str(Path(__file__).resolve().parents[2])
    proc = subprocess.run(
        [sys.executable, "-c", KILL_IN_ATOMIC_WRITE, repo, str(SRC), str(target)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert target.read_bytes() == b"OLD-COMPLETE"
    leftovers = [p.name for p in tmp_path.iterdir() if p != target]
    assert len(leftovers) == 1 and leftovers[0].startswith(".shard-00000.npz.")


def test_rerun_with_another_batch_size_never_splices_shards(
    tiny_model, counteranimal_dir, tmp_path
):
    """Shard size follows the batch size; shards of another layout are recomputed, not mixed.

    Before the check, a rerun with ``--batch-size 3`` after a run with 4 read 8-row shards as
    6-row ones: 30 feature rows for 27 images, misaligned with their labels.
    """
    ds = open_dataset(counteranimal_dir)
    cache = tmp_path / "c"
    encode_dataset(tiny_model, ds, cache, batch_size=4, shard_rows=8, show_progress=False)
    folder = cache / "features" / feature_key(tiny_model, ds)
    for shard in sorted(folder.glob("shard-*.npz"))[2:]:
        shard.unlink()  # as if killed after two shards
    mixed = encode_dataset(tiny_model, ds, cache, batch_size=3, shard_rows=8, show_progress=False)
    clean = encode_dataset(
        tiny_model, ds, tmp_path / "clean", batch_size=3, shard_rows=8, show_progress=False
    )
    assert len(mixed.embedding) == len(ds)
    np.testing.assert_array_equal(mixed.embedding, clean.embedding)


def test_torn_or_stale_cache_files_are_recomputed_or_removed(
    tiny_model, counteranimal_dir, tmp_path
):
    """A shard cut short (power cut, full disk outside spurbench) is recomputed, never read;
    temporary files of writers killed long ago are removed, recent ones (maybe another live
    process's) are left alone."""
    ds = open_dataset(counteranimal_dir)
    kw = dict(batch_size=4, shard_rows=8, show_progress=False)
    full = encode_dataset(tiny_model, ds, tmp_path / "c", **kw)
    folder = tmp_path / "c" / "features" / feature_key(tiny_model, ds)
    shard = folder / "shard-00001.npz"
    shard.write_bytes(shard.read_bytes()[:-100])  # a zip without its central directory
    old, fresh = folder / ".shard-00002.npz.old.tmp", folder / ".shard-00003.npz.new.tmp"
    for p in (old, fresh):
        p.write_bytes(b"torn")
    week_ago = time.time() - 7 * 24 * 3600
    os.utime(old, (week_ago, week_ago))

    again = encode_dataset(tiny_model, ds, tmp_path / "c", **kw)
    np.testing.assert_array_equal(again.embedding, full.embedding)
    assert not old.exists() and fresh.exists()


def test_bad_shard_size_setting_is_a_clear_error(
    tiny_model, counteranimal_dir, tmp_path, monkeypatch
):
    monkeypatch.setenv("SPURBENCH_SHARD_ROWS", "lots")
    with pytest.raises(SpurbenchError, match="SPURBENCH_SHARD_ROWS must be a positive integer"):
        encode_dataset(tiny_model, open_dataset(counteranimal_dir), tmp_path, show_progress=False)
