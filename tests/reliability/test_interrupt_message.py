"""Issue 16, item 23: Ctrl-C says what was kept and how to resume (exit code 130).

The feature cache already survived Ctrl-C (complete shards stay, a rerun resumes) but the CLI
exited silently; the user could not tell whether the hour of encoding was lost.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.reliability.conftest import cli_command, cli_env, make_grouped

CLASSES = ("1 goldfish", "9 ostrich", "100 black swan", "296 ice bear", "330 wood rabbit")
SHARD_ROWS, BATCH, PER_GROUP = 4, 4, 8  # 80 images, 20 shards


def _n_shards(cache: Path) -> int:
    return len(list(cache.glob("features/*/shard-*.npz")))


@pytest.mark.subprocess
def test_ctrl_c_during_encoding_says_what_was_kept(tmp_path, tiny_clip_dir):
    """Decode workers (the default) get the same SIGINT, from the terminal's process group."""
    data = make_grouped(tmp_path / "data", PER_GROUP, CLASSES)
    cache = tmp_path / "cache"
    args = [
        "eval", "-m", f"local-dir:{tiny_clip_dir}", "-d", str(data), "--protocol", "1vN",
        "--store", str(tmp_path / "r.duckdb"), "--cache-dir", str(cache),
        "--batch-size", str(BATCH), "-q",
    ]  # fmt: skip
    proc = subprocess.Popen(
        cli_command(*args), env=cli_env(SPURBENCH_SHARD_ROWS=str(SHARD_ROWS)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, process_group=0,
    )  # fmt: skip
    deadline = time.monotonic() + 180
    while _n_shards(cache) < 2:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no shard to interrupt after:\n{proc.communicate(timeout=30)[1]}")
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C does: the whole process group
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    found = re.fullmatch(r"interrupted: (\d+) of (\d+) feature shards of .* kept in (.*); rerun "
                         r"the same command to resume", lines[0])
    assert found, lines[0]
    kept, total = int(found[1]), int(found[2])
    assert total == 20 and 2 <= kept < total
    assert kept == _n_shards(cache)  # what it says is what is on disk
    assert Path(found[3]).is_dir() and Path(found[3]).parent.parent == cache
