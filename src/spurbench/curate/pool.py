"""The photo pool a curated dataset is built from, and the per-image curation labels.

CounterAnimal (Wang, Lin et al., NeurIPS 2024, §3) starts from a raw pool — iNaturalist photos
of 45 ImageNet animal classes — whose images a person tagged with one of 14 backgrounds. Here a
pool is any dataset spurbench opens (a manifest, class folders, a CounterAnimal-layout folder;
see :func:`spurbench.data.layouts.open_dataset`), loaded as an :class:`ImageDataset` whose table
carries the curation state of every image beside its class label:

* ``background``: the background label ('' while unknown);
* ``background_source``: who gave it — ``manual`` (given with the pool or in a labels file),
  ``auto`` (the zero-shot tagger, above its confidence threshold) or ``reviewed`` (a person
  confirmed or corrected it in a review file) — so a datasheet can say how each label was made;
* ``background_confidence`` and ``background_suggestion``: the tagger's softmax confidence and
  top guess (also kept for low-confidence images, which stay unlabelled until reviewed);
* ``excluded``: why the image is left out of the dataset ('' when it is in) — unreadable,
  duplicate, or excluded by a reviewer; images are listed, never silently dropped;
* ``flags``: ';'-separated notes for review (``low_confidence``, ``label_noise``,
  ``label_conflict``) that do not by themselves exclude anything.

The state is kept as a labels CSV keyed by ``image_id`` (the path as the pool names it), so the
images themselves are never rewritten and the feature cache, which keys on image files only,
stays valid whatever the labels become.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from spurbench.atomic import write_text_atomic
from spurbench.data.classes import ClassList
from spurbench.data.dataset import ImageDataset
from spurbench.data.layouts import open_dataset
from spurbench.errors import DatasetError

MANUAL, AUTO, REVIEWED = "manual", "auto", "reviewed"
BACKGROUND_SOURCES = (MANUAL, AUTO, REVIEWED)

#: Flags that send an image to the review file.
LOW_CONFIDENCE, LABEL_NOISE, LABEL_CONFLICT = "low_confidence", "label_noise", "label_conflict"

#: Curation columns, in the order the labels CSV stores them after ``image_id``.
LABEL_COLUMNS = (
    "background",
    "background_source",
    "background_confidence",
    "background_suggestion",
    "excluded",
    "flags",
)


def normalize_background(value: object) -> str:
    """Background words compare case- and space-insensitively ('Indoor ' is 'indoor')."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return " ".join(str(value).lower().split())


def load_pool(
    source: str | Path | ImageDataset,
    *,
    background_column: str | None = "background",
    labels: str | Path | pd.DataFrame | None = None,
    name_set: str = "openai",
    split: str | None = None,
    classes: ClassList | str | Path | None = None,
    allow_outside_root: bool = False,
) -> ImageDataset:
    """Open a pool and attach curation columns.

    Args:
        source: a manifest, class folders, a CounterAnimal folder, or an ImageDataset.
        background_column: the manifest column holding background labels (for folders, the
            group folder name is the background). ``None`` ignores any background the pool
            carries, e.g. to tag a pool whose labels are to be checked against the tagger.
        labels: a labels CSV (``image_id`` or ``path``, ``background`` and optionally the other
            curation columns), as a person edits it or as :func:`write_labels` wrote it; its
            rows override the pool's.
    """
    if isinstance(source, ImageDataset):
        ds = source.filter(pd.Series(True, index=source.table.index))
    else:
        ds = open_dataset(
            source,
            name_set=name_set,
            split=split,
            classes=classes,
            allow_outside_root=allow_outside_root,
        )
    table = ds.table
    if background_column is None:
        given = pd.Series("", index=table.index)
    elif background_column in table.columns:
        given = table[background_column].map(normalize_background)
    elif background_column == "background":
        given = pd.Series("", index=table.index)
    else:
        raise DatasetError(
            f"The pool has no background column {background_column!r}; "
            f"its columns are {list(table.columns)}."
        )
    table["background"] = given
    table["background_source"] = np.where(given != "", MANUAL, "")
    table["background_confidence"] = np.nan
    table["background_suggestion"] = ""
    table["excluded"] = ""
    table["flags"] = ""
    if labels is not None:
        ds = apply_labels(
            ds, read_labels(labels) if not isinstance(labels, pd.DataFrame) else labels
        )
    return ds


def read_labels(path: str | Path) -> pd.DataFrame:
    """A labels CSV as a DataFrame of strings (an absent confidence stays NaN)."""
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise DatasetError(f"Could not read labels file {path}: {e}") from None
    return df


