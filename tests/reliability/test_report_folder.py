"""Issue 16, items 1 and 15 (report part): the report never destroys or overwrites user files.

``spurbench report -o DIR`` used to delete every PNG/SVG in ``DIR/figures`` it had not drawn and
to overwrite ``index.html``, ``summary.md`` and ``models.csv`` in any folder. Now a folder that
is neither empty nor an earlier report (its marker) is refused unless ``--force``, and even
then only files the report itself wrote are ever replaced or removed. A path that is a file, a
folder that cannot be written, or a full disk gives one ``error:`` line.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spurbench.cli import app
from spurbench.report.folder import MARKER
from tests.reliability.expect import one_error_line
from tests.reliability.hostile import hostile_store  # noqa: F401  (fixture)

runner = CliRunner()
FAST = ["--no-thumbnails", "--no-published", "--n-boot", "10"]


def _report(store: Path, out: Path, *extra: str):
    return runner.invoke(app, ["report", "--store", str(store), "-o", str(out), *FAST, *extra])


def _paper_folder(root: Path) -> dict[Path, bytes]:
    """A paper's folder: hand-made figures and a hand-written index.html."""
    files = {
        root / "figures" / "hand_made.png": b"\x89PNG my figure",
        root / "figures" / "counter_vs_common_1vn.svg": b"<svg>mine</svg>",
        root / "index.html": b"<html>my paper</html>",
        root / "summary.md": b"# my notes",
    }
    for path, content in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return files


def test_foreign_folder_is_refused_and_untouched(hostile_store, tmp_path):  # noqa: F811
    files = _paper_folder(tmp_path / "paper")
    line = one_error_line(_report(hostile_store.store, tmp_path / "paper"))
    assert "--force" in line and "not a spurbench report" in line
    for path, content in files.items():
        assert path.read_bytes() == content
    assert sorted(p.name for p in (tmp_path / "paper").rglob("*")) == sorted(
        ["figures", *(p.name for p in files)]
    )


def test_force_writes_beside_user_figures_and_rerun_keeps_them(hostile_store, tmp_path):  # noqa: F811
    out = tmp_path / "paper"
    files = _paper_folder(out)
    hand_made = out / "figures" / "hand_made.png"
    result = _report(hostile_store.store, out, "--force")
    assert result.exit_code == 0, result.output
    assert hand_made.read_bytes() == files[hand_made]
    assert (out / MARKER).is_file() and "spurbench report" in (out / "index.html").read_text()
    # a rerun (no --force needed now: the folder is a report) still keeps the user's figure
    stale = out / "figures" / "class_drops_gone_1.png"
    marker = (out / MARKER).read_text()
    (out / MARKER).write_text(marker.replace('"files": [', f'"files": ["figures/{stale.name}", '))
    stale.write_bytes(b"drawn by an earlier report")
    assert _report(hostile_store.store, out).exit_code == 0
    assert hand_made.read_bytes() == files[hand_made]
    assert not stale.exists()  # listed in the marker: an earlier report's figure, removed


def test_empty_and_earlier_report_folders_are_accepted(hostile_store, tmp_path):  # noqa: F811
    (tmp_path / "empty").mkdir()
    assert _report(hostile_store.store, tmp_path / "empty").exit_code == 0
    assert _report(hostile_store.store, tmp_path / "empty").exit_code == 0  # now a report


def test_out_is_a_file(hostile_store, tmp_path):  # noqa: F811
    (tmp_path / "report").write_text("mine")
    assert "is a file" in one_error_line(_report(hostile_store.store, tmp_path / "report"))
    assert (tmp_path / "report").read_text() == "mine"


@pytest.mark.parametrize(
    "code", [errno.EACCES, errno.EROFS, errno.ENOSPC], ids=["read-only", "ro-fs", "disk-full"]
)
def test_unwritable_out_is_one_line(hostile_store, tmp_path, monkeypatch, code):  # noqa: F811
    """Root ignores permissions, so the OS error is injected where the report first writes."""

    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code), str(tmp_path / "out"))

    monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    line = one_error_line(_report(hostile_store.store, tmp_path / "out"))
    assert os.strerror(code) in line


def test_disk_full_while_drawing_is_one_line(hostile_store, tmp_path, monkeypatch):  # noqa: F811
    from matplotlib.figure import Figure

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Figure, "savefig", full)
    line = one_error_line(_report(hostile_store.store, tmp_path / "out"))
    assert "No space left" in line


def test_report_from_before_the_marker_is_still_a_report(hostile_store, tmp_path):  # noqa: F811
    out = tmp_path / "old"
    assert _report(hostile_store.store, out).exit_code == 0
    (out / MARKER).unlink()
    mine = out / "figures" / "mine.png"
    mine.write_bytes(b"kept")
    assert _report(hostile_store.store, out).exit_code == 0
    assert mine.read_bytes() == b"kept"
