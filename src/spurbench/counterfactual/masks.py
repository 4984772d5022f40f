"""Foreground masks for background counterfactuals, and the guard against unusable ones.

Masks come, in order of preference, from the synthetic world's renderer (exact: the object's
alpha is re-drawn from the image's seed), from a user folder of PNGs mirroring the image tree
(``<masks>/<path relative to the dataset root>`` with a ``.png`` suffix, white = object), from
GrabCut on a user box or a centre prior, or from a segmentation model
(:mod:`spurbench.counterfactual.estimate`). Each mask records its source.
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
    from spurbench.synth.world import (
        World,
        hidden_object_paths,
        image_layers,
        render_seeds,
        small_object_paths,
    )

    world = World.load(world_root)
    seeds = render_seeds(world.config)
    small, hidden = small_object_paths(world.config), hidden_object_paths(world.config)
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
        layers = image_layers(world.config, rows.loc[rel], seeds[rel], small=small, hidden=hidden)
        return Mask(layers[2], SYNTHETIC)

    return lookup


#: ``--mask-source`` values; ``segmentation:NAME[:WEIGHTS]`` names a torchvision model.
MASK_SOURCES = ("auto", "world", "folder", "grabcut", "segmentation:NAME")


def estimated_masks(
    estimate: Callable[[pd.Series, np.ndarray], tuple[np.ndarray, str]], cache_dir: Path, key: str
) -> MaskLookup:
    """A lookup that estimates each image's mask once and keeps it as a PNG in ``cache_dir``.

    Estimating (GrabCut, a segmentation net) costs more than building every variant, and the
    builder asks for a mask more than once (as source and as donor), so masks are cached on
    disk, keyed by the image file's bytes and the estimator, rather than held in memory.
    """
    import hashlib

    from spurbench.atomic import write_atomic

    def lookup(row: pd.Series) -> Mask | None:
        data = Path(row["path"]).read_bytes()
        digest = hashlib.sha256(data + key.encode()).hexdigest()[:20]
        png, label = cache_dir / f"{digest}.png", cache_dir / f"{digest}.source"
        if png.is_file() and label.is_file():
            with Image.open(png) as im:
                return Mask(np.asarray(im, dtype=np.float64) / 255.0, label.read_text())
        with Image.open(row["path"]) as im:
            pixels = np.asarray(im.convert("RGB"))
        alpha, source = estimate(row, pixels)
        cache_dir.mkdir(parents=True, exist_ok=True)
        grey = Image.fromarray(np.round(alpha * 255).astype(np.uint8))
        write_atomic(png, lambda f: grey.save(f, format="PNG"))
        write_atomic(label, lambda f: f.write(source.encode()))
        return Mask(alpha, source)

    return lookup


def first_of(lookups: list[MaskLookup]) -> MaskLookup:
    """The first mask any of ``lookups`` finds for an image (a per-image fallback chain)."""

    def lookup(row: pd.Series) -> Mask | None:
        for one in lookups:
            if (mask := one(row)) is not None:
                return mask
        return None

    return lookup


def mask_lookup(
    dataset: ImageDataset,
    masks: str | Path | None,
    *,
    source: str = "auto",
    boxes: bool = False,
    cache_dir: str | Path | None = None,
) -> MaskLookup:
    """Where each image's mask comes from (``source`` is one of :data:`MASK_SOURCES`).

    ``auto`` takes, per image, the first of: the user's mask folder (when ``masks`` is given),
    the synthetic world's exact masks (when the data is a spurbench world), GrabCut from the
    manifest's boxes (when ``boxes``); with none of these it is an error, as a centre-prior
    GrabCut is a rough guess the user should ask for (``grabcut``). Everything that can be
    checked without reading every image is checked here, before any model loads.
    """
    from spurbench.counterfactual import estimate as E

    if boxes:
        E.check_boxes(dataset.table)
    if masks is not None and source not in ("auto", "folder"):
        raise DatasetError(f"--masks is a mask folder; it does not go with --mask-source {source}.")
    from spurbench.features.cache import default_cache_dir

    cache = Path(cache_dir or default_cache_dir()) / "counterfactual" / "masks"
    world = find_world_root(dataset)
    if source == "world":
        if world is None:
            raise DatasetError(f"{dataset.name!r} is not a spurbench synthetic world.")
        return synthetic_masks(world)
    if source == "folder":
        if masks is None:
            raise DatasetError("--mask-source folder needs --masks DIR.")
        return folder_masks(dataset, masks)
    if source == "grabcut":
        return estimated_masks(E.grabcut_masks(boxes), cache / "grabcut", f"grabcut:{boxes}")
    if source.startswith("segmentation:"):
        spec = source.removeprefix("segmentation:")
        return estimated_masks(E.segmentation_masks(spec), cache / "segmentation", spec)
    if source != "auto":
        raise DatasetError(f"Unknown --mask-source {source!r}; choose among {MASK_SOURCES}.")
    chain: list[MaskLookup] = []
    if masks is not None:
        chain.append(folder_masks(dataset, masks))
    if world is not None:
        chain.append(synthetic_masks(world))
    if boxes:
        chain.append(estimated_masks(E.grabcut_masks(True), cache / "grabcut", "grabcut:True"))
    if not chain:
        raise DatasetError(
            f"No foreground masks for {dataset.name!r}: pass --masks DIR (PNGs mirroring the "
            "image tree, white = object), --boxes (manifest columns x0,y0,x1,y1), "
            "--mask-source grabcut (centre prior) or segmentation:NAME, or use a spurbench "
            "synthetic world."
        )
    return chain[0] if len(chain) == 1 else first_of(chain)
