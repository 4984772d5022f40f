"""Procedural pictures for the synthetic spurious world: textured backgrounds, shaped objects.

Provenance: the design follows the CounterAnimal setting (Wang, Lin et al., NeurIPS 2024, "A Sober
Look at the Robustness of CLIPs to Spurious Features"), where an animal (the core feature) is
photographed on a background (the spurious feature) that co-occurs with it most of the time. Here
the animal is a coloured, textured shape and the background a procedural texture named after the
paper's background labels ("snow", "grass", "water", ...). Everything is drawn with numpy from an
explicit :class:`numpy.random.Generator`, so a picture is a pure function of its seed.

Why these choices (they were tuned, see :mod:`spurbench.synth.train`):

* Backgrounds are textures with random phase, orientation and colour jitter rather than flat
  colours: a flat colour is a one-pixel feature that any model picks up instantly, which makes the
  shortcut all-or-nothing instead of a measurable reliance.
* Every picture also carries a *badge*: a small textured square in a random corner whose colour
  and texture are drawn per image, independently of the class and the background. They are the
  world's concepts for concept counting (Crabbé et al.): the object's own shape, colour and
  texture are functions of its class, so "encodes colour=red" would only restate "separates the
  classes"; the badge's do not, so finding them measures what the representation keeps beyond
  the label. The badge is drawn last from the image's generator, so every other pixel is the
  one the world has without it, and it is kept small (a fifth of the side, about 4 % of the
  image, barely touching the object): a badge of 0.3 of the side hid about 14 % of the background
  and the tiny CLIP then told the planted counter background apart from the other rare ones
  for 5 of 10 classes instead of 6-8 (tests/curate/test_world.py).
* Foregrounds are large (about half the image side) and defined by shape *and* colour *and*
  texture, with colours shared by pairs of classes: an earlier feasibility study found that a
  small, randomly coloured foreground is never learned (the model learns only the background),
  while a unique colour per class makes the foreground so easy that no shortcut is learned.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

#: Background names, in the order a world takes them (CounterAnimal's background vocabulary).
BACKGROUND_NAMES: tuple[str, ...] = (
    "snow", "grass", "water", "sand", "forest", "indoor", "rock",
    "sky", "road", "earth", "shrub", "tree", "ground", "human",
)  # fmt: skip

SHAPES: tuple[str, ...] = (
    "disk", "square", "triangle", "star", "cross",
    "diamond", "hexagon", "ring", "crescent", "heart",
)  # fmt: skip

#: Foreground colours (RGB in [0, 1]). Classes share colours in pairs so colour alone is not enough.
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.12, 0.10),
    "orange": (0.95, 0.55, 0.05),
    "yellow": (0.95, 0.88, 0.15),
    "violet": (0.55, 0.20, 0.80),
    "cyan": (0.10, 0.80, 0.85),
    "pink": (0.98, 0.50, 0.70),
    "blue": (0.10, 0.25, 0.90),
    "lime": (0.55, 0.95, 0.20),
    "black": (0.08, 0.08, 0.08),
    "white": (0.96, 0.96, 0.96),
}

TEXTURES: tuple[str, ...] = ("solid", "stripes", "dots", "checker")

#: Badge colours (a subset of :data:`COLOURS`, far apart) and its side as a share of the image.
BADGE_COLOURS: tuple[str, ...] = ("red", "yellow", "cyan", "blue", "black", "white")
BADGE_SIDE = 0.2

#: Supersampling factor: shapes are drawn at this multiple of the image size, then box-filtered.
_SUPERSAMPLE = 2


@dataclass(frozen=True)
class ForegroundSpec:
    """What makes one class's object: the concept labels that probing later tries to recover."""

    shape: str
    colour: str
    texture: str


