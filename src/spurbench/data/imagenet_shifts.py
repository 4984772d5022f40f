"""ImageNet-1k validation and its natural distribution shifts, read from their published layouts.

The suite is the one effective-robustness studies plot (Taori et al., *Measuring Robustness to
Natural Distribution Shifts in Image Classification*, NeurIPS 2020; Radford et al., CLIP, 2021;
Crabbé et al., *Interpreting CLIP*, TMLR 2024): ImageNet-1k val as the reference, and
ImageNetV2 matched-frequency, ImageNet-Sketch, ImageNet-R, ImageNet-A and ObjectNet as shifts.
Each loader reads the folder layout the dataset is *released* in (what its download unpacks
to), so a user points spurbench at what they already have; spurbench never downloads.

Every loader returns an :class:`~spurbench.data.dataset.ImageDataset` whose labels are
ImageNet-1k indices and whose ``group`` is the dataset name, so the runner's 1-vs-1000 protocol
applies. Datasets covering part of ImageNet set ``label_subset``: logits are restricted to those
classes before the argmax, the standard way (hendrycks ``eval.py``: ``net(x)[:, indices_in_1k]``;
imagenet-testbed ``class_sublist``; clip_benchmark's 200-class masks), so accuracies are
comparable with published ones.

ObjectNet is the exception to "one image, one ImageNet label": each of its 113 ImageNet-overlapping
classes maps to a *set* of ImageNet classes (``Alarm clock`` → analog clock, digital clock), and a
prediction is correct when it falls in the set (imagenet-testbed ``objectnet_accuracy``). The
loader labels each image with the smallest index of its set (a stable representative that keeps
per-class metrics per ObjectNet class) and :func:`objectnet_correct` scores predictions by the
set rule. Images also carry a thin red border that evaluations crop (:data:`OBJECTNET_BORDER`).

Class lists and mappings are package data copied from public sources; ``imagenet/SOURCES.md``
gives repository, path, commit and blob for each, and the cross-checks made.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from PIL import Image, ImageOps

from spurbench.data.classes import imagenet_classes
from spurbench.data.dataset import ImageDataset
from spurbench.data.layouts import IMAGE_SUFFIXES
from spurbench.errors import DatasetError, closest

#: Pixels cropped from every side of an ObjectNet image before the model's own preprocessing:
#: imagenet-testbed ``src/eval_settings/objectnet.py`` (``PIL.ImageOps.crop(image, border=2)``),
#: wise-ft / model-soups ``crop`` (``img.crop((2, 2, w - 2, h - 2))``).
OBJECTNET_BORDER = 2

_DATA = "spurbench.data"


# --- class data ------------------------------------------------------------------------------


def _read_text(name: str) -> str:
    with resources.files(_DATA).joinpath("imagenet", name).open("r", encoding="utf-8") as fh:
        return fh.read()


@cache
def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1k WordNet ids in class-index order (timm ``imagenet_synsets.txt``)."""
    wnids = tuple(_read_text("wnids.txt").split())
    if len(wnids) != 1000 or len(set(wnids)) != 1000:
        raise RuntimeError("spurbench's packaged ImageNet wnid list is damaged; reinstall.")
    return wnids


@cache
def wnid_index() -> dict[str, int]:
    """WordNet id → ImageNet-1k index."""
    return {w: i for i, w in enumerate(imagenet_wnids())}


def _subset(file: str) -> tuple[int, ...]:
    index = wnid_index()
    return tuple(sorted(index[w] for w in _read_text(file).split()))


@cache
def imagenet_r_indices() -> tuple[int, ...]:
    """The 200 ImageNet indices of ImageNet-R (Hendrycks et al., ICCV 2021), sorted."""
    return _subset("imagenet_r_wnids.txt")


@cache
def imagenet_a_indices() -> tuple[int, ...]:
    """The 200 ImageNet indices of ImageNet-A (Hendrycks et al., CVPR 2021), sorted."""
    return _subset("imagenet_a_wnids.txt")


@dataclass(frozen=True)
class ObjectNetClass:
    """One of the 113 ObjectNet classes that overlap ImageNet-1k."""

    folder: str  # image folder in the release, e.g. "alarm_clock"
    label: str  # ObjectNet's class label, e.g. "Alarm clock"
    imagenet: tuple[int, ...]  # the ImageNet classes that count as correct, sorted

    @property
    def representative(self) -> int:
        """The ImageNet index the loader labels this class's images with (smallest of the set)."""
        return self.imagenet[0]


