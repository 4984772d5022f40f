"""Case 1: broken, hostile and huge image files are skipped with a reason; the run completes.

A web-scraped dataset always holds some files that are not what their name says. One of them
must never stop a run that has hours of work behind it, nor silently count as a wrong answer:
each is excluded from the metrics and recorded with its reason, and the count is shown.
"""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torchvision import transforms as T
from typer.testing import CliRunner

from spurbench.cli import app
from spurbench.data.images import ImageFiles
from spurbench.store import ResultsStore
from tests.reliability.conftest import png_header_only

runner = CliRunner()

GROUP = "9 ostrich/common-ground"
#: file name -> the start of the recorded reason (what the user reads in the `skipped` table)
EXPECTED = {
    "zero.png": "UnidentifiedImageError",
    "text.jpg": "UnidentifiedImageError",
    "trunc.png": "OSError: image file is truncated",
    "trunc.jpg": "OSError: image file is truncated",
    "bomb.png": "DecompressionBombError",  # 50000 x 50000 claimed: Pillow's own hard limit
    "bomb2.png": "DecompressionBomb",  # 10000 x 10000: only a warning in Pillow, an error here
    "eps.jpg": "UnidentifiedImageError",  # PostScript would be handed to Ghostscript
}


def _encoded(fmt: str, rng: np.random.Generator) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(buf, fmt)
    return buf.getvalue()


def plant_bad_files(folder: Path) -> None:
    """Write one file of each bad kind next to the good images of one group."""
    rng = np.random.default_rng(1)
    (folder / "zero.png").write_bytes(b"")
    (folder / "text.jpg").write_text("I am a caption, not a JPEG.\n")
    png, jpg = _encoded("PNG", rng), _encoded("JPEG", rng)
    (folder / "trunc.png").write_bytes(png[: len(png) // 2])
    (folder / "trunc.jpg").write_bytes(jpg[: len(jpg) // 2])
    (folder / "bomb.png").write_bytes(png_header_only(50_000, 50_000))
    (folder / "bomb2.png").write_bytes(png_header_only(10_000, 10_000))
    (folder / "eps.jpg").write_text(
        "%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n%%EOF\n"
    )


def test_bad_files_are_skipped_recorded_and_counted(tiny_clip_dir, counteranimal_dir, tmp_path):
    """Through the CLI: exit 0, a per-file reason in the store, the count on screen."""
    plant_bad_files(counteranimal_dir / GROUP)
    store = tmp_path / "r.duckdb"
    out = runner.invoke(
        app,
        [
            "eval", "-m", f"local-dir:{tiny_clip_dir}", "-d", str(counteranimal_dir),
            "--protocol", "1vN", "--store", str(store), "--cache-dir", str(tmp_path / "c"),
            "--batch-size", "8", "-q",
        ],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    n_bad, n_total = len(EXPECTED), 27 + len(EXPECTED)
    assert f"{n_bad} unreadable images skipped" in out.output

    rs = ResultsStore(store)
    skipped = rs.query("SELECT image_id, reason FROM skipped ORDER BY image_id")
    reasons = {Path(i).name: r for i, r in zip(skipped.image_id, skipped.reason, strict=True)}
    assert set(reasons) == set(EXPECTED)
    for name, start in EXPECTED.items():
        assert reasons[name].startswith(start), (name, reasons[name])
    run = rs.runs().iloc[0]
    assert (run.n_images, run.n_skipped) == (n_total, n_bad)
    preds = rs.predictions(run.run_id)
    assert len(preds) == n_total - n_bad  # bad files are excluded, not scored as wrong
    assert not set(preds.image_id) & set(skipped.image_id)
    per_group = rs.metrics([run.run_id], "overall").query("metric == 'accuracy'")
    assert per_group.n.sum() == n_total - n_bad


def test_bomb_is_refused_even_when_pillow_limit_is_disabled(monkeypatch, tmp_path):
    """Some libraries set ``Image.MAX_IMAGE_PIXELS = None`` globally; our own limit still holds.

    Checked from the header, before any pixel is decoded: a trusting loader would try to
    allocate 7.5 GB for this 100-byte file.
    """
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(50_000, 50_000))
    files = ImageFiles([str(path)], T.ToTensor(), (8, 8))
    _, tensor, reason = files[0]
    assert reason.startswith("DecompressionBombError") and "50000x50000" in reason
    assert tuple(tensor.shape) == (3, 8, 8)  # the placeholder, not a decoded image


def test_fifo_named_like_an_image_does_not_block(tmp_path):
    """A FIFO (or device) listed in a manifest would block the reader forever; refuse it.

    The test holds the FIFO open for writing with some junk in it, so that a reader which
    ignored the file type would get bytes (and a different error) instead of hanging the suite.
    """
    fifo = tmp_path / "photo.jpg"
    os.mkfifo(fifo)
    fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    try:
        os.write(fd, b"junk" * 16)
        result: list[str] = []
        reader = threading.Thread(
            target=lambda: result.append(ImageFiles([str(fifo)], T.ToTensor(), (8, 8))[0][2]),
            daemon=True,
        )
        reader.start()
        reader.join(timeout=20)
        assert result, "reading a FIFO blocked"
        assert "not a regular file" in result[0]
    finally:
        os.close(fd)


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_missing_file_or_directory_is_skipped(tmp_path, kind):
    path = tmp_path / "x.png"
    if kind == "directory":
        path.mkdir()
    _, _, reason = ImageFiles([str(path)], T.ToTensor(), (8, 8))[0]
    assert reason.startswith("FileNotFoundError" if kind == "missing" else "ValueError")
