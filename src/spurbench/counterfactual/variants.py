"""Counterfactual images from an image and its foreground mask: pure numpy, no model.

Provenance: Xiao, Engstrom, Ilyas, Madry, *Noise or Signal: The Role of Image Backgrounds in
Object Recognition*, ICLR 2021 (MadryLab/backgrounds_challenge, MIT licence). Their variants:
ONLY-FG (object on black), NO-FG (object cut out, black hole), ONLY-BG (the object's bounding
box filled by tiling the background around it: ``ONLY-BG-T``; ``black`` gives ``ONLY-BG-B``),
and MIXED-SAME / MIXED-RAND / MIXED-NEXT (the object pasted on the ONLY-BG of another image of
the same class, a random other class, the next class). The bounding box, not the mask, is
filled so that the object's silhouette does not survive in the background.

spurbench adds the CounterAnimal pair: SWAP-TO-COMMON (a counter photo's object on the ONLY-BG
of a common photo of its class) and SWAP-TO-COUNTER (the reverse).

Images are ``HxWx3`` uint8 arrays; masks ``HxW`` floats in [0, 1] (soft edges blend).
"""

from __future__ import annotations

import numpy as np

ORIGINAL = "original"
ONLY_FG = "only_fg"
NO_FG = "no_fg"
ONLY_BG = "only_bg"
MIXED_SAME = "mixed_same"
MIXED_RAND = "mixed_rand"
MIXED_NEXT = "mixed_next"
SWAP_TO_COMMON = "swap_to_common"
SWAP_TO_COUNTER = "swap_to_counter"
#: Variants made from the image alone.
SINGLE = (ORIGINAL, ONLY_FG, NO_FG, ONLY_BG)
#: Variants that paste the object on another image's ONLY-BG.
MIXED = (MIXED_SAME, MIXED_RAND, MIXED_NEXT, SWAP_TO_COMMON, SWAP_TO_COUNTER)
VARIANTS = (*SINGLE, *MIXED)
#: How ONLY-BG fills the object's box: see :func:`only_bg`.
FILLS = ("tile", "blur", "mean", "black")
DEFAULT_FILL = "tile"


def check_fill(fill: str) -> None:
    if fill not in FILLS:
        from spurbench.errors import SpurbenchError

        raise SpurbenchError(f"Unknown fill {fill!r}; choose among {', '.join(FILLS)}.")


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, 0, 255)).astype(np.uint8)


def only_fg(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The object on black."""
    return _to_uint8(image * alpha[..., None])


def no_fg(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The image with the object cut out (black where it was)."""
    return _to_uint8(image * (1.0 - alpha[..., None]))


def bounding_box(alpha: np.ndarray) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1), half-open, of the pixels where ``alpha > 0``."""
    ys, xs = np.nonzero(alpha > 0)
    if len(ys) == 0:
        raise ValueError("empty mask: no object to remove")
    return int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1


def only_bg(image: np.ndarray, alpha: np.ndarray, fill: str = DEFAULT_FILL) -> np.ndarray:
    """The image with the object's bounding box filled from the background around it.

    * ``tile`` (Xiao et al.'s ONLY-BG-T): the largest strip of the image outside the box (above,
      below, left or right of it) repeated across the box in the strip's own phase;
    * ``blur``: each box pixel the Gaussian-weighted mean of the background pixels outside the
      box (a normalised convolution, sigma = half the box's longer side), so the box takes the
      local colours of the background without its texture;
    * ``mean``: the mean colour of the pixels outside the box;
    * ``black`` (ONLY-BG-B): zeros.

    When the box covers the whole image, every fill but ``black`` gives the image's mean colour.
    """
    check_fill(fill)
    h, w = alpha.shape
    y0, y1, x0, x1 = bounding_box(alpha)
    out = image.copy()
    if fill == "black":
        out[y0:y1, x0:x1] = 0
        return out
    outside = np.ones((h, w), dtype=bool)
    outside[y0:y1, x0:x1] = False
    if not outside.any():
        out[y0:y1, x0:x1] = _to_uint8(image.reshape(-1, 3).mean(axis=0))
        return out
    if fill == "mean":
        out[y0:y1, x0:x1] = _to_uint8(image[outside].mean(axis=0))
    elif fill == "blur":
        out[y0:y1, x0:x1] = _blur_fill(image, outside, max(y1 - y0, x1 - x0) / 2)[y0:y1, x0:x1]
    else:
        out[y0:y1, x0:x1] = _tile_fill(image, (y0, y1, x0, x1))
    return out


def _blur_fill(image: np.ndarray, known: np.ndarray, sigma: float) -> np.ndarray:
    """Normalised convolution: the Gaussian-weighted mean of the ``known`` pixels, everywhere."""
    from scipy.ndimage import gaussian_filter

    weight = known.astype(np.float64)
    norm = gaussian_filter(weight, sigma, mode="reflect")
    channels = [gaussian_filter(image[..., c] * weight, sigma, mode="reflect") for c in range(3)]
    return _to_uint8(np.stack(channels, axis=-1) / np.maximum(norm, 1e-12)[..., None])


def _tile_fill(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The box's pixels tiled from the largest strip outside it, in the strip's phase."""
    h, w = image.shape[:2]
    y0, y1, x0, x1 = box
    strips = {  # (area, rows, cols) of each strip outside the box
        "top": (y0 * w, slice(0, y0), slice(0, w)),
        "bottom": ((h - y1) * w, slice(y1, h), slice(0, w)),
        "left": (x0 * h, slice(0, h), slice(0, x0)),
        "right": ((w - x1) * h, slice(0, h), slice(x1, w)),
    }
    _, rows, cols = max(strips.values(), key=lambda s: s[0])
    strip = image[rows, cols]
    sh, sw = strip.shape[:2]
    # tile in the strip's own phase so that the pattern continues from the strip into the box
    yy = (np.arange(y0, y1) - rows.start) % sh
    xx = (np.arange(x0, x1) - cols.start) % sw
    return strip[np.ix_(yy, xx)]


def paste(image: np.ndarray, alpha: np.ndarray, background: np.ndarray) -> np.ndarray:
    """The object of ``image`` (where ``alpha``) over ``background`` of the same size."""
    if background.shape != image.shape:
        raise ValueError(f"background {background.shape} and image {image.shape} differ in size")
    a = alpha[..., None]
    return _to_uint8(image * a + background * (1.0 - a))