@cache
def objectnet_folders() -> dict[str, str]:
    """All 313 ObjectNet image folders → class label (``folder_to_objectnet_label.json``)."""
    return json.loads(_read_text("folder_to_objectnet_label.json"))


@cache
def objectnet_classes() -> tuple[ObjectNetClass, ...]:
    """The 113 ImageNet-overlapping ObjectNet classes, sorted by folder name.

    Derived as imagenet-testbed's ``objectnet.py`` does: ObjectNet label → ``"; "``-separated
    ILSVRC label strings (``objectnet_to_imagenet_1k.json``) → indices through
    ``imagenet_to_labels.json``; the folder of each label through ``folder_to_objectnet_label``.
    """
    labels = json.loads(_read_text("imagenet_to_labels.json"))
    by_string: dict[str, list[int]] = {}
    for index, text in labels.items():
        by_string.setdefault(text, []).append(int(index))
    folder_of = {label: folder for folder, label in objectnet_folders().items()}
    out = []
    for label, targets in json.loads(_read_text("objectnet_to_imagenet_1k.json")).items():
        ids = []
        for text in targets.split("; "):
            found = by_string.get(text, [])
            if len(found) != 1:  # 'crane' names two classes; the published mapping never uses it
                raise RuntimeError(f"ObjectNet mapping names ImageNet label {text!r} ambiguously.")
            ids.append(found[0])
        out.append(ObjectNetClass(folder_of[label], label, tuple(sorted(ids))))
    return tuple(sorted(out, key=lambda c: c.folder))


@cache
def objectnet_label_sets() -> dict[int, tuple[int, ...]]:
    """Representative label → the ImageNet classes that count as correct for it."""
    return {c.representative: c.imagenet for c in objectnet_classes()}


@cache
def objectnet_indices() -> tuple[int, ...]:
    """The union of ImageNet classes mapped from ObjectNet (125), sorted: its logit mask."""
    return tuple(sorted(i for c in objectnet_classes() for i in c.imagenet))


def objectnet_correct(predicted: ArrayLike, labels: ArrayLike) -> np.ndarray:
    """ObjectNet's rule: correct when the predicted ImageNet class maps to the true class.

    ``labels`` are the representative labels the loader assigns; ``predicted`` the top-1
    ImageNet indices, predicted among :func:`objectnet_indices` (imagenet-testbed
    ``objectnet_accuracy``: ``pred in folder_map[folder]``).
    """
    pred = np.asarray(predicted, dtype=int).ravel()
    y = np.asarray(labels, dtype=int).ravel()
    if pred.shape != y.shape:
        raise ValueError(f"{pred.size} predictions for {y.size} labels")
    sets = objectnet_label_sets()
    unknown = sorted(set(y.tolist()) - set(sets))
    if unknown:
        raise ValueError(f"labels {unknown[:5]} are not ObjectNet representative labels")
    return np.array([p in sets[t] for p, t in zip(pred.tolist(), y.tolist(), strict=True)], bool)


def objectnet_accuracy(predicted: ArrayLike, labels: ArrayLike) -> float:
    """Top-1 accuracy under :func:`objectnet_correct` (a fraction)."""
    correct = objectnet_correct(predicted, labels)
    return float(correct.mean()) if correct.size else float("nan")


def crop_border(image: Image.Image, border: int = OBJECTNET_BORDER) -> Image.Image:
    """Remove ``border`` pixels from every side (ObjectNet's red frame)."""
    return ImageOps.crop(image, border=border) if border > 0 else image


# --- the suite's datasets --------------------------------------------------------------------


@dataclass(frozen=True)
class ShiftDataset:
    """One dataset of the suite: where it usually lives, its layout, and how to obtain it."""

    name: str  # store / group name, e.g. "imagenet-r"
    title: str  # as papers print it
    folders: tuple[str, ...]  # standard folder names under a suite root, preferred first
    layout: str
    obtain: str
    openclip_column: str  # its column in spurbench.reference's openclip_results.csv
    load: Callable[..., ImageDataset]


def _class_dirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images(folder: Path) -> list[Path]:
    """Image files under a class folder, recursively (as torchvision's ImageFolder walks)."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )


def _open_root(path: str | Path, spec_name: str, inner: Iterable[str] = ()) -> Path:
    """The folder holding the class folders: ``path`` itself, or a known wrapper folder in it."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{SUITE[spec_name].title}: {root} is not a folder.")
    for name in inner:
        child = root / name
        if child.is_dir():
            return child.resolve()
    return root.resolve()


