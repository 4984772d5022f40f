"""Which background each counterfactual takes, and the variant images as a dataset.

Donors are drawn per image from ``default_rng([seed, hash(image id), variant])``, so an image's
variants do not depend on the order of the dataset's rows, and the same seed gives the same
images. Variant images are written once into the cache, named by the hash of what determines
their pixels (the source and donor files' contents, the variant, the fill), then evaluated as an
ordinary dataset: the feature cache keys them like any other images, and a rerun reuses both.
One image (and its donor) is in memory at a time.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from spurbench.counterfactual import variants as V
from spurbench.counterfactual.masks import Mask, MaskLookup, mask_status
from spurbench.data.dataset import COMMON, COUNTER, ImageDataset

#: Bump when a builder changes its pixels, so older cached variant images are not reused.
BUILDER_VERSION = 1


@dataclass
class VariantSet:
    """The variant images of a dataset as an evaluable dataset, plus per-image mask records."""

    dataset: ImageDataset
    #: one row per source image: image_id, label, group, mask_source, mask_area, mask_status
    masks: pd.DataFrame


def _digest(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def _file_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def _mask_digest(mask: Mask) -> str:
    return hashlib.sha256(np.ascontiguousarray(mask.alpha, dtype=np.float64).tobytes()).hexdigest()[
        :16
    ]


def _rng(seed: int, image_id: str, variant: str) -> np.random.Generator:
    key = int(hashlib.sha256(image_id.encode()).hexdigest()[:12], 16)
    return np.random.default_rng([seed, key, V.VARIANTS.index(variant)])


def choose_donors(table: pd.DataFrame, seed: int) -> pd.DataFrame:
    """(image_id, variant, donor_id) of every mixed variant that has a donor.

    ``table`` holds the images with usable masks (image_id, label, group). A class's
    backgrounds are those of its *common* photos when it has any (on CounterAnimal data the
    counter backgrounds are by construction the rare ones, so drawing MIXED-SAME from them
    would mix SWAP-TO-COUNTER into it), else of all its photos. MIXED-SAME takes another image
    of the same class; MIXED-RAND a random other class, then a random image of it; MIXED-NEXT a
    random image of the next class (labels in sorted order, cyclic); SWAP-TO-COMMON a common
    image of the same class (counter images only); SWAP-TO-COUNTER the reverse.
    """
    table = table.sort_values("image_id", kind="stable")  # pools in a row-order-free order
    ids = table["image_id"].astype(str).to_numpy()
    labels = table["label"].to_numpy()
    groups = table["group"].astype(str).to_numpy()
    classes = np.unique(labels)
    has_common = {int(c) for c in labels[groups == COMMON]}
    by_class = {
        int(c): ids[(labels == c) & ((groups == COMMON) | (int(c) not in has_common))]
        for c in classes
    }
    rows = []
    for image_id, label, group in zip(ids, labels.tolist(), groups, strict=True):
        same = by_class[label][by_class[label] != image_id]
        others = classes[classes != label]
        nxt = int(classes[(np.searchsorted(classes, label) + 1) % len(classes)])
        pools: dict[str, list[np.ndarray]] = {
            V.MIXED_SAME: [same],
            V.MIXED_RAND: [by_class[int(c)] for c in others],
            V.MIXED_NEXT: [by_class[nxt]] if nxt != label else [],
        }
        if group == COUNTER:
            pools[V.SWAP_TO_COMMON] = [ids[(labels == label) & (groups == COMMON)]]
        if group == COMMON:
            pools[V.SWAP_TO_COUNTER] = [ids[(labels == label) & (groups == COUNTER)]]
        for variant, pool in pools.items():
            pool = [p for p in pool if len(p)]
            if not pool:
                continue
            rng = _rng(seed, image_id, variant)
            chosen = pool[int(rng.integers(len(pool)))]
            rows.append((image_id, variant, str(chosen[int(rng.integers(len(chosen)))])))
    return pd.DataFrame(rows, columns=["image_id", "variant", "donor_id"])


def _load(path: str) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _background(path: str, mask: Mask, size: tuple[int, int], fill: str) -> np.ndarray:
    """The donor's ONLY-BG, resized to ``size`` (height, width) when the images differ."""
    bg = V.only_bg(_load(path), mask.alpha, fill)
    if bg.shape[:2] != size:
        bg = np.asarray(Image.fromarray(bg).resize(size[::-1], Image.Resampling.BILINEAR))
    return bg


