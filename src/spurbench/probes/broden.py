"""Concept images in the Broden layout, for concept counting on real concepts.

Broden (Bau, Zhou, Khosla, Oliva & Torralba, *Network Dissection*, CVPR 2017) is the concept
dataset NetDissect and CLIP-Dissect (Oikarinen & Weng, ICLR 2023) read; Crabbé et al. count the
concepts a representation encodes on such labelled images rather than on the probe dataset's own
columns, whose values are often functions of the class. The layout, as NetDissect writes it:

* ``index.csv``: one row per image, columns ``image`` (path under ``images/``), ``split``,
  ``ih, iw, sh, sw`` (image and segmentation sizes), then one column per concept category
  (``color, object, part, material, scene, texture``). Pixel-level categories hold
  ``;``-separated mask files (PNG under ``images/``; a pixel's label number is R + 256·G, 0 =
  none); image-level categories (``scene``, ``texture``) hold ``;``-separated label numbers.
* ``label.csv``: ``number, name, ...`` for every label number.

An image *shows* a concept when its number appears in one of its masks or image-level lists:
the image-level presence CLIP-Dissect uses. NetDissect's pixel IoU needs spatial activations,
which the pre-head representation probed here does not have.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from spurbench.data.classes import ClassList
from spurbench.data.dataset import ImageDataset
from spurbench.errors import DatasetError

__all__ = ["BRODEN_CATEGORIES", "ConceptImages", "is_broden", "read_broden"]

#: Concept categories of Broden's index, in its column order.
BRODEN_CATEGORIES: tuple[str, ...] = ("color", "object", "part", "material", "scene", "texture")
_INDEX, _LABELS, _IMAGES = "index.csv", "label.csv", "images"
_CLASS = "concept image"


@dataclass
class ConceptImages:
    """Images with a multi-label concept table (boolean columns named ``category=name``)."""

    root: Path
    dataset: ImageDataset
    concepts: pd.DataFrame

    def describe(self) -> dict[str, object]:
        return {
            "source": "broden",
            "path": str(self.root),
            "n_images": len(self.dataset),
            "n_concepts": self.concepts.shape[1],
        }


def is_broden(path: str | Path) -> bool:
    """A folder with an ``index.csv``: the Broden layout."""
    return (Path(path) / _INDEX).is_file()


def _entries(cell: object) -> list[str]:
    if cell is None or (isinstance(cell, float) and np.isnan(cell)):
        return []
    return [e.strip() for e in str(cell).split(";") if e.strip()]


def _mask_labels(path: Path) -> set[int]:
    """Label numbers present in one Broden mask (R + 256·G per pixel; 0 is unlabelled)."""
    try:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"), dtype=np.int64)
    except OSError as err:
        raise DatasetError(f"Cannot read the Broden mask {path}: {err}") from None
    numbers = np.unique(rgb[..., 0] + 256 * rgb[..., 1])
    return {int(v) for v in numbers if v}


def read_broden(
    root: str | Path, *, split: str | None = None, categories: Sequence[str] | None = None
) -> ConceptImages:
    """Read a Broden-layout folder: its images and which concepts each one shows.

    Args:
        root: the folder holding ``index.csv``, ``label.csv`` and ``images/``.
        split: only rows of this ``split`` (e.g. ``val``); None keeps all.
        categories: concept categories to read (default: every one of
            :data:`BRODEN_CATEGORIES` that the index has).

    Concepts no image shows are left out. Raises :class:`DatasetError` for a missing or
    malformed index, an unknown label number, or a category the index lacks.
    """
    root = Path(root).expanduser()
    if not is_broden(root):
        raise DatasetError(
            f"{root} is not a Broden-layout concept folder: it has no {_INDEX} "
            "(expected index.csv, label.csv and images/, as NetDissect writes them)."
        )
    index = pd.read_csv(root / _INDEX, dtype=str, keep_default_na=False)
    if "image" not in index.columns:
        raise DatasetError(f"{root / _INDEX} has no 'image' column; columns: {list(index.columns)}")
    if not (root / _LABELS).is_file():
        raise DatasetError(f"{root} has no {_LABELS} naming the concept label numbers.")
    labels = pd.read_csv(root / _LABELS)
    if not {"number", "name"} <= set(labels.columns):
        raise DatasetError(f"{root / _LABELS} needs columns 'number' and 'name'.")
    names = dict(zip(labels["number"].astype(int), labels["name"].astype(str), strict=True))
    present = [c for c in BRODEN_CATEGORIES if c in index.columns]
    wanted = list(categories) if categories is not None else present
    if missing := [c for c in wanted if c not in index.columns]:
        raise DatasetError(
            f"{root / _INDEX} has no concept categories {missing}; it has {present}."
        )
    if split is not None:
        if "split" not in index.columns or not (index["split"] == split).any():
            raise DatasetError(f"{root / _INDEX} has no images of split {split!r}.")
        index = index[index["split"] == split].reset_index(drop=True)
    if index.empty:
        raise DatasetError(f"{root / _INDEX} lists no images.")

    shown: dict[str, np.ndarray] = {}
    images = root / _IMAGES
    for i, row in enumerate(index.itertuples(index=False)):
        for category in wanted:
            numbers: set[int] = set()
            for entry in _entries(getattr(row, category)):
                numbers |= {int(entry)} if entry.isdigit() else _mask_labels(images / entry)
            for number in numbers:
                if number not in names:
                    raise DatasetError(
                        f"{root / _INDEX}: image {row.image!r} shows label number {number}, "
                        f"which {_LABELS} does not name."
                    )
                key = f"{category}={names[number]}"
                shown.setdefault(key, np.zeros(len(index), dtype=bool))[i] = True
    table = pd.DataFrame(
        {
            "image_id": index["image"],
            "path": [str(images / p) for p in index["image"]],
            "label": 0,
            "class_name": _CLASS,
            "group": "",
        }
    )
    dataset = ImageDataset(f"broden:{root.name}", root, table, ClassList((_CLASS,)))
    concepts = pd.DataFrame({k: shown[k] for k in sorted(shown)}, index=table.index)
    return ConceptImages(root, dataset, concepts)
