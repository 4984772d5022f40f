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
FILLS = ("tile", "black")


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


def only_bg(image: np.ndarray, alpha: np.ndarray, fill: str = "tile") -> np.ndarray:
    """The image with the object's bounding box filled (``tile`` or ``black``).

    ``tile`` repeats the largest strip of the image outside the box (above, below, left or
    right of it) across the box, in the strip's own phase, as Xiao et al.'s ONLY-BG-T; when the
    box covers the whole image the box gets the image's mean colour.
    """
    if fill not in FILLS:
        raise ValueError(f"unknown fill {fill!r}; choose among {FILLS}")
    h, w = alpha.shape
    y0, y1, x0, x1 = bounding_box(alpha)
    out = image.copy()
    if fill == "black":
        out[y0:y1, x0:x1] = 0
        return out
    strips = {  # (area, rows, cols) of each strip outside the box
        "top": (y0 * w, slice(0, y0), slice(0, w)),
        "bottom": ((h - y1) * w, slice(y1, h), slice(0, w)),
        "left": (x0 * h, slice(0, h), slice(0, x0)),
        "right": ((w - x1) * h, slice(0, h), slice(x1, w)),
    }
    area, rows, cols = max(strips.values(), key=lambda s: s[0])
    if area == 0:
        out[y0:y1, x0:x1] = _to_uint8(image.reshape(-1, 3).mean(axis=0))
        return out
    strip = image[rows, cols]
    sh, sw = strip.shape[:2]
    # tile in the strip's own phase so that the pattern continues from the strip into the box
    yy = (np.arange(y0, y1) - rows.start) % sh
    xx = (np.arange(x0, x1) - cols.start) % sw
    out[y0:y1, x0:x1] = strip[np.ix_(yy, xx)]
    return out


def paste(image: np.ndarray, alpha: np.ndarray, background: np.ndarray) -> np.ndarray:
    """The object of ``image`` (where ``alpha``) over ``background`` of the same size."""
    if background.shape != image.shape:
        raise ValueError(f"background {background.shape} and image {image.shape} differ in size")
    a = alpha[..., None]
    return _to_uint8(image * a + background * (1.0 - a))