def apply_labels(
    dataset: ImageDataset, labels: pd.DataFrame, default_source: str = MANUAL
) -> ImageDataset:
    """Overwrite curation columns of the images ``labels`` names (by ``image_id`` or ``path``).

    A row with a background but no ``background_source`` is a person's label: ``manual``.
    Unknown image ids are an error (a labels file for another pool must not half-apply).
    """
    key = "image_id" if "image_id" in labels.columns else "path" if "path" in labels else None
    if key is None or "background" not in labels.columns:
        raise DatasetError(
            "A labels file needs an 'image_id' (or 'path') column and a 'background' column; "
            f"it has {list(labels.columns)}."
        )
    table = dataset.table.copy()
    position = {iid: i for i, iid in enumerate(table["image_id"])}
    ids = labels[key].astype(str)
    unknown = sorted(set(ids) - set(position))
    if unknown:
        raise DatasetError(
            f"{len(unknown)} labelled images are not in the pool, e.g. {unknown[:3]}; "
            "labels match the pool's image_id (the path as the manifest or folder names it)."
        )
    rows = [position[i] for i in ids]
    background = labels["background"].map(normalize_background).to_numpy()
    table.loc[rows, "background"] = background
    if "background_source" in labels.columns:
        source = labels["background_source"].fillna("").astype(str).str.strip().to_numpy()
        bad = sorted(set(source) - {"", *BACKGROUND_SOURCES})
        if bad:
            raise DatasetError(
                f"Unknown background_source values {bad}; use {list(BACKGROUND_SOURCES)}."
            )
        source = np.where((source == "") & (background != ""), default_source, source)
    else:
        source = np.where(background != "", default_source, "")
    table.loc[rows, "background_source"] = np.where(background == "", "", source)
    for col in ("background_suggestion", "excluded", "flags"):
        if col in labels.columns:
            table.loc[rows, col] = labels[col].fillna("").astype(str).to_numpy()
    if "background_confidence" in labels.columns:
        conf = pd.to_numeric(labels["background_confidence"], errors="coerce").to_numpy()
        table.loc[rows, "background_confidence"] = conf
    return _replace_table(dataset, table)


def write_labels(dataset: ImageDataset, path: str | Path) -> None:
    """Write every image's curation columns (atomically) as the labels CSV."""
    cols = ["image_id", "label", "class_name", *LABEL_COLUMNS]
    text = dataset.table[cols].to_csv(index=False, lineterminator="\n")
    write_text_atomic(path, text)


def in_dataset(dataset: ImageDataset) -> pd.Series:
    """Images that can enter the curated dataset: not excluded and with a background."""
    t = dataset.table
    return (t["excluded"] == "") & (t["background"] != "")


def has_flag(dataset: ImageDataset, flag: str) -> pd.Series:
    return dataset.table["flags"].map(lambda s: flag in split_flags(s))


def split_flags(text: str) -> list[str]:
    return [f for f in str(text).split(";") if f]


def add_flag(flags: pd.Series, mask: pd.Series | np.ndarray, flag: str) -> pd.Series:
    """``flags`` with ``flag`` added where ``mask`` holds (no duplicates, order kept)."""

    def add(text: str) -> str:
        parts = split_flags(text)
        return ";".join(parts if flag in parts else [*parts, flag])

    m = np.asarray(mask, dtype=bool)
    return pd.Series(
        [add(v) if keep else v for v, keep in zip(flags.tolist(), m, strict=True)],
        index=flags.index,
        dtype=object,
    )


def remove_flag(flags: pd.Series, mask: pd.Series | np.ndarray, flag: str) -> pd.Series:
    """``flags`` without ``flag`` where ``mask`` holds."""
    m = np.asarray(mask, dtype=bool)
    return pd.Series(
        [
            ";".join(f for f in split_flags(v) if f != flag) if keep else v
            for v, keep in zip(flags.tolist(), m, strict=True)
        ],
        index=flags.index,
        dtype=object,
    )


def _replace_table(dataset: ImageDataset, table: pd.DataFrame) -> ImageDataset:
    return ImageDataset(
        dataset.name, dataset.root, table, dataset.classes, dataset.label_subset, dataset.label_sets
    )


def with_table(dataset: ImageDataset, table: pd.DataFrame) -> ImageDataset:
    """The same pool (root, classes) with an updated table; rows must be the same images."""
    if (
        len(table) != len(dataset.table)
        or not (table["image_id"].to_numpy() == dataset.table["image_id"].to_numpy()).all()
    ):
        raise ValueError("with_table keeps the pool's rows; use ImageDataset.filter to subset")
    return _replace_table(dataset, table.reset_index(drop=True))


def source_counts(dataset: ImageDataset) -> dict[str, int]:
    """How many images carry each background source (and how many are unlabelled)."""
    s = dataset.table["background_source"].replace("", "unlabelled")
    return {str(k): int(v) for k, v in s.value_counts().sort_index().items()}
