"""Foreground masks for background counterfactuals, and the guard against unusable ones.

Masks come, in order of preference, from the synthetic world's renderer (exact: the object's
alpha is re-drawn from the image's seed) or from a user folder of PNGs mirroring the image tree
(``<masks>/<path relative to the dataset root>`` with a ``.png`` suffix, white = object).
A mask is an ``HxW`` float array in [0, 1] (soft edges allowed); the object is where it is
>= 0.5. Masks covering under 1 % or over 90 % of the image are flagged and not used, as a near
empty or near full mask leaves nothing to swap (Xiao et al., ICLR 2021, filtered ImageNet-9 the
same way).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from spurbench.data.dataset import ImageDataset
from spurbench.errors import DatasetError

MIN_AREA = 0.01
MAX_AREA = 0.90
SYNTHETIC, USER = "synthetic", "user"


@dataclass(frozen=True)
class Mask:
    """An object mask and where it came from (recorded per image)."""

    alpha: np.ndarray
    source: str

    @property
    def area(self) -> float:
        return float((self.alpha >= 0.5).mean())


def mask_status(mask: Mask | None) -> str:
    """``ok``, ``missing``, ``too_small`` (< 1 % of the image) or ``too_large`` (> 90 %)."""
    if mask is None:
        return "missing"
    if mask.area < MIN_AREA:
        return "too_small"
    if mask.area > MAX_AREA:
        return "too_large"
    return "ok"


MaskLookup = Callable[[pd.Series], Mask | None]


def folder_masks(dataset: ImageDataset, mask_dir: str | Path) -> MaskLookup:
    """Masks from ``mask_dir``, a folder of PNGs mirroring the dataset's image tree."""
    mask_dir = Path(mask_dir)
    if not mask_dir.is_dir():
        raise DatasetError(f"Mask folder {mask_dir} does not exist.")
    root = Path(dataset.root)

    def lookup(row: pd.Series) -> Mask | None:
        try:
            rel = Path(row["path"]).resolve().relative_to(root.resolve())
        except ValueError:
            return None
        path = (mask_dir / rel).with_suffix(".png")
        if not path.is_file():
            return None
        with Image.open(path) as im:
            grey = im.convert("L")
            with Image.open(row["path"]) as src:
                if grey.size != src.size:
                    grey = grey.resize(src.size, Image.Resampling.NEAREST)
        return Mask(np.asarray(grey, dtype=np.float64) / 255.0, USER)

    return lookup


def find_world_root(dataset: ImageDataset) -> Path | None:
    """The synthetic world the dataset lives in (its folder or a parent holds ``world.json``)."""
    for folder in (Path(dataset.root), *Path(dataset.root).parents):
        if (folder / "world.json").is_file():
            return folder
    return None


def synthetic_masks(world_root: str | Path) -> MaskLookup:
    """The exact masks of a generated world's images, re-drawn from each image's seed.

    An image is found by its path in the world, or, for the CounterAnimal-layout copies of the
    test split, by (label, background, file name) among the test images.
    """
    from spurbench.synth.render import ForegroundSpec, render_layers
    from spurbench.synth.world import World, render_seeds

    world = World.load(world_root)
    seeds = render_seeds(world.config)
    rows = world.manifest.set_index("path", drop=False)
    test = world.split("test")
    by_cell = {
        (int(r.label), str(r.background), Path(r.path).name): str(r.path)
        for r in test.itertuples(index=False)
    }
    root = Path(world.root).resolve()

    def lookup(row: pd.Series) -> Mask | None:
        path = Path(row["path"]).resolve()
        try:
            rel = str(path.relative_to(root))
        except ValueError:
            return None
        if rel not in seeds:
            rel = by_cell.get((int(row["label"]), str(row["background"]), path.name), "")
        if rel not in seeds:
            return None
        r = rows.loc[rel]
        spec = ForegroundSpec(str(r["shape"]), str(r["colour"]), str(r["texture"]))
        rng = np.random.default_rng(seeds[rel])
        _, _, alpha = render_layers(spec, str(r["background"]), rng, world.config.image_size)
        return Mask(alpha, SYNTHETIC)

    return lookup


def mask_lookup(dataset: ImageDataset, masks: str | Path | None) -> MaskLookup:
    """User masks when ``masks`` is given, else the synthetic world's; an error if neither."""
    if masks is not None:
        return folder_masks(dataset, masks)
    world = find_world_root(dataset)
    if world is None:
        raise DatasetError(
            f"No foreground masks for {dataset.name!r}: pass --masks DIR (PNGs mirroring the "
            "image tree, white = object), or use a spurbench synthetic world."
        )
    return synthetic_masks(world)