def _layout_error(spec_name: str, root: Path, problem: str, names: list[str]) -> DatasetError:
    spec = SUITE[spec_name]
    hint = _hint(spec_name, names)
    return DatasetError(
        f"{spec.title}: {root} does not have the published layout. {problem} "
        f"Expected: {spec.layout}{(' ' + hint) if hint else ''}"
    )


def _hint(spec_name: str, names: list[str]) -> str:
    """Say which dataset the offending folder names belong to, when that is recognisable."""
    if not names:
        return ""
    index = wnid_index()
    if all(n.isdigit() for n in names):
        return (
            "These are class-index folders: that is ImageNetV2's layout (load it as imagenet-v2)."
        )
    if all(n in index for n in names):
        where = [
            other.title
            for other, subset in (
                (SUITE["imagenet-r"], imagenet_r_indices()),
                (SUITE["imagenet-a"], imagenet_a_indices()),
            )
            if other.name != spec_name and all(index[n] in subset for n in names)
        ]
        tail = f" (they are {where[0]} classes)" if where else ""
        return f"These are ImageNet wnids outside this dataset's classes{tail}."
    if all(n in objectnet_folders() for n in names):
        return "These are ObjectNet folders (load them as objectnet)."
    near = [m for n in names[:3] for m in closest(n, index, n=1)]
    return f"Closest wnids: {near}." if near else ""


def _rows(
    root: Path, folders: list[tuple[Path, int, str]], spec_name: str
) -> list[tuple[str, str, int, str, str, str]]:
    rows = []
    for folder, label, class_name in folders:
        files = _images(folder)
        if not files:
            raise DatasetError(
                f"{SUITE[spec_name].title}: class folder {folder.relative_to(root)} holds no "
                f"images (suffixes {sorted(IMAGE_SUFFIXES)}); the copy looks incomplete."
            )
        rows += [
            (f.relative_to(root).as_posix(), str(f), label, class_name, spec_name, folder.name)
            for f in files
        ]
    return rows


def _dataset(
    spec_name: str,
    root: Path,
    rows: list[tuple[str, str, int, str, str, str]],
    name_set: str,
    label_subset: tuple[int, ...] | None = None,
    **extra: Any,
) -> ImageDataset:
    table = pd.DataFrame(
        rows, columns=["image_id", "path", "label", "class_name", "group", "class_folder"]
    )
    return ImageDataset(
        spec_name,
        root,
        table,
        imagenet_classes(name_set),
        label_subset,
        **extra,
    )


def _load_wnid_folders(
    path: str | Path,
    spec_name: str,
    *,
    name_set: str,
    inner: tuple[str, ...] = (),
    subset: tuple[int, ...] | None = None,
) -> ImageDataset:
    """Class folders named by wnid (torchvision ``ImageFolder``), optionally a class subset."""
    root = _open_root(path, spec_name, inner)
    dirs = _class_dirs(root)
    if not dirs:
        loose = [p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES][:1]
        problem = (
            "The images are not sorted into class folders."
            if loose
            else "It holds no class folders."
        )
        raise _layout_error(spec_name, root, problem, [])
    index = wnid_index()
    allowed = set(subset) if subset is not None else set(range(1000))
    bad = [d.name for d in dirs if d.name not in index or index[d.name] not in allowed]
    if bad:
        what = (
            f"one of its {len(allowed)} class wnids" if subset is not None else "an ImageNet wnid"
        )
        raise _layout_error(
            spec_name,
            root,
            f"{len(bad)} of {len(dirs)} folders are not {what}: {bad[:5]}.",
            bad[:20],
        )
    names = imagenet_classes(name_set).names
    folders = [(d, index[d.name], names[index[d.name]]) for d in dirs]
    return _dataset(spec_name, root, _rows(root, folders, spec_name), name_set, subset)


def load_imagenet_val(path: str | Path, *, name_set: str = "openai") -> ImageDataset:
    """ImageNet-1k validation, ``val/<wnid>/*.JPEG`` (what ``torchvision.datasets.ImageNet``
    and the usual ``valprep.sh`` produce); ``path`` is the ``val`` folder or its parent."""
    return _load_wnid_folders(path, "imagenet", name_set=name_set, inner=("val",))


def load_imagenet_sketch(path: str | Path, *, name_set: str = "openai") -> ImageDataset:
    """ImageNet-Sketch (Wang et al., NeurIPS 2019): ``sketch/<wnid>/*.JPEG``, all 1000 classes."""
    return _load_wnid_folders(path, "imagenet-sketch", name_set=name_set, inner=("sketch",))


