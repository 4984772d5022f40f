"""Generated stand-ins of the suite's published layouts: tiny images in the real folder structure.

Class folders use the real names, read from timm's installed class files (an independent copy of
the lists spurbench ships) and from ObjectNet's published folder names.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 24


def timm_info(name: str) -> list[str]:
    """Lines of a timm ``data/_info`` file (timm is a dependency, so it is installed)."""
    return resources.files("timm.data._info").joinpath(name).read_text().split()


def image(path: Path, rng: np.random.Generator, border: int = 0) -> None:
    """A random RGB image; with ``border``, a pure red frame of that width (ObjectNet's)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = rng.integers(0, 256, size=(SIZE, SIZE, 3)).astype(np.uint8)
    if border:
        red = np.array([255, 0, 0], np.uint8)
        pixels[:border], pixels[-border:], pixels[:, :border], pixels[:, -border:] = (
            red,
            red,
            red,
            red,
        )
    Image.fromarray(pixels).save(path)


def class_folders(
    root: Path, names: list[str], suffix: str, n: int = 2, seed: int = 0, border: int = 0
) -> Path:
    rng = np.random.default_rng(seed)
    for name in names:
        for i in range(n):
            image(root / name / f"img_{i}{suffix}", rng, border)
    return root


def make_val(base: Path, wnids: list[str], n: int = 2) -> Path:
    """``imagenet/val/<wnid>/*.JPEG`` (torchvision ImageNet layout)."""
    class_folders(base / "imagenet" / "val", wnids, ".JPEG", n, seed=1)
    return base / "imagenet" / "val"


def make_v2(base: Path, indices: list[int], n: int = 2) -> Path:
    """``imagenetv2-matched-frequency-format-val/<index>/*.jpeg``."""
    root = base / "imagenetv2-matched-frequency-format-val"
    return class_folders(root, [str(i) for i in indices], ".jpeg", n, seed=2)


def make_sketch(base: Path, wnids: list[str], n: int = 2) -> Path:
    return class_folders(base / "sketch", wnids, ".JPEG", n, seed=3)


def make_r(base: Path, wnids: list[str], n: int = 2) -> Path:
    root = class_folders(base / "imagenet-r", wnids, ".jpg", n, seed=4)
    (root / "README.txt").write_text("stand-in\n")
    return root


def make_a(base: Path, wnids: list[str], n: int = 2) -> Path:
    root = class_folders(base / "imagenet-a", wnids, ".jpg", n, seed=5)
    (root / "README.txt").write_text("stand-in\n")
    return root


def make_objectnet(base: Path, folders: list[str], n: int = 2) -> Path:
    """``objectnet-1.0/images/<folder>/*.png`` with a 2-pixel red border, plus mappings/."""
    top = base / "objectnet-1.0"
    class_folders(top / "images", folders, ".png", n, seed=6, border=2)
    (top / "mappings").mkdir(parents=True, exist_ok=True)
    return top
