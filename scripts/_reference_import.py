"""What the reference-data import scripts share: reading a project's published files from a
checkout or a commit of a (bare) clone, reproducible CSV text, and the ``--check`` / write step.

The scripts (``import_timm_results.py``, ``import_testbed_results.py``) differ only in which
files they read and the rules that turn them into rows; everything that makes a re-import
mechanical and verifiable lives here once.
"""

from __future__ import annotations

import argparse
import csv
import io
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

Reader = Callable[[str], str]


def folder_reader(folder: Path) -> Reader:
    """Read files by their path under ``folder`` (a checkout, or a download of the files)."""
    return lambda path: (folder / path).read_text(encoding="utf-8")


def git(git_dir: Path, *args: str) -> str:
    """Output of a git command on ``git_dir`` (no work tree needed), stripped."""
    cmd = ["git", f"--git-dir={git_dir}", *args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()


def git_reader(git_dir: Path, rev: str, prefix: str = "") -> Reader:
    """Read ``prefix + path`` at ``rev`` from a (bare) clone, exactly as committed."""

    def read(path: str) -> str:
        cmd = ["git", f"--git-dir={git_dir}", "show", f"{rev}:{prefix}{path}"]
        return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout

    return read


def provenance(git_dir: Path, rev: str, paths: Sequence[str]) -> str:
    """Commit of ``rev`` and, per file, its blob id and last change: what SOURCES.md cites."""
    when = git(git_dir, "log", "-1", "--format=%ci", rev)
    lines = [f"commit {git(git_dir, 'rev-parse', rev)} ({when})"]
    for path in paths:
        last = git(git_dir, "log", "-1", "--format=%H %cs", rev, "--", path)
        lines.append(f"  {path}: blob {git(git_dir, 'rev-parse', f'{rev}:{path}')}, last {last}")
    return "\n".join(lines)


def to_csv(rows: list[dict[str, str]], columns: Sequence[str]) -> str:
    """CSV text with ``\\n`` line ends, so the committed file is byte-for-byte reproducible."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def parser(description: str, what: str, default_out: Path) -> argparse.ArgumentParser:
    """The scripts' arguments: ``--from DIR | --git-dir DIR [--rev]``, ``--out``, ``--check``."""
    ap = argparse.ArgumentParser(description=description)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--from", dest="folder", type=Path, help=f"{what} (a folder)")
    src.add_argument("--git-dir", type=Path, help=f"a clone holding {what}")
    ap.add_argument("--rev", default="HEAD", help="commit to read with --git-dir [HEAD]")
    ap.add_argument("--out", type=Path, default=default_out, help="CSV to write")
    ap.add_argument("--check", action="store_true", help="compare with --out, write nothing")
    return ap


def write_or_check(text: str, out: Path, check: bool) -> int:
    """Write ``text`` to ``out``, or with ``check`` only compare (exit status 1 if it differs)."""
    if check:
        same = out.exists() and out.read_text(encoding="utf-8") == text
        print(f"{out}: {'identical' if same else 'DIFFERS'}")
        return 0 if same else 1
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out} ({len(text.encode())} bytes)")
    return 0