def load_imagenet_r(path: str | Path, *, name_set: str = "openai") -> ImageDataset:
    """ImageNet-R: ``imagenet-r/<wnid>/*.jpg`` over 200 classes; logits masked to those 200."""
    return _load_wnid_folders(
        path, "imagenet-r", name_set=name_set, inner=("imagenet-r",), subset=imagenet_r_indices()
    )


def load_imagenet_a(path: str | Path, *, name_set: str = "openai") -> ImageDataset:
    """ImageNet-A: ``imagenet-a/<wnid>/*.jpg`` over 200 classes; logits masked to those 200."""
    return _load_wnid_folders(
        path, "imagenet-a", name_set=name_set, inner=("imagenet-a",), subset=imagenet_a_indices()
    )


def load_imagenet_v2(path: str | Path, *, name_set: str = "openai") -> ImageDataset:
    """ImageNetV2 matched-frequency (Recht et al., ICML 2019): folders ``0`` … ``999`` named by
    ImageNet class index (``imagenetv2-matched-frequency-format-val/<index>/*.jpeg``).

    Indices are read as integers, as the ImageNetV2 loader does (``int(path.parent.name)``): a
    plain ``ImageFolder`` would sort them as strings ("10" before "2") and mislabel them.
    """
    spec_name = "imagenet-v2"
    root = _open_root(path, spec_name, ("imagenetv2-matched-frequency-format-val",))
    dirs = _class_dirs(root)
    if not dirs:
        raise _layout_error(spec_name, root, "It holds no class folders.", [])
    bad = [d.name for d in dirs if not (d.name.isdigit() and int(d.name) < 1000)]
    if bad:
        raise _layout_error(
            spec_name,
            root,
            f"{len(bad)} of {len(dirs)} folders are not class indices 0-999: {bad[:5]}.",
            bad[:20],
        )
    names = imagenet_classes(name_set).names
    folders = [(d, int(d.name), names[int(d.name)]) for d in dirs]
    return _dataset(spec_name, root, _rows(root, folders, spec_name), name_set)


def load_objectnet(path: str | Path, *, name_set: str = "openai") -> ImageDataset:
    """ObjectNet 1.0 (Barbu et al., NeurIPS 2019): ``objectnet-1.0/images/<folder>/*.png``.

    Only the 113 classes that overlap ImageNet are kept (the other 200 folders are recognised
    and skipped). Labels are each class's representative ImageNet index, ``class_name`` its
    ObjectNet label, and ``label_subset`` the 125 mapped ImageNet classes. Score with
    :func:`objectnet_correct`, and crop :data:`OBJECTNET_BORDER` pixels (see ``spurbench.suite``).
    """
    spec_name = "objectnet"
    root = _open_root(path, spec_name, ("images",))
    dirs = _class_dirs(root)
    if not dirs:
        raise _layout_error(spec_name, root, "It holds no class folders.", [])
    known = objectnet_folders()
    bad = [d.name for d in dirs if d.name not in known]
    if bad:
        raise _layout_error(
            spec_name,
            root,
            f"{len(bad)} of {len(dirs)} folders are not ObjectNet class folders: {bad[:5]}.",
            bad[:20],
        )
    by_folder = {c.folder: c for c in objectnet_classes()}
    folders = [
        (d, by_folder[d.name].representative, by_folder[d.name].label)
        for d in dirs
        if d.name in by_folder
    ]
    if not folders:
        raise DatasetError(
            f"ObjectNet: none of the {len(dirs)} folders in {root} is one of the 113 classes "
            "that overlap ImageNet, so there is nothing to evaluate."
        )
    extra: dict[str, Any] = {}
    if "label_sets" in {f.name for f in fields(ImageDataset)}:  # runner support for set labels
        extra["label_sets"] = objectnet_label_sets()
    return _dataset(
        spec_name, root, _rows(root, folders, spec_name), name_set, objectnet_indices(), **extra
    )


