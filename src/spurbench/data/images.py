"""Reading images that may be broken, huge or hostile, without stopping a long run.

A bad file (unreadable, truncated, not an image, a decompression bomb) yields a placeholder
tensor and a reason string; the caller records the reason and excludes the image from metrics.

Files from the web are opened defensively: only regular files (a FIFO or device named
``x.jpg`` would block or never end), only common raster formats (Pillow would otherwise hand an
EPS file named ``.jpg`` to Ghostscript, a separate interpreter with a history of exploits), and
the pixel count is checked from the header before anything is decoded. So is the size the image
would have once resized: the model's preprocessing scales the *shortest* side to its input size,
so a 20000×1 strip (a 143-byte PNG) would become 4.5 million × 224 pixels, gigabytes of memory.

Pixels become 8-bit RGB the way Pillow converts them, except 16-bit greyscale (``I;16``), which
Pillow clips to white: it is scaled to 8 bits. 32-bit integer and float images (``I``, ``F``)
have no defined white level, and Pillow reads CIELAB TIFFs with the wrong colours: those are
skipped with a reason rather than guessed.
"""

from __future__ import annotations

import io
import math
import os
import stat
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from spurbench.data.members import is_member, read_member
from spurbench.errors import SpurbenchError

#: Pixels above which an image is refused as a possible decompression bomb (≈ 16k × 11k).
MAX_PIXELS = 178_956_970
#: Pillow formats an image may have (recognised by content, whatever the file name says).
FORMATS = ("JPEG", "PNG", "BMP", "GIF", "TIFF", "WEBP", "AVIF", "PPM", "TGA", "ICO")
#: Pixels an image may have once its shortest side is resized to the model's input size
#: (≈ 50 MB as 8-bit RGB): allows panoramas up to ~330:1 at 224 pixels, not strips.
MAX_RESIZED_PIXELS = 2**24
#: Draft decoding keeps at least this multiple of the target short side, so that the resize
#: after it still averages two source pixels or more per output pixel (measured on 1-6 MP
#: photos: preprocessed tensors within ~0.005 mean absolute of exact, tests/data/
#: test_draft_decode.py).
DRAFT_OVERSAMPLE = 2
#: How images are decoded: every pixel, or JPEGs at a reduced DCT scale (``--decode draft``).
DECODES = ("exact", "draft")
#: Modes whose pixels Pillow's ``convert("RGB")`` maps to RGB faithfully (alpha is dropped).
RGB_MODES = frozenset({"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr"})
#: 16-bit greyscale modes, scaled to 8 bits (Pillow's own conversion clips them to white).
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})


def read_image_bytes(path: str) -> bytes:
    """The encoded bytes of an image file or of a member of a shard (see :mod:`.members`)."""
    if is_member(path):
        return read_member(path)
    with open(path, "rb") as fh:
        return fh.read()


class ExtremeAspectError(ValueError):
    """The image would be too large once resized for the model (a very long, thin strip)."""


class UnsupportedModeError(ValueError):
    """Pixels whose conversion to 8-bit RGB would be a guess (32-bit integers, floats)."""


def resized_pixels(width: int, height: int, short_side: int) -> int:
    """Pixels after scaling the shortest side to ``short_side`` (the usual resize plan)."""
    short, long = sorted((max(width, 1), max(height, 1)))
    return short_side * -(-long * short_side // short)


def to_rgb(im: Image.Image) -> Image.Image:
    """8-bit RGB pixels of ``im``; :class:`UnsupportedModeError` where that would be a guess."""
    if im.mode in RGB_MODES:
        return im.convert("RGB")
    if im.mode in SIXTEEN_BIT_MODES:
        grey = np.asarray(im).astype(np.uint32)
        grey8 = ((grey * 255 + 32767) // 65535).astype(np.uint8)  # round(v / 257)
        return Image.fromarray(grey8, mode="L").convert("RGB")
    raise UnsupportedModeError(
        f"pixel mode {im.mode} has no faithful 8-bit RGB conversion; "
        "save the image as 8- or 16-bit RGB or greyscale"
    )


def check_decode(decode: str) -> str:
    """``decode`` if it is one of :data:`DECODES`, else a SpurbenchError listing them."""
    if decode not in DECODES:
        raise SpurbenchError(f"Unknown decode {decode!r}; choose one of {', '.join(DECODES)}.")
    return decode


def load_rgb(
    path: str, max_pixels: int = MAX_PIXELS, short_side: int | None = None, draft: bool = False
) -> Image.Image:
    """Open and fully decode an image as RGB, raising on anything suspicious.

    ``short_side``: the side the caller will resize the shortest edge to; the image is refused
    before decoding when that would exceed :data:`MAX_RESIZED_PIXELS`. ``path`` is a file or
    a locator of an image inside a tar shard or Arrow file (:mod:`.members`). ``draft``: a
    JPEG larger than :data:`DRAFT_OVERSAMPLE` times ``short_side`` is decoded at a reduced
    DCT scale (1/2, 1/4 or 1/8) that keeps at least that size, several times faster on photos.
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
            if short_side is not None:
                planned = resized_pixels(im.width, im.height, short_side)
                if planned > MAX_RESIZED_PIXELS:
                    raise ExtremeAspectError(
                        f"{im.width}x{im.height} pixels would become {planned} once resized "
                        f"(limit {MAX_RESIZED_PIXELS})"
                    )
            if draft and short_side is not None and im.format == "JPEG":
                scale = DRAFT_OVERSAMPLE * short_side / min(im.width, im.height)
                if scale < 1:
                    im.draft("RGB", (math.ceil(im.width * scale), math.ceil(im.height * scale)))
            im.load()
            return to_rgb(im)


class ImageFiles(Dataset):
    """Torch dataset over file paths: returns (position, tensor, reason or '')."""

    def __init__(
        self,
        paths: Sequence[str],
        transform: Callable[[Any], torch.Tensor],
        size: tuple[int, int],
        decode: str = "exact",
    ) -> None:
        self.paths = list(paths)
        self.draft = decode == "draft"
        self.transform = transform
        self.size = size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor, str]:
        try:
            image = load_rgb(self.paths[i], short_side=max(self.size), draft=self.draft)
            return i, self.transform(image), ""
        except Exception as e:
            reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
            return i, torch.zeros(3, *self.size), reason