def _save(pixels: np.ndarray, path: Path) -> None:
    """Write a variant image unless it is there: temp file + rename, so no reader sees half a
    file. Not fsynced (variants are a cache, rebuilt from their sources; fsync per image was
    half the build time): an empty file left by a power cut is rebuilt, see :func:`_missing`."""
    if not _missing(path):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            Image.fromarray(pixels).save(fh, format="PNG")
        os.replace(tmp, path)
    finally:
        with suppress(OSError):
            os.unlink(tmp)


def _missing(path: Path) -> bool:
    return not path.is_file() or path.stat().st_size == 0


def _row(
    base: dict[str, object], variant: str, path: object, background: object, donor: str = ""
) -> dict[str, object]:
    return {**base, "variant": variant, "path": str(path), "background": str(background),
            "donor_id": donor}  # fmt: skip


def build_variants(
    dataset: ImageDataset,
    masks: MaskLookup,
    out_dir: str | Path,
    *,
    seed: int = 0,
    fill: str = "tile",
) -> VariantSet:
    """Write every variant of every image with a usable mask under ``out_dir``.

    Returns them as one dataset whose ``group`` is the variant and whose ``source_id`` /
    ``source_group`` / ``donor_id`` columns say where each came from; ORIGINAL rows point at
    the source files themselves. Images with a missing or flagged mask get no variant.
    """
    if fill not in V.FILLS:
        raise ValueError(f"unknown fill {fill!r}; choose among {V.FILLS}")
    out = Path(out_dir)
    table = dataset.table
    records = []
    for row in table.itertuples(index=False):
        mask = masks(pd.Series(row._asdict()))
        records.append(
            {
                "image_id": str(row.image_id),
                "label": int(row.label),
                "group": str(row.group),
                "mask_source": mask.source if mask is not None else "",
                "mask_area": mask.area if mask is not None else float("nan"),
                "mask_status": mask_status(mask),
            }
        )
    mask_table = pd.DataFrame(records)
    usable = mask_table[mask_table["mask_status"] == "ok"]
    donors = choose_donors(usable, seed)
    by_id = table.set_index(table["image_id"].astype(str))
    rows = []
    for image_id in usable["image_id"]:
        src = by_id.loc[image_id]
        mask = masks(src)
        assert mask is not None  # usable
        pixels = _load(str(src["path"]))
        digest = _file_digest(src["path"]) + _mask_digest(mask)
        base = {
            "label": int(src["label"]),
            "class_name": src["class_name"],
            "source_id": image_id,
            "source_group": str(src["group"]),
            "split": "",
        }
        rows.append(_row(base, V.ORIGINAL, src["path"], src["background"]))
        singles = {
            V.ONLY_FG: (V.only_fg(pixels, mask.alpha), ""),
            V.NO_FG: (V.no_fg(pixels, mask.alpha), str(src["background"])),
            V.ONLY_BG: (V.only_bg(pixels, mask.alpha, fill), str(src["background"])),
        }
        for variant, (image, background) in singles.items():
            path = out / variant / f"{_digest(BUILDER_VERSION, digest, variant, fill)}.png"
            _save(image, path)
            rows.append(_row(base, variant, path, background))
        for d in donors[donors["image_id"] == image_id].itertuples(index=False):
            donor = by_id.loc[d.donor_id]
            donor_mask = masks(donor)
            assert donor_mask is not None  # donors are drawn among usable masks
            donor_digest = _file_digest(donor["path"]) + _mask_digest(donor_mask)
            key = _digest(BUILDER_VERSION, digest, donor_digest, d.variant, fill)
            path = out / d.variant / f"{key}.png"
            if _missing(path):
                bg = _background(str(donor["path"]), donor_mask, pixels.shape[:2], fill)
                _save(V.paste(pixels, mask.alpha, bg), path)
            rows.append(_row(base, d.variant, path, donor["background"], d.donor_id))
    variants = pd.DataFrame(rows)
    variants["image_id"] = variants["source_id"] + "::" + variants["variant"]
    variants["group"] = variants["variant"]
    ds = ImageDataset(
        f"{dataset.name} counterfactual", out, variants, dataset.classes,
        dataset.label_subset, dataset.label_sets,
    )  # fmt: skip
    return VariantSet(ds, mask_table)
