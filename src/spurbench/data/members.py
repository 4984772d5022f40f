"""Images stored inside container files: members of tar shards and rows of Arrow files.

WebDataset shards and Hugging Face datasets keep many images in one file. Rather than copy them
out, a dataset row's ``path`` is a *locator* naming the container and where the image is in it:

* ``tar://<offset>:<size>:<shard path>`` — the member's data bytes in an uncompressed tar;
* ``arrow://<row>:<column>:<arrow file>`` — an image cell (``{bytes, path}``) of an Arrow
  stream file as ``datasets`` writes it (``save_to_disk``, the ``load_dataset`` cache).

Every stage that opens images (:func:`spurbench.data.images.load_rgb`) reads through
:func:`read_member`, so evaluation, thumbnails and cleaning work the same on all sources, with
random access and one image in memory at a time. Tar members are read with ``os.pread`` (no
shared file offset), so DataLoader workers forked after the parent opened a shard stay safe.

The identity of a member for the feature cache (:func:`file_stamp`) is its container file's
size and modification time together with the locator (shard + offset, or file + row): rewriting
a shard re-encodes it, re-opening the same shards finds the cache.
"""

from __future__ import annotations

import os
from functools import lru_cache

TAR, ARROW = "tar://", "arrow://"


def tar_locator(shard: str, offset: int, size: int) -> str:
    return f"{TAR}{offset}:{size}:{shard}"


def arrow_locator(arrow_file: str, row: int, column: str) -> str:
    if ":" in column:
        raise ValueError(f"Column names with ':' cannot be located: {column!r}")
    return f"{ARROW}{row}:{column}:{arrow_file}"


def is_member(path: str) -> bool:
    """True when ``path`` is a locator rather than a file path."""
    return path.startswith((TAR, ARROW))


def container_of(locator: str) -> str:
    """The file holding the member (the shard or Arrow file)."""
    return locator.split(":", 3)[3] if locator.startswith(TAR) else _split_arrow(locator)[2]


def read_member(locator: str) -> bytes:
    """The encoded image bytes a locator points to."""
    if locator.startswith(TAR):
        offset, size, shard = locator[len(TAR) :].split(":", 2)
        return _pread(shard, int(offset), int(size))
    row, column, arrow_file = _split_arrow(locator)
    cell = _arrow_table(arrow_file).column(column)[row].as_py()
    if isinstance(cell, dict):
        if cell.get("bytes") is not None:
            return cell["bytes"]
        if cell.get("path"):
            with open(cell["path"], "rb") as fh:
                return fh.read()
    if isinstance(cell, bytes):
        return cell
    raise ValueError(f"row {row} of {arrow_file} holds no image in column {column!r}")


def file_stamp(path: str) -> str:
    """Size and mtime of an image file, or of the container holding a member: cache identity."""
    try:
        st = os.stat(container_of(path) if is_member(path) else path)
    except OSError:
        return "missing"
    return f"{st.st_size}:{st.st_mtime_ns}"


def _split_arrow(locator: str) -> tuple[int, str, str]:
    row, column, arrow_file = locator[len(ARROW) :].split(":", 2)
    return int(row), column, arrow_file


def _pread(path: str, offset: int, size: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        data = os.pread(fd, size, offset)
    finally:
        os.close(fd)
    if len(data) != size:
        raise OSError(f"{path} is truncated: wanted {size} bytes at offset {offset}")
    return data


@lru_cache(maxsize=16)
def _arrow_table(path: str):
    """An Arrow stream file, memory-mapped: rows are read from disk as they are touched."""
    import pyarrow as pa

    # the table's buffers point into the map and keep it open while the table lives
    return pa.ipc.open_stream(pa.memory_map(path)).read_all()
