"""What the container sources (WebDataset shards, Hugging Face datasets) share.

Both yield rows whose ``path`` is a locator into a container file (see :mod:`.members`), raw
labels (integers or names) and, often, the class names the labels index. :func:`build_dataset`
turns them into an :class:`ImageDataset` by the same label rules as a manifest: integers index
the dataset's class names (ImageNet-1k when it ships none), names are looked up. When every
shipped class name is an ImageNet class, the label space is ImageNet-1k, as for class folders,
so the 1-vs-1000 and 1-vs-20 protocols apply.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from spurbench.data.classes import ClassList, imagenet_classes
from spurbench.data.dataset import ImageDataset
from spurbench.data.layouts import imagenet_label, labels_of
from spurbench.errors import DatasetError


def build_dataset(
    name: str,
    root: Path,
    rows: pd.DataFrame,
    *,
    class_names: list[str] | None,
    classes: ClassList | None,
    name_set: str,
    templates: tuple[str, ...] | None = None,
) -> ImageDataset:
    """An ImageDataset from rows of ``image_id, path, label`` (raw) and optional group columns.

    ``classes`` (the user's ``--classes``) wins over ``class_names`` (what the dataset ships).
    """
    rows = rows.copy()
    shipped = classes is None and class_names is not None
    if shipped:
        classes = ClassList(tuple(class_names), None, "custom")
    labels, classes = labels_of(rows, classes, name_set)
    if shipped:
        labels, classes = _as_imagenet(labels, classes, name_set)
    rows["label"] = labels
    rows["class_name"] = [classes.names[i] for i in labels]
    if "group" not in rows.columns:
        rows["group"] = "all"
    rows["group"] = rows["group"].fillna("").astype(str).replace("", "all")
    return ImageDataset(name, root, rows, classes, templates=templates)


def _as_imagenet(
    labels: list[int], classes: ClassList, name_set: str
) -> tuple[list[int], ClassList]:
    """Labels into ImageNet-1k when every class name is an ImageNet class, else unchanged."""
    for ns in ("openai", "wordnet"):
        if classes.names == imagenet_classes(ns).names:
            return labels, imagenet_classes(name_set)
    if len(classes) > 200:  # name-by-name matching of a large list is slow and rarely succeeds
        return labels, classes
    try:
        index = [imagenet_label(n) for n in classes.names]
    except DatasetError:
        return labels, classes
    if any(i is None for i in index) or len(set(index)) != len(index):
        return labels, classes
    return [index[k] for k in labels], imagenet_classes(name_set)  # type: ignore[misc]


def read_lines(path: Path) -> list[str] | None:
    """Non-blank lines of a text file, or None when it does not exist."""
    if not path.is_file():
        return None
    return [s.strip() for s in path.read_text(encoding="utf-8").splitlines() if s.strip()]


def missing_library(library: str, extra: str) -> DatasetError:
    """The error for an optional dependency that is not installed, with the install line."""
    return DatasetError(
        f"Reading this dataset needs the `{library}` library: pip install 'spurbench[{extra}]' "
        f"(or pip install {library})."
    )
