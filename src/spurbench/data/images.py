"""Reading images that may be broken, huge or hostile, without stopping a long run.

A bad file (unreadable, truncated, not an image, a decompression bomb) yields a placeholder
tensor and a reason string; the caller records the reason and excludes the image from metrics.

Files from the web are opened defensively: only regular files (a FIFO or device named
``x.jpg`` would block or never end), only common raster formats (Pillow would otherwise hand an
EPS file named ``.jpg`` to Ghostscript, a separate interpreter with a history of exploits), and
the pixel count is checked from the header before anything is decoded.
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset

from spurbench.data.members import is_member, read_member

#: Pixels above which an image is refused as a possible decompression bomb (≈ 16k × 11k).
MAX_PIXELS = 178_956_970
#: Pillow formats an image may have (recognised by content, whatever the file name says).
FORMATS = ("JPEG", "PNG", "BMP", "GIF", "TIFF", "WEBP", "AVIF", "PPM", "TGA", "ICO")


def read_image_bytes(path: str) -> bytes:
    """The encoded bytes of an image file or of a member of a shard (see :mod:`.members`)."""
    if is_member(path):
        return read_member(path)
    with open(path, "rb") as fh:
        return fh.read()


def load_rgb(path: str, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open and fully decode an image as RGB, raising on anything suspicious.

    ``path`` is a file or a locator of an image inside a tar shard or Arrow file.
    """
    if is_member(path):
        source: str | io.BytesIO = io.BytesIO(read_member(path))
    else:
        source = path
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise ValueError(f"{path} is not a regular file")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(source, formats=FORMATS) as im:
            if im.width * im.height > max_pixels:
                raise Image.DecompressionBombError(
                    f"{im.width}x{im.height} pixels exceeds the limit of {max_pixels}"
                )
            im.load()
            return im.convert("RGB")


class ImageFiles(Dataset):
    """Torch dataset over file paths: returns (position, tensor, reason or '')."""

    def __init__(
        self, paths: Sequence[str], transform: Callable[[Any], torch.Tensor], size: tuple[int, int]
    ) -> None:
        self.paths = list(paths)
        self.transform = transform
        self.size = size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor, str]:
        try:
            return i, self.transform(load_rgb(self.paths[i])), ""
        except Exception as e:
            reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
            return i, torch.zeros(3, *self.size), reason
