"""The report's output folder: only ever write into an empty folder or an earlier report.

A report folder is recognised by a marker file (:data:`MARKER`) that lists, relative to the
folder, every file the report wrote. The marker is what makes a rerun safe: figures of the
previous report that the new one no longer draws are removed, and nothing else is, so a
paper's hand-made figures beside (or inside) the report folder survive any rerun, even with
``--force``.
"""

from __future__ import annotations

import errno
import json
from collections.abc import Iterable
from pathlib import Path

from spurbench.atomic import write_json_atomic
from spurbench.errors import SpurbenchError

__all__ = ["MARKER", "ReportFolderError", "check_out_dir", "read_manifest", "write_manifest"]

MARKER = ".spurbench-report.json"
#: staging folders of an interrupted run (hidden, removed by the next run's cleanup)
_STAGING_PREFIX = ".report-"


class ReportFolderError(SpurbenchError):
    """The report's output folder cannot (or must not) be written."""


def check_out_dir(out: Path, force: bool = False) -> None:
    """Refuse a path that is a file, or a non-empty folder that is not an earlier report.

    ``force`` allows writing into a foreign folder (its files are still never deleted).
    """
    if out.exists() and not out.is_dir():
        raise ReportFolderError(f"--out {out} is a file; the report needs a folder.")
    if not out.is_dir() or (out / MARKER).is_file() or force or _earlier_report(out):
        return
    foreign = [p.name for p in out.iterdir() if not p.name.startswith(_STAGING_PREFIX)]
    if foreign:
        shown = ", ".join(sorted(foreign)[:3]) + (", ..." if len(foreign) > 3 else "")
        raise ReportFolderError(
            f"--out {out} is not empty and is not a spurbench report (it holds {shown}); "
            "choose a new or empty folder, or pass --force to write beside those files "
            "(spurbench never deletes files it did not write)."
        )


def _earlier_report(out: Path) -> bool:
    """A report written before the marker existed: its page names spurbench as generator.

    Accepted so that reruns keep working; with no manifest, such a folder loses no file.
    """
    try:
        with open(out / "index.html", encoding="utf-8", errors="replace") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    return '<meta name="generator" content="spurbench' in head


def read_manifest(out: Path) -> set[str]:
    """Files (relative to ``out``) that the previous report wrote; empty for a new folder."""
    try:
        files = json.loads((out / MARKER).read_text(encoding="utf-8")).get("files", [])
    except (OSError, ValueError, AttributeError):
        return set()
    return {f for f in files if isinstance(f, str)}


def write_manifest(out: Path, files: Iterable[str]) -> None:
    write_json_atomic(out / MARKER, {"spurbench_report": 1, "files": sorted(set(files))})


def write_error(out: Path, e: OSError) -> ReportFolderError:
    """A one-line error for an OSError while writing the report (read-only, full disk...)."""
    reason = e.strerror or str(e)
    hint = {
        errno.EACCES: "choose a folder you can write to",
        errno.EPERM: "choose a folder you can write to",
        errno.EROFS: "choose a folder you can write to",
        errno.ENOSPC: "free some space or choose another disk; the previous report is intact",
        errno.EDQUOT: "free some space or choose another disk; the previous report is intact",
    }.get(e.errno or 0, "check the folder")
    where = f" ({e.filename})" if e.filename else ""
    return ReportFolderError(f"Cannot write the report to {out}: {reason}{where}; {hint}.")