def foreground_spec(slot: int) -> ForegroundSpec:
    """The object for class slot ``slot`` (0-based position in the world's class list).

    Slots 0-9 take the ten shapes and colours 0-4 (so slot k and k+5 share a colour but differ in
    shape and texture); slots 10-19 reuse the shapes with colours 5-9. Every (shape, colour) pair
    is unique, so the foreground alone determines the class.
    """
    if not 0 <= slot < 2 * len(SHAPES):
        raise ValueError(f"class slot must be in [0, {2 * len(SHAPES)}), got {slot}")
    colours = list(COLOURS)
    return ForegroundSpec(
        shape=SHAPES[slot % len(SHAPES)],
        colour=colours[slot % 5 + 5 * (slot // len(SHAPES))],
        texture=TEXTURES[(slot + slot // len(SHAPES)) % len(TEXTURES)],
    )


# --------------------------------------------------------------------------------------------
# noise primitives


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [0, 1), as (y, x) arrays of shape (size, size)."""
    c = (np.arange(size, dtype=np.float64) + 0.5) / size
    return np.meshgrid(c, c, indexing="ij")


def _value_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth noise in [0, 1]: a ``cells``-sized random lattice upsampled bicubically by PIL."""
    lattice = rng.random((cells + 1, cells + 1)).astype(np.float32)
    up = Image.fromarray(lattice, mode="F").resize((size, size), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(up, dtype=np.float64), 0.0, 1.0)


def _jitter(rng: np.random.Generator, rgb: tuple[float, float, float], amount: float) -> np.ndarray:
    return np.clip(np.asarray(rgb) + rng.normal(0.0, amount, 3), 0.0, 1.0)


def _mix(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per-pixel blend of colours ``a`` and ``b`` by weight ``t`` (HxW) -> HxWx3."""
    return a[None, None, :] * (1.0 - t[..., None]) + b[None, None, :] * t[..., None]


# --------------------------------------------------------------------------------------------
# backgrounds: each a function (rng, size) -> HxWx3 float in [0, 1]


def _bg_snow(rng: np.random.Generator, s: int) -> np.ndarray:
    n = 0.6 * _value_noise(rng, s, 3) + 0.4 * _value_noise(rng, s, 8)
    img = _mix(_jitter(rng, (0.78, 0.82, 0.90), 0.03), _jitter(rng, (0.98, 0.98, 1.0), 0.02), n)
    flakes = rng.random((s, s)) < 0.04
    img[flakes] = 1.0
    return img


def _bg_grass(rng: np.random.Generator, s: int) -> np.ndarray:
    y, x = _grid(s)
    blades = np.sin(2 * np.pi * (x * rng.uniform(7, 11) + 0.6 * _value_noise(rng, s, 4)))
    t = 0.5 + 0.5 * blades * (0.6 + 0.4 * y)
    return _mix(_jitter(rng, (0.12, 0.40, 0.08), 0.04), _jitter(rng, (0.45, 0.75, 0.20), 0.04), t)


def _bg_water(rng: np.random.Generator, s: int) -> np.ndarray:
    y, x = _grid(s)
    phase = rng.uniform(0, 2 * np.pi)
    waves = np.sin(2 * np.pi * y * rng.uniform(4, 7) + 2.0 * np.sin(2 * np.pi * x * 1.5 + phase))
    t = 0.5 + 0.5 * waves
    return _mix(_jitter(rng, (0.05, 0.20, 0.50), 0.04), _jitter(rng, (0.30, 0.60, 0.85), 0.04), t)


def _bg_sand(rng: np.random.Generator, s: int) -> np.ndarray:
    y, x = _grid(s)
    angle = rng.uniform(-0.5, 0.5)
    ripples = np.sin(2 * np.pi * rng.uniform(3, 5) * (y * np.cos(angle) + x * np.sin(angle)))
    t = 0.35 + 0.25 * ripples + 0.4 * (rng.random((s, s)) - 0.5)
    return _mix(
        _jitter(rng, (0.80, 0.68, 0.42), 0.03), _jitter(rng, (0.96, 0.88, 0.62), 0.03), t.clip(0, 1)
    )


def _bg_forest(rng: np.random.Generator, s: int) -> np.ndarray:
    _, x = _grid(s)
    canopy = _value_noise(rng, s, 5)
    img = _mix(
        _jitter(rng, (0.02, 0.15, 0.05), 0.03), _jitter(rng, (0.15, 0.40, 0.12), 0.03), canopy
    )
    trunks = np.sin(2 * np.pi * (x * rng.uniform(3, 5) + rng.uniform(0, 1))) > 0.8
    img[trunks] = _jitter(rng, (0.30, 0.18, 0.08), 0.03)
    return img


def _bg_indoor(rng: np.random.Generator, s: int) -> np.ndarray:
    y, x = _grid(s)
    k = rng.uniform(3, 5)
    tiles = (np.floor(y * k + rng.uniform(0, 1)) + np.floor(x * k + rng.uniform(0, 1))) % 2
    grout = (np.abs(((y * k) % 1) - 0.5) > 0.45) | (np.abs(((x * k) % 1) - 0.5) > 0.45)
    t = 0.3 * tiles + 0.1 * _value_noise(rng, s, 6)
    img = _mix(_jitter(rng, (0.60, 0.45, 0.35), 0.03), _jitter(rng, (0.85, 0.75, 0.62), 0.03), t)
    img[grout] *= 0.6
    return img


def _bg_rock(rng: np.random.Generator, s: int) -> np.ndarray:
    n = np.abs(_value_noise(rng, s, 4) - _value_noise(rng, s, 9))
    t = np.clip(2.5 * n, 0, 1)
    return _mix(_jitter(rng, (0.55, 0.55, 0.55), 0.04), _jitter(rng, (0.25, 0.24, 0.26), 0.03), t)


def _bg_sky(rng: np.random.Generator, s: int) -> np.ndarray:
    y, _ = _grid(s)
    img = _mix(_jitter(rng, (0.35, 0.60, 0.95), 0.03), _jitter(rng, (0.70, 0.85, 1.0), 0.03), y)
    clouds = np.clip(3.0 * (_value_noise(rng, s, 4) - 0.55), 0, 1)
    return img * (1 - clouds[..., None]) + clouds[..., None]


def _bg_road(rng: np.random.Generator, s: int) -> np.ndarray:
    y, x = _grid(s)
    grain = rng.random((s, s))
    img = _mix(
        _jitter(rng, (0.22, 0.22, 0.24), 0.02), _jitter(rng, (0.40, 0.40, 0.42), 0.02), grain
    )
    centre = rng.uniform(0.3, 0.7)
    dashes = (np.abs(x - centre) < 0.04) & (((y * 4 + rng.uniform(0, 1)) % 1) < 0.5)
    img[dashes] = _jitter(rng, (0.95, 0.85, 0.10), 0.03)
    return img


def _bg_earth(rng: np.random.Generator, s: int) -> np.ndarray:
    n = 0.5 * _value_noise(rng, s, 6) + 0.5 * rng.random((s, s))
    return _mix(_jitter(rng, (0.30, 0.18, 0.08), 0.03), _jitter(rng, (0.55, 0.38, 0.20), 0.03), n)


def _bg_shrub(rng: np.random.Generator, s: int) -> np.ndarray:
    y, x = _grid(s)
    k = rng.uniform(5, 7)
    blobs = np.sin(2 * np.pi * k * x + rng.uniform(0, 6)) * np.sin(2 * np.pi * k * y)
    t = 0.5 + 0.5 * blobs
    return _mix(_jitter(rng, (0.30, 0.35, 0.10), 0.03), _jitter(rng, (0.60, 0.65, 0.25), 0.03), t)


def _bg_tree(rng: np.random.Generator, s: int) -> np.ndarray:
    y, x = _grid(s)
    wobble = 0.05 * np.sin(2 * np.pi * y * rng.uniform(1, 3) + rng.uniform(0, 6))
    bark = np.sin(2 * np.pi * (x + wobble) * rng.uniform(8, 12))
    t = 0.5 + 0.5 * np.sign(bark) * np.abs(bark) ** 0.5
    return _mix(_jitter(rng, (0.25, 0.15, 0.07), 0.03), _jitter(rng, (0.50, 0.35, 0.20), 0.03), t)


def _bg_ground(rng: np.random.Generator, s: int) -> np.ndarray:
    y, x = _grid(s)
    k = rng.uniform(2.5, 4)
    cracks = (np.abs(np.sin(np.pi * k * (x + 0.2 * _value_noise(rng, s, 3)))) < 0.12) | (
        np.abs(np.sin(np.pi * k * (y + 0.2 * _value_noise(rng, s, 3)))) < 0.12
    )
    img = _mix(
        _jitter(rng, (0.70, 0.55, 0.25), 0.03),
        _jitter(rng, (0.85, 0.70, 0.40), 0.03),
        _value_noise(rng, s, 5),
    )
    img[cracks] *= 0.55
    return img


def _bg_human(rng: np.random.Generator, s: int) -> np.ndarray:
    y, x = _grid(s)
    angle = rng.uniform(0, np.pi)
    bands = np.sin(2 * np.pi * 2.5 * (x * np.cos(angle) + y * np.sin(angle)) + rng.uniform(0, 6))
    t = 0.5 + 0.5 * bands
    skin = _jitter(rng, (0.90, 0.70, 0.58), 0.04)
    cloth = _jitter(rng, (0.35, 0.20, 0.45), 0.06)
    return _mix(skin, cloth, (t > 0.5).astype(np.float64) * 0.8 + 0.2 * _value_noise(rng, s, 4))


_BACKGROUNDS: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "snow": _bg_snow,
    "grass": _bg_grass,
    "water": _bg_water,
    "sand": _bg_sand,
    "forest": _bg_forest,
    "indoor": _bg_indoor,
    "rock": _bg_rock,
    "sky": _bg_sky,
    "road": _bg_road,
    "earth": _bg_earth,
    "shrub": _bg_shrub,
    "tree": _bg_tree,
    "ground": _bg_ground,
    "human": _bg_human,
}
assert tuple(_BACKGROUNDS) == BACKGROUND_NAMES


def render_background(name: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """A ``size``x``size``x3 float image in [0, 1] of background texture ``name``."""
    try:
        fn = _BACKGROUNDS[name]
    except KeyError:
        raise ValueError(f"unknown background {name!r}; known: {BACKGROUND_NAMES}") from None
    return np.clip(fn(rng, size), 0.0, 1.0)


# --------------------------------------------------------------------------------------------
# foregrounds


def _polygon(r: np.ndarray, theta: np.ndarray, n: int, radius: float) -> np.ndarray:
    """Inside test for a regular ``n``-gon of circumradius ``radius`` in polar coordinates."""
    sector = 2 * np.pi / n
    return r * np.cos((theta % sector) - sector / 2) <= radius * np.cos(np.pi / n)


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean mask of ``shape`` in local coordinates (u right, v up; the shape spans ~[-1, 1])."""
    r = np.hypot(u, v)
    theta = np.arctan2(v, u)
    if shape == "disk":
        return r <= 0.95
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.72
    if shape == "triangle":
        return _polygon(r, theta - np.pi / 2, 3, 1.0)
    if shape == "star":
        sector = 2 * np.pi / 5
        tri = np.abs(((theta - np.pi / 2) % sector) / sector - 0.5) * 2  # 1 at tips, 0 between
        return r <= 0.42 + 0.58 * tri**1.5
    if shape == "cross":
        return ((np.abs(u) <= 0.3) & (np.abs(v) <= 0.95)) | (
            (np.abs(v) <= 0.3) & (np.abs(u) <= 0.95)
        )
    if shape == "diamond":
        return np.abs(u) / 0.65 + np.abs(v) <= 1.0
    if shape == "hexagon":
        return _polygon(r, theta, 6, 0.95)
    if shape == "ring":
        return (r <= 0.95) & (r >= 0.55)
    if shape == "crescent":
        return (r <= 0.95) & (np.hypot(u - 0.45, v) >= 0.75)
    if shape == "heart":
        x, y = u * 1.15, v * 1.15 + 0.15
        return (x**2 + y**2 - 1) ** 3 - x**2 * y**3 <= 0
    raise ValueError(f"unknown shape {shape!r}; known: {SHAPES}")


def _texture_weight(texture: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Where the object's colour is shaded darker (1) or kept (0), in local coordinates."""
    if texture == "solid":
        return np.zeros_like(u)
    if texture == "stripes":
        return (np.sin(2 * np.pi * 2.2 * u) > 0).astype(np.float64)
    if texture == "dots":
        return (np.hypot((u * 2.5) % 1 - 0.5, (v * 2.5) % 1 - 0.5) < 0.28).astype(np.float64)
    if texture == "checker":
        return ((np.floor(u * 2.5) + np.floor(v * 2.5)) % 2).astype(np.float64)
    raise ValueError(f"unknown texture {texture!r}; known: {TEXTURES}")


def _shade(rgb: np.ndarray) -> np.ndarray:
    """The second colour of a textured object: darker, or lighter for very dark colours."""
    return rgb * 0.45 if rgb.mean() > 0.2 else rgb + 0.45


#: Half-extent of the object as a fraction of the image side (uniform in this range).
OBJECT_SCALE = (0.30, 0.45)
#: A size no training image has (about a third of the usual), for planted object-caused failures.
SMALL_OBJECT_SCALE = (0.13, 0.16)


def render_foreground(
    spec: ForegroundSpec,
    rng: np.random.Generator,
    size: int,
    scale_range: tuple[float, float] = OBJECT_SCALE,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``spec`` at a random pose; returns (rgb HxWx3, alpha HxW), both floats in [0, 1].

    The object's half-extent is 30-45% of the image side (large, so it is learnable), rotated
    uniformly and shifted so that it stays mostly inside the frame.
    """
    ss = size * _SUPERSAMPLE
    y, x = _grid(ss)
    scale = rng.uniform(*scale_range)
    cy, cx = rng.uniform(0.5 - (0.5 - scale * 0.8), 0.5 + (0.5 - scale * 0.8), 2)
    angle = rng.uniform(0, 2 * np.pi)
    dx, dy = (x - cx) / scale, (cy - y) / scale
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = -dx * np.sin(angle) + dy * np.cos(angle)
    mask = _shape_mask(spec.shape, u, v).astype(np.float64)
    base = _jitter(rng, COLOURS[spec.colour], 0.04)
    w = _texture_weight(spec.texture, u, v)
    rgb = _mix(base, np.clip(_shade(base), 0, 1), w)
    # box-filter the supersampled layers down to the image size (antialiased edges)
    f = _SUPERSAMPLE
    rgb_small = rgb.reshape(size, f, size, f, 3).mean(axis=(1, 3))
    alpha = mask.reshape(size, f, size, f).mean(axis=(1, 3))
    # premultiplied: colour of covered subpixels only
    cov = (rgb * mask[..., None]).reshape(size, f, size, f, 3).mean(axis=(1, 3))
    rgb_small = np.where(alpha[..., None] > 0, cov / np.maximum(alpha[..., None], 1e-8), rgb_small)
    return rgb_small, alpha


def compose(background: np.ndarray, fg_rgb: np.ndarray, alpha: np.ndarray) -> Image.Image:
    """Alpha-blend the object over the background and quantise to an 8-bit RGB PIL image."""
    return _quantise(_over(background, fg_rgb, alpha))


def _over(below: np.ndarray, rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    return below * (1 - alpha[..., None]) + rgb * alpha[..., None]


def _quantise(img: np.ndarray) -> Image.Image:
    return Image.fromarray(np.round(np.clip(img, 0, 1) * 255).astype(np.uint8), mode="RGB")


def render_badge(
    colour: str, texture: str, rng: np.random.Generator, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """A ``colour``/``texture`` square of side :data:`BADGE_SIDE` in a random corner.

    Returns (rgb HxWx3, alpha HxW) like :func:`render_foreground`. The texture is drawn at a
    coarser scale than on the object so that it stays visible on a few pixels.
    """
    side = max(2, round(BADGE_SIDE * size))
    corner = int(rng.integers(4))
    top = 0 if corner < 2 else size - side
    left = 0 if corner % 2 == 0 else size - side
    c = (np.arange(side * _SUPERSAMPLE, dtype=np.float64) + 0.5) / (side * _SUPERSAMPLE)
    v, u = np.meshgrid(1.2 * (0.5 - c), 1.2 * (c - 0.5), indexing="ij")
    base = _jitter(rng, COLOURS[colour], 0.03)
    w = _texture_weight(texture, u, v)
    patch = _mix(base, np.clip(_shade(base), 0, 1), w)
    patch = patch.reshape(side, _SUPERSAMPLE, side, _SUPERSAMPLE, 3).mean(axis=(1, 3))
    rgb = np.zeros((size, size, 3))
    alpha = np.zeros((size, size))
    rgb[top : top + side, left : left + side] = patch
    alpha[top : top + side, left : left + side] = 1.0
    return rgb, alpha


def render_image(
    spec: ForegroundSpec,
    background: str,
    rng: np.random.Generator,
    size: int,
    badge: tuple[str, str] | None = None,
) -> Image.Image:
    """One picture: ``spec``'s object on a fresh ``background`` texture, drawn from ``rng``,
    with a ``(colour, texture)`` badge on top when given."""
    bg = render_background(background, rng, size)
    fg, alpha = render_foreground(spec, rng, size)
    img = _over(bg, fg, alpha)
    if badge is not None:
        img = _over(img, *render_badge(*badge, rng, size))
    return _quantise(img)


def render_layers(
    spec: ForegroundSpec,
    background: str,
    rng: np.random.Generator,
    size: int,
    scale_range: tuple[float, float] = OBJECT_SCALE,
    badge: tuple[str, str] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(background, object rgb, object alpha) of the picture :func:`render_image` draws from
    ``rng``: the renderer's exact layers, so background counterfactuals need no estimated mask.

    The badge is a concept of the scene, not of the object: it is folded into the background,
    and the object's alpha is cut where the badge covers it. The badge's alpha is 0 or 1, so
    ``compose(*render_layers(...))`` is pixel for pixel the picture :func:`render_image` draws.
    """
    bg = render_background(background, rng, size)
    fg, alpha = render_foreground(spec, rng, size, scale_range)
    if badge is not None:
        badge_rgb, badge_alpha = render_badge(*badge, rng, size)
        bg = _over(bg, badge_rgb, badge_alpha)
        alpha = alpha * (1 - badge_alpha)
    return bg, fg, alpha
