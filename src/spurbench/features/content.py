"""What the image files hold: a hash of their bytes, re-read only when a file's identity changes.

The feature cache must never serve features of an image that has since changed. Size and mtime
alone do not prove that: ``cp -p``, ``rsync -t`` and ``tar x`` copy new bytes under the old
mtime, and many formats (BMP, fixed-size crops) keep the size. So the cache is keyed on content:
a BLAKE2b hash of each file's bytes.

Reading every image on every run would cost as much I/O as decoding them, so each file's hash is
remembered on disk next to the features, under its *identity*: path, size, mtime_ns, inode and
ctime_ns. A rerun stats the files and reads only those whose identity changed. The trade-off:
content rewritten in place with size, mtime, inode *and* ctime all kept goes unnoticed; ctime
cannot be set from user space (only by moving the system clock), so that takes a deliberate
effort, not a copy tool. Delete ``<cache>/file-hashes`` to force every file to be re-read.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

from spurbench.atomic import write_json_atomic
from spurbench.data.members import container_of, is_member, read_member

#: Bumped when the memo's layout changes; memos of another version are ignored, not misread.
MEMO_VERSION = 1
#: In-process memo: identity digest of a path list -> content digest (a second protocol, a
#: probe or the Ray backend in the same process only stats the files).
_DIGESTS: dict[str, str] = {}

Identity = tuple[int, int, int, int]


def file_identity(path: str) -> Identity | None:
    """(size, mtime_ns, inode, ctime_ns), or None when the file cannot be stat'ed.

    An image inside a shard or Arrow file (a locator, :mod:`spurbench.data.members`) has its
    container's identity: the member is re-hashed whenever its container changes.
    """
    try:
        st = os.stat(container_of(path) if is_member(path) else path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns


def file_hash(path: str) -> str:
    """BLAKE2b-128 of the file's bytes ('unreadable' when it cannot be read)."""
    try:
        if is_member(path):
            return hashlib.blake2b(read_member(path), digest_size=16).hexdigest()
        with open(path, "rb") as fh:
            return hashlib.file_digest(fh, lambda: hashlib.blake2b(digest_size=16)).hexdigest()
    except (OSError, ValueError):  # ValueError: an Arrow row without an image
        return "unreadable"


def content_digest(paths: Sequence[str], memo_dir: Path | None) -> str:
    """One digest of the bytes of ``paths`` (in order), reading only files not seen unchanged.

    ``memo_dir`` keeps the per-file hashes between runs (None: this process only). A memo that
    cannot be read or written is ignored: the files are then hashed again, never trusted.
    """
    identities = [file_identity(p) for p in paths]
    who = hashlib.sha256(json.dumps([list(paths), identities]).encode()).hexdigest()
    if who in _DIGESTS:
        return _DIGESTS[who]
    memo_path = None
    if memo_dir is not None:
        name = hashlib.sha256("\n".join(paths).encode()).hexdigest()[:24]
        memo_path = Path(memo_dir) / "file-hashes" / f"{name}.json"
    memo = _read_memo(memo_path)
    fresh: dict[str, list] = {}
    h = hashlib.sha256()
    for path, ident in zip(paths, identities, strict=True):
        if ident is None:
            digest = "missing"
        else:
            known = memo.get(path)
            digest = known[4] if known and tuple(known[:4]) == ident else file_hash(path)
            fresh[path] = [*ident, digest]
        h.update(f"{path}\t{digest}\n".encode())
    if memo_path is not None and fresh != memo:
        try:
            memo_path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(memo_path, {"version": MEMO_VERSION, "files": fresh})
        except OSError:
            pass  # a read-only or full cache: the hashes are recomputed next time
    _DIGESTS[who] = h.hexdigest()[:24]
    return _DIGESTS[who]


def _read_memo(path: Path | None) -> dict[str, list]:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
        if data.get("version") != MEMO_VERSION or not isinstance(data.get("files"), dict):
            return {}
        return {p: v for p, v in data["files"].items() if isinstance(v, list) and len(v) == 5}
    except (OSError, ValueError, AttributeError):
        return {}
