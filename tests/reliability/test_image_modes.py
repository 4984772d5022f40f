"""Cases 16.8 and 16.13: every pixel mode becomes the right 8-bit RGB; thin strips are refused.

A 16-bit greyscale PNG (mode ``I;16``) used to come out pure white, because Pillow clips 16-bit
values to 255: the image was scored as a white square. Each accepted mode is checked here
against a conversion written independently with numpy (the textbook formula for each mode),
not against Pillow's own ``convert``.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from spurbench.data.images import (
    MAX_RESIZED_PIXELS,
    ExtremeAspectError,
    ImageFiles,
    UnsupportedModeError,
    load_rgb,
    resized_pixels,
)
from tests.reliability.conftest import png_header_only

RNG = np.random.default_rng(0)
GREY = RNG.integers(0, 256, (6, 5), dtype=np.uint8)
RGB = RNG.integers(0, 256, (6, 5, 3), dtype=np.uint8)
ALPHA = RNG.integers(0, 256, (6, 5), dtype=np.uint8)
GREY16 = RNG.integers(0, 65536, (6, 5)).astype(np.uint16)
PALETTE = RNG.integers(0, 256, (256, 3), dtype=np.uint8)
INDEX = RNG.integers(0, 256, (6, 5), dtype=np.uint8)


def _grey3(g: np.ndarray) -> np.ndarray:
    return np.repeat(g[..., None], 3, axis=2)


def _p(alpha: bool) -> Image.Image:
    im = Image.fromarray(INDEX, mode="P")
    im.putpalette(PALETTE.ravel().tolist())
    if alpha:
        im = im.convert("PA")
        im.putalpha(Image.fromarray(ALPHA, mode="L"))
    return im


def _ycbcr() -> tuple[Image.Image, np.ndarray]:
    y, cb, cr = (RGB[..., i].astype(float) for i in range(3))
    r = y + 1.402 * (cr - 128)
    g = y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128)
    b = y + 1.772 * (cb - 128)
    return Image.fromarray(RGB, mode="YCbCr"), np.clip(np.stack([r, g, b], 2).round(), 0, 255)


def _cmyk() -> tuple[Image.Image, np.ndarray]:
    cmy = RGB
    cmyk = np.concatenate([cmy, np.zeros((6, 5, 1), np.uint8)], axis=2)  # K = 0
    return Image.fromarray(cmyk, mode="CMYK"), 255 - cmy.astype(float)


def cases() -> dict[str, tuple[Image.Image, np.ndarray, str, float]]:
    """mode -> (image, expected RGB, file format able to hold the mode, tolerance)."""
    bits = GREY > 127
    return {
        "1": (Image.fromarray(bits), _grey3(bits * 255.0), "PNG", 0),
        "L": (Image.fromarray(GREY, mode="L"), _grey3(GREY), "PNG", 0),
        "LA": (Image.fromarray(np.stack([GREY, ALPHA], 2), mode="LA"), _grey3(GREY), "PNG", 0),
        "P": (_p(False), PALETTE[INDEX], "PNG", 0),
        "PA": (_p(True), PALETTE[INDEX], "TIFF", 0),
        "RGB": (Image.fromarray(RGB, mode="RGB"), RGB, "PNG", 0),
        "RGBA": (Image.fromarray(np.dstack([RGB, ALPHA]), mode="RGBA"), RGB, "PNG", 0),
        "CMYK": (*_cmyk(), "TIFF", 0),
        "YCbCr": (*_ycbcr(), "TIFF", 2),
        "I;16": (Image.fromarray(GREY16), _grey3(np.round(GREY16 / 257.0)), "PNG", 0),
        "I;16B": (
            Image.frombytes("I;16B", (5, 6), GREY16.astype(">u2").tobytes()),
            _grey3(np.round(GREY16 / 257.0)),
            "TIFF",
            0,
        ),
    }


@pytest.mark.parametrize("mode", list(cases()))
def test_each_mode_converts_like_the_textbook(mode, tmp_path):
    image, expected, fmt, tol = cases()[mode]
    assert image.mode == mode
    path = tmp_path / f"x.{fmt.lower()}"
    image.save(path, format=fmt)
    with Image.open(path) as reread:
        assert reread.mode.startswith(mode[:4]), reread.mode  # the file really holds that mode
    got = np.asarray(load_rgb(str(path))).astype(float)
    assert got.shape == (6, 5, 3)
    assert np.abs(got - expected).max() <= tol


def test_sixteen_bit_grey_is_not_white(tmp_path):
    """The reported case: a dark 16-bit PNG used to decode as pure white."""
    path = tmp_path / "dark16.png"
    Image.fromarray(np.full((8, 8), 1000, np.uint16)).save(path)
    assert np.asarray(load_rgb(str(path))).max() == 4  # 1000 / 257


UNSUPPORTED = {
    "I": Image.fromarray(GREY16.astype(np.int32)),  # 32-bit: no white level
    "F": Image.fromarray(GREY16.astype(np.float32)),
    "LAB": Image.fromarray(RGB, mode="LAB"),  # Pillow reads LAB TIFFs with wrong colours
}


@pytest.mark.parametrize("mode", list(UNSUPPORTED))
def test_modes_without_a_faithful_conversion_are_skipped_with_a_reason(mode, tmp_path):
    path = tmp_path / "x.tiff"
    UNSUPPORTED[mode].save(path)
    with pytest.raises(UnsupportedModeError, match=f"mode {mode}"):
        load_rgb(str(path))
    files = ImageFiles([str(path)], lambda im: None, (224, 224))
    _, _, reason = files[0]
    assert reason.startswith("UnsupportedModeError")


def test_thin_strip_is_refused_from_its_header(tmp_path, monkeypatch):
    """A 20000×1 PNG of ~100 bytes would be resized to 4.5 M × 224 pixels: refused, undecoded."""
    strip = tmp_path / "strip.png"
    strip.write_bytes(png_header_only(20_000, 1))
    assert strip.stat().st_size < 200
    assert resized_pixels(20_000, 1, 224) == 224 * 20_000 * 224 > MAX_RESIZED_PIXELS
    decoded: list[str] = []
    monkeypatch.setattr(Image.Image, "load", lambda self: decoded.append("x"))
    files = ImageFiles([str(strip)], lambda im: pytest.fail("transform ran"), (224, 224))
    _, placeholder, reason = files[0]
    assert reason.startswith("ExtremeAspectError") and "20000x1" in reason
    assert decoded == [] and tuple(placeholder.shape) == (3, 224, 224)
    with pytest.raises(ExtremeAspectError):
        load_rgb(str(strip), short_side=224)


def test_panorama_is_still_accepted(tmp_path):
    path = tmp_path / "pano.png"
    Image.fromarray(np.zeros((10, 200, 3), np.uint8)).save(path)  # 20:1
    assert load_rgb(str(path), short_side=224).size == (200, 10)