SUITE: dict[str, ShiftDataset] = {
    s.name: s
    for s in (
        ShiftDataset(
            "imagenet",
            "ImageNet-1k val",
            ("imagenet/val", "imagenet1k/val", "ILSVRC2012/val", "val"),
            "class folders named by WordNet id, 'val/<wnid>/*.JPEG' (torchvision ImageFolder).",
            "https://image-net.org (ILSVRC2012_img_val.tar + ILSVRC2012_devkit_t12.tar.gz; "
            "torchvision.datasets.ImageNet(root, split='val') sorts the images into val/<wnid>/).",
            "imagenet1k",
            load_imagenet_val,
        ),
        ShiftDataset(
            "imagenet-v2",
            "ImageNetV2 matched-frequency",
            (
                "imagenetv2-matched-frequency-format-val",
                "ImageNetV2-matched-frequency",
                "imagenetv2-matched-frequency",
                "imagenet-v2",
            ),
            "class folders named by ImageNet index, "
            "'imagenetv2-matched-frequency-format-val/<0..999>/*.jpeg'.",
            "imagenetv2-matched-frequency.tar.gz from github.com/modestyachts/ImageNetV2 "
            "(https://huggingface.co/datasets/vaishaal/ImageNetV2).",
            "imagenetv2",
            load_imagenet_v2,
        ),
        ShiftDataset(
            "imagenet-sketch",
            "ImageNet-Sketch",
            ("sketch", "imagenet-sketch", "ImageNet-Sketch", "imagenet_sketch"),
            "class folders named by WordNet id, 'sketch/<wnid>/*.JPEG' (1000 classes).",
            "ImageNet-Sketch.zip from github.com/HaohanWang/ImageNet-Sketch (Google Drive or "
            "Kaggle 'wanghaohan/imagenetsketch'); it unpacks to sketch/.",
            "imagenet_sketch",
            load_imagenet_sketch,
        ),
        ShiftDataset(
            "imagenet-r",
            "ImageNet-R",
            ("imagenet-r", "imagenet_r"),
            "200 class folders named by WordNet id, 'imagenet-r/<wnid>/*.jpg'.",
            "https://people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar "
            "(github.com/hendrycks/imagenet-r).",
            "imagenet_r",
            load_imagenet_r,
        ),
        ShiftDataset(
            "imagenet-a",
            "ImageNet-A",
            ("imagenet-a", "imagenet_a"),
            "200 class folders named by WordNet id, 'imagenet-a/<wnid>/*.jpg'.",
            "https://people.eecs.berkeley.edu/~hendrycks/imagenet-a.tar "
            "(github.com/hendrycks/natural-adv-examples).",
            "imagenet_a",
            load_imagenet_a,
        ),
        ShiftDataset(
            "objectnet",
            "ObjectNet",
            ("objectnet-1.0", "objectnet"),
            "'objectnet-1.0/images/<folder>/*.png' with ObjectNet's own folder names "
            "(e.g. alarm_clock); the 113 classes overlapping ImageNet are used.",
            "objectnet-1.0.zip from https://objectnet.dev (password and licence in its README).",
            "objectnet",
            load_objectnet,
        ),
    )
}
SUITE_NAMES: tuple[str, ...] = tuple(SUITE)
#: The in-distribution reference (the x axis of effective robustness) and the shifts (y).
REFERENCE = "imagenet"
SHIFTS: tuple[str, ...] = tuple(n for n in SUITE_NAMES if n != REFERENCE)


def check_names(names: Iterable[str]) -> tuple[str, ...]:
    """Validate suite dataset names (keeping the suite's order)."""
    wanted = [n.strip() for n in names if n.strip()]
    unknown = [n for n in wanted if n not in SUITE]
    if unknown:
        near = {n: closest(n, SUITE_NAMES, n=1) for n in unknown}
        raise DatasetError(
            f"Unknown suite datasets {unknown} (closest: {near}); choose among {list(SUITE)}."
        )
    return tuple(n for n in SUITE_NAMES if n in wanted)


def load_shift(name: str, path: str | Path, *, name_set: str = "openai") -> ImageDataset:
    """Load suite dataset ``name`` from ``path`` (its own folder or a known wrapper of it)."""
    (name,) = check_names([name])
    return SUITE[name].load(path, name_set=name_set)


def locate(name: str, root: str | Path | None) -> Path | None:
    """The first standard folder of dataset ``name`` that exists under ``root``, else None."""
    if root is None:
        return None
    base = Path(root).expanduser()
    for folder in SUITE[name].folders:
        if (base / folder).is_dir():
            return base / folder
    return None


def missing_message(name: str, root: str | Path | None) -> str:
    """Where a dataset was looked for, what layout is expected, and how to obtain it."""
    spec = SUITE[name]
    where = (
        f"not found under {Path(root).expanduser()} (looked for "
        + ", ".join(f"{f}/" for f in spec.folders)
        + ")"
        if root is not None
        else "no --root given"
    )
    return (
        f"{spec.title} ({name}): {where}. Expected {spec.layout} Obtain: {spec.obtain} "
        f"spurbench never downloads datasets; give another folder with --path {name}=DIR."
    )
