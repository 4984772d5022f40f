"""The dataset every stage reads: a table of images with labels, groups and backgrounds.

Whatever the on-disk layout (CounterAnimal release folders, a manifest, class folders), loaders
produce one :class:`ImageDataset`: rows of ``image_id, path, label, class_name, group,
background, split`` plus any extra columns (concept labels, captions), and the
:class:`~spurbench.data.classes.ClassList` the labels index into.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from spurbench.data.classes import ClassList
from spurbench.data.members import file_stamp
from spurbench.errors import DatasetError


@dataclass(frozen=True)
class SourceColumns:
    """The fields holding image, label and group (None: detected).

    For a Hugging Face dataset these are column names; for WebDataset shards, the extensions of
    a sample's members (``jpg``, ``cls``, ``group``).
    """

    image: str | None = None
    label: str | None = None
    group: str | None = None


REQUIRED = ("image_id", "path", "label", "class_name", "group")
COMMON, COUNTER = "common", "counter"
#: The ``group`` of the drop rows in the tidy metrics frame (common minus counter).
DROP_GROUP = f"{COMMON}-{COUNTER}"


@dataclass
class ImageDataset:
    """Images (absolute paths) with labels into ``classes`` and a group per image."""

    name: str
    root: Path
    table: pd.DataFrame
    classes: ClassList
    #: Classes the dataset can contain, when it covers only part of the label space (ImageNet-R
    #: and -A cover 200 ImageNet classes): every protocol then restricts logits to this subset,
    #: the standard way, so accuracies are comparable with published ones.
    label_subset: tuple[int, ...] | None = None
    #: Accepted predictions per label, when several classes of the label space count as right
    #: (ObjectNet's classes each map to a set of ImageNet classes).
    label_sets: dict[int, tuple[int, ...]] | None = None
    #: Prompt templates the dataset ships (clip_benchmark's
    #: ``zeroshot_classification_templates.txt``), used when the caller names none.
    templates: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        missing = [c for c in REQUIRED if c not in self.table.columns]
        if missing:
            raise DatasetError(f"Dataset {self.name!r} lacks columns {missing}.")
        if self.table.empty:
            raise DatasetError(f"Dataset {self.name!r} has no images.")
        for col in ("background", "split"):
            if col not in self.table.columns:
                self.table[col] = ""
        self.table = self.table.reset_index(drop=True)
        bad = self.table.loc[~self.table["label"].between(0, len(self.classes) - 1), "label"]
        if len(bad):
            raise DatasetError(
                f"Labels {sorted(set(bad))[:10]} are outside the class list of {len(self.classes)}."
            )
        if self.table["image_id"].duplicated().any():
            dup = self.table.loc[self.table["image_id"].duplicated(), "image_id"].head(3).tolist()
            raise DatasetError(f"Duplicate image ids in {self.name!r}: {dup}.")

    def __len__(self) -> int:
        return len(self.table)

    @property
    def present_labels(self) -> list[int]:
        """Distinct labels of the dataset, sorted: the N classes of the 1-vs-N protocol."""
        return sorted(int(v) for v in self.table["label"].unique())

    @property
    def groups(self) -> list[str]:
        return sorted(self.table["group"].astype(str).unique())

    def images_digest(self) -> str:
        """Identity of the image files (relative path, size, mtime): the feature-cache key part.

        Labels are deliberately excluded: relabelling a dataset must not re-run the image
        encoder, but replacing or touching an image file must. An image inside a shard or Arrow
        file is identified the same way, by its id (shard + key, file + row) and the container's
        size and mtime (:func:`~spurbench.data.members.file_stamp`).
        """
        h = hashlib.sha256()
        for image_id, path in zip(self.table["image_id"], self.table["path"], strict=True):
            h.update(f"{image_id}\t{file_stamp(path)}\n".encode())
        return h.hexdigest()[:16]

    def digest(self) -> str:
        """Identity of the whole dataset (images, labels, groups, class list)."""
        h = hashlib.sha256(self.images_digest().encode())
        cols = ["image_id", "label", "group", "background", "split"]
        h.update(pd.util.hash_pandas_object(self.table[cols], index=False).values.tobytes())
        h.update(self.classes.digest().encode())
        h.update(repr(self.label_subset).encode())
        if self.label_sets is not None:
            h.update(repr(sorted(self.label_sets.items())).encode())
        return h.hexdigest()[:16]

    def filter(self, mask: pd.Series, name: str | None = None) -> ImageDataset:
        return ImageDataset(
            name or self.name,
            self.root,
            self.table[mask].copy(),
            self.classes,
            self.label_subset,
            self.label_sets,
            self.templates,
        )
