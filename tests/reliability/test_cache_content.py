"""Case 16.7: the feature cache follows the images' bytes, not their size and mtime.

``cp -p``, ``rsync -t`` and ``tar x`` give new content the old mtime; a BMP of the same shape
keeps the size. The cache must then encode the image again, not serve the old features.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from spurbench.data.layouts import open_dataset
from spurbench.features import content
from spurbench.features.cache import encode_dataset


def _bmp(path, base: tuple[int, int, int]) -> None:
    """A 32×32 BMP: every image of that shape has the same size in bytes, whatever its pixels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(sum(base)).integers(0, 256, size=(32, 32, 3)) // 2 + base
    Image.fromarray(pixels.astype(np.uint8)).save(path, format="BMP")


def test_changed_bytes_with_same_size_and_mtime_are_encoded_again(tmp_path, tiny_model):
    data = tmp_path / "data"
    for c in ("9 ostrich", "100 black swan"):
        for g in ("common-ground", "counter-water"):
            for i in range(2):
                _bmp(data / c / g / f"{i}.bmp", (20 * i, 60, 0))
    cache = tmp_path / "cache"
    first = encode_dataset(tiny_model, open_dataset(data), cache, batch_size=4, show_progress=False)
    victim = data / "9 ostrich" / "common-ground" / "0.bmp"
    before = victim.stat()
    _bmp(victim, (120, 0, 120))  # what `cp -p other.bmp 0.bmp` leaves: new pixels, old mtime
    os.utime(victim, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (victim.stat().st_size, victim.stat().st_mtime_ns) == (
        before.st_size,
        before.st_mtime_ns,
    )

    ds = open_dataset(data)
    again = encode_dataset(tiny_model, ds, cache, batch_size=4, show_progress=False)
    row = int(np.flatnonzero(ds.table["path"] == str(victim))[0])
    assert not np.array_equal(again.embedding[row], first.embedding[row])
    expected = encode_dataset(
        tiny_model, ds, tmp_path / "fresh", batch_size=4, show_progress=False
    )  # an empty cache: the independent reference
    np.testing.assert_array_equal(again.embedding, expected.embedding)


def test_rerun_reads_only_files_whose_identity_changed(tmp_path, monkeypatch):
    files = []
    for i in range(4):
        f = tmp_path / f"{i}.bin"
        f.write_bytes(bytes([i]) * 100)
        files.append(str(f))
    reads: list[str] = []
    real = content.file_hash
    monkeypatch.setattr(content, "file_hash", lambda p: reads.append(p) or real(p))
    first = content.content_digest(files, tmp_path / "memo")
    assert sorted(reads) == sorted(files)
    content._DIGESTS.clear()  # a new process: only the on-disk memo remains
    reads.clear()
    assert content.content_digest(files, tmp_path / "memo") == first
    assert reads == []
    content._DIGESTS.clear()
    Path(files[2]).write_bytes(b"x" * 100)
    reads.clear()
    assert content.content_digest(files, tmp_path / "memo") != first
    assert reads == [files[2]]


def test_damaged_hash_memo_is_ignored(tmp_path):
    f = tmp_path / "a.bin"
    f.write_bytes(b"a")
    first = content.content_digest([str(f)], tmp_path / "memo")
    content._DIGESTS.clear()
    for memo in (tmp_path / "memo" / "file-hashes").glob("*.json"):
        memo.write_text("{not json")
    assert content.content_digest([str(f)], tmp_path / "memo") == first
