"""Small JPEG thumbnails embedded in the page, so a reader sees what "counter background" means.

Thumbnails are base64 data URIs: the page stays one self-contained file that can be mailed or
attached to a paper's supplement, and it never points at the dataset folder (which the reader
will not have). Counts are capped, because every thumbnail costs a few kilobytes of HTML.

Images are read with :func:`spurbench.data.images.load_rgb`, the evaluation's own defensive
reader: a file that was unreadable at evaluation time is skipped here too, not decoded blindly.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from spurbench.data.dataset import COMMON, COUNTER
from spurbench.data.images import load_rgb

__all__ = [
    "ClassExamples",
    "Thumb",
    "Thumbnailer",
    "class_examples",
    "label_names",
    "wrong_examples",
]

#: Longest side of a thumbnail in pixels (shown at this size; crisp enough at 2x zoom).
THUMB_PX = 112
JPEG_QUALITY = 78


@dataclass(frozen=True)
class Thumb:
    """One embedded image with what the reader needs to know about it."""

    uri: str
    caption: str
    title: str
    group: str


@dataclass(frozen=True)
class ClassExamples:
    """Common- and counter-background thumbnails of one class."""

    class_name: str
    common_bg: str
    counter_bg: str
    common: list[Thumb]
    counter: list[Thumb]


class Thumbnailer:
    """Turn image paths into data URIs, once per path; remembers how many could not be read."""

    def __init__(self, size: int = THUMB_PX, quality: int = JPEG_QUALITY) -> None:
        self.size, self.quality = size, quality
        self._cache: dict[Path, str | None] = {}
        self.failed = 0

    def __call__(self, root: str | Path, image_id: str) -> str | None:
        path = Path(root) / image_id
        if path not in self._cache:
            self._cache[path] = self._encode(path)
        return self._cache[path]

    def _encode(self, path: Path) -> str | None:
        try:
            im = load_rgb(str(path))
        except Exception:  # a moved dataset, a file deleted since evaluation: skip, count
            self.failed += 1
            return None
        im.thumbnail((self.size, self.size))
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=self.quality, optimize=True)
        return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _spread(items: pd.DataFrame, k: int) -> pd.DataFrame:
    """``k`` rows evenly spaced through ``items`` (already in a stable order), not the first k.

    The first files of a folder are often near-duplicates (bursts from one photographer), so
    evenly spaced picks show more of the group's variety for the same page weight.
    """
    if len(items) <= k:
        return items
    return items.iloc[np.linspace(0, len(items) - 1, k).round().astype(int)]


def _thumbs(rows: pd.DataFrame, root: str, make: Thumbnailer, caption: str = "") -> list[Thumb]:
    out = []
    for r in rows.itertuples():
        uri = make(root, r.image_id)
        if uri is not None:
            bg = str(r.background or "")
            out.append(Thumb(uri, caption or bg, str(r.image_id), str(r.group_name)))
    return out


def class_examples(
    examples: pd.DataFrame,
    root: str,
    make: Thumbnailer,
    *,
    per_group: int = 3,
    max_classes: int = 60,
) -> list[ClassExamples]:
    """Up to ``per_group`` common and counter thumbnails for each class (at most ``max_classes``).

    ``examples`` lists the dataset's images (image_id, label, class_name, group_name,
    background). Classes without both groups are left out: the point is the contrast.
    """
    out: list[ClassExamples] = []
    for class_name, rows in examples.groupby("class_name", sort=True):
        common = rows[rows["group_name"] == COMMON]
        counter = rows[rows["group_name"] == COUNTER]
        if common.empty or counter.empty:
            continue
        out.append(
            ClassExamples(
                class_name=str(class_name),
                common_bg=_backgrounds(common),
                counter_bg=_backgrounds(counter),
                common=_thumbs(_spread(common, per_group), root, make),
                counter=_thumbs(_spread(counter, per_group), root, make),
            )
        )
        if len(out) >= max_classes:
            break
    return out


def _backgrounds(rows: pd.DataFrame) -> str:
    values = [str(b) for b in dict.fromkeys(rows["background"].fillna("")) if b]
    return ", ".join(values[:3]) + (" …" if len(values) > 3 else "")


def label_names(protocol: str, name_set: str, classes: Iterable[tuple[int, str]]) -> dict[int, str]:
    """Name of every label a prediction can take, to caption "true → predicted".

    The dataset's own names come first; under the ImageNet protocols the other 1000 − N labels
    a model can predict are named from the run's ImageNet name set.
    """
    names: dict[int, str] = {}
    if protocol in ("1v1000", "1v20"):
        from spurbench.data.classes import imagenet_classes

        names.update(
            enumerate(imagenet_classes(name_set if name_set != "custom" else "openai").names)
        )
    names.update((int(label), str(name)) for label, name in classes)
    return names


def wrong_examples(
    wrong: pd.DataFrame, root: str, names: dict[int, str], make: Thumbnailer, *, k: int = 12
) -> list[Thumb]:
    """Up to ``k`` images one run misclassifies, counter-background first, one class at a time.

    Round-robin over classes keeps one hard class from filling the strip, and counter images
    come first because they are the failures the benchmark is about. Captions read
    "true → predicted".
    """
    if wrong.empty:
        return []
    w = wrong.assign(
        _counter=(wrong["group_name"] != COUNTER).astype(int),
        _turn=wrong.groupby(["group_name", "label"]).cumcount(),
    ).sort_values(["_counter", "_turn", "label", "image_id"], kind="stable")
    out: list[Thumb] = []
    for r in w.itertuples():
        if len(out) >= k:
            break
        uri = make(root, r.image_id)
        if uri is None:
            continue
        pred = names.get(int(r.pred_label), f"#{int(r.pred_label)}")
        caption = f"{r.class_name} → {pred}"
        title = f"{r.image_id} · {r.group_name} ({r.background or '—'}) · predicted {pred}"
        out.append(Thumb(uri, caption, title, str(r.group_name)))
    return out
