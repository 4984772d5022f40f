"""Atomic file writes: a reader, or a rerun after kill -9, sees the old file or the new one.

Write to a temporary file in the same folder, flush and fsync, then ``os.replace`` (and fsync
the folder, so a power cut cannot lose the rename). A full disk is the most common way a long
run dies while writing: it surfaces as :class:`DiskFullError`, a one-line message the CLI
prints, and the temporary file is removed, so nothing half-written is ever left under the real
name. A process killed with -9 mid-write can leave a dot-prefixed ``.<name>.*.tmp`` file, which
no reader looks at.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

from spurbench.errors import SpurbenchError

#: errno values meaning "the disk (or the user's quota) is full".
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class DiskFullError(SpurbenchError, OSError):
    """No space left while writing ``filename``; the previous version of the file is intact.

    Also an :class:`OSError` (with ``errno`` set), so code that already handles write failures
    as OSError keeps working; as a :class:`SpurbenchError` the CLI shows it without traceback.
    """

    def __init__(self, target: str | Path, cause: OSError) -> None:
        message = (
            f"No space left on device while writing {target} ({cause.strerror or cause}). "
            "Nothing half-written was kept: free some space (or point the cache / store at "
            "another disk) and rerun; completed work is reused."
        )
        super().__init__(cause.errno, message)
        self.filename = str(target)

    def __str__(self) -> str:
        return str(self.strerror)


def is_disk_full(exc: BaseException) -> bool:
    """True for an OSError that means no space (ENOSPC) or quota exceeded (EDQUOT)."""
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS


@contextmanager
def atomic_path(target: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it replaces ``target``.

    On any failure the temporary file is deleted and ``target`` is left as it was; a full disk
    is re-raised as :class:`DiskFullError`.
    """
    target = Path(target)
    tmp_path: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=suffix or ".tmp", dir=target.parent
        )
        os.close(fd)
        tmp_path = Path(tmp)
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, target)
        _fsync_dir(target.parent)
    except OSError as e:
        if is_disk_full(e) and not isinstance(e, DiskFullError):
            raise DiskFullError(target, e) from e
        raise
    finally:
        if tmp_path is not None and tmp_path.exists():
            with suppress(OSError):
                tmp_path.unlink()


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable across a power cut (best effort: not every OS allows it)."""
    with suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic(target: str | Path, writer: Callable[[IO[bytes]], Any]) -> None:
    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        writer(fh)


def write_text_atomic(target: str | Path, text: str) -> None:
    write_atomic(target, lambda fh: fh.write(text.encode("utf-8")))


def write_json_atomic(target: str | Path, obj: Any) -> None:
    write_text_atomic(target, json.dumps(obj, indent=2, sort_keys=True, default=str))
