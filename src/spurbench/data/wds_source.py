"""WebDataset tar shards, the form clip_benchmark's ``wds_*`` evaluation sets take.

clip_benchmark's layout (its ``webdataset_builder.py``): ``<root>/classnames.txt`` (one class
per line, indexed by the labels), ``<root>/zeroshot_classification_templates.txt`` (prompts
with ``{c}``) and shards ``<root>/<split>/0.tar, 1.tar …``, each sample a ``<key>.webp``
(``.jpg``, ``.png``) with ``<key>.cls`` (an integer label, or a class name). spurbench also
reads ``<key>.group`` and ``<key>.background`` (CounterAnimal's common/counter) when present;
``SourceColumns`` names other member extensions. Accepted specs: the root folder, a split
folder, one ``.tar`` or a brace pattern (``shards-{000..009}.tar``).

Why an index rather than webdataset's streaming pipeline: ``webdataset.WebDataset`` yields
samples in order and cannot fetch one; spurbench's feature cache encodes fixed row ranges and
resumes at any of them, and thumbnails and review open single images. So shards are indexed
once with :mod:`tarfile` (headers only; it seeks past the data) and each image is read by
offset (:mod:`.members`): random access, one image in memory at a time. webdataset supplies the
conventions, so names mean what they mean to its users: shard-list expansion (``expand_urls``)
and the sample-key rule (``base_plus_ext``).
"""

from __future__ import annotations

import re
import tarfile
from pathlib import Path

import pandas as pd

from spurbench.data.classes import ClassList
from spurbench.data.dataset import ImageDataset, SourceColumns
from spurbench.data.layouts import IMAGE_SUFFIXES
from spurbench.data.members import tar_locator
from spurbench.data.sources import build_dataset, missing_library, read_lines
from spurbench.errors import DatasetError

CLASSNAMES = "classnames.txt"
TEMPLATES = "zeroshot_classification_templates.txt"
#: clip_benchmark's split when a root folder holds several.
DEFAULT_SPLIT = "test"
_IMAGE_EXTS = {s.lstrip(".") for s in IMAGE_SUFFIXES}


def is_webdataset(source: str | Path) -> bool:
    """True for a ``.tar`` file, a brace pattern of shards, or a folder of shards."""
    text = str(source)
    if "{" in text and ".tar" in text:
        return True
    path = Path(text).expanduser()
    if path.is_file():
        return path.suffix.lower() == ".tar"
    if not path.is_dir():
        return False
    has_shards = any(path.glob("*.tar")) or bool(_split_folders(path))
    # a stray archive beside class folders of images does not make an image folder a WebDataset
    return has_shards and ((path / CLASSNAMES).is_file() or not _holds_images(path))


def open_webdataset(
    source: str | Path,
    *,
    split: str | None = None,
    columns: SourceColumns | None = None,
    classes: ClassList | None = None,
    name_set: str = "openai",
) -> ImageDataset:
    """Index the shards of ``source`` and return their samples as an ImageDataset."""
    try:
        from webdataset.shardlists import expand_urls
        from webdataset.tariterators import base_plus_ext
    except ImportError:
        raise missing_library("webdataset", "wds") from None
    columns = columns or SourceColumns()
    shards, root, split = _resolve_shards(str(source), split, expand_urls)
    label_ext = (columns.label or "cls").lower()
    group_ext = (columns.group or "group").lower()
    image_ext = columns.image.lower() if columns.image else None
    rows = []
    for shard in shards:
        rows += _index_shard(shard, root, base_plus_ext, image_ext, label_ext, group_ext)
    if not rows:
        raise DatasetError(f"The shards of {source} hold no samples.")
    table = pd.DataFrame(rows)
    lacking = table["label"].isna()
    if lacking.any():
        raise DatasetError(
            f"{int(lacking.sum())} samples have an image but no '.{label_ext}' label member, "
            f"e.g. {table.loc[lacking, 'image_id'].iloc[0]!r} (name the label member's "
            "extension with --label-column)."
        )
    table["split"] = split or ""
    templates = read_lines(root / TEMPLATES)
    return build_dataset(
        root.name if not split else f"{root.name}/{split}",
        root,
        table,
        class_names=read_lines(root / CLASSNAMES),
        classes=classes,
        name_set=name_set,
        templates=tuple(templates) if templates else None,
    )


def _resolve_shards(text: str, split: str | None, expand_urls) -> tuple[list[Path], Path, str]:
    """The shard files, the dataset root (where the class-name files live) and the split."""
    path = Path(text).expanduser()
    if path.is_dir():
        if any(path.glob("*.tar")):
            shards = sorted(path.glob("*.tar"), key=_natural)
            found_split = split or ""
            root = path.parent if (path.parent / CLASSNAMES).is_file() else path
            if root != path:
                found_split = split or path.name
        else:
            folders = _split_folders(path)
            if split is None:
                split = DEFAULT_SPLIT if DEFAULT_SPLIT in folders else None
                if split is None and len(folders) == 1:
                    split = folders[0]
            if split not in folders:
                raise DatasetError(
                    f"{path} holds shards for splits {folders}; choose one with --split."
                )
            shards = sorted((path / split).glob("*.tar"), key=_natural)
            root, found_split = path, split
        return [p.resolve() for p in shards], root.resolve(), found_split
    shards = [Path(p).expanduser() for p in expand_urls(text)]
    missing = [str(p) for p in shards if not p.is_file()]
    if missing:
        raise DatasetError(
            f"{len(missing)} of {len(shards)} shards of {text!r} do not exist, e.g. {missing[0]}."
        )
    parent = shards[0].resolve().parent
    root = parent.parent if (parent.parent / CLASSNAMES).is_file() else parent
    found_split = split or (parent.name if root != parent else "")
    return [p.resolve() for p in shards], root, found_split


def _index_shard(
    shard: Path, root: Path, base_plus_ext, image_ext, label_ext: str, group_ext: str
) -> list[dict]:
    """One row per sample of a shard: image locator and its text members (headers only)."""
    samples: dict[str, dict] = {}
    prefix = shard.relative_to(root).as_posix() if shard.is_relative_to(root) else shard.name
    try:
        with tarfile.open(shard, mode="r:") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, ext = base_plus_ext(member.name)
                if key is None or Path(key).name.startswith("__"):
                    continue
                ext = ext.lower()
                sample = samples.setdefault(key, {"image_id": f"{prefix}/{key}"})
                is_image = ext == image_ext if image_ext else ext in _IMAGE_EXTS
                if is_image and "path" not in sample:
                    sample["path"] = tar_locator(str(shard), member.offset_data, member.size)
                elif ext in (label_ext, group_ext, "background"):
                    field = {label_ext: "label", group_ext: "group"}.get(ext, "background")
                    sample[field] = tar.extractfile(member).read().decode("utf-8").strip()
    except (tarfile.TarError, OSError) as e:
        raise DatasetError(
            f"{shard} is not a readable uncompressed tar shard ({e}); compressed shards "
            "(.tar.gz) cannot be read by offset: decompress them first."
        ) from None
    return [{"label": None, **s} for s in samples.values() if "path" in s]


def _split_folders(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.is_dir() and any(p.glob("*.tar")))


def _holds_images(path: Path) -> bool:
    """True when a sub-folder holds image files at any depth (stops at the first one)."""
    return any(
        f.suffix.lower() in IMAGE_SUFFIXES
        for d in path.iterdir()
        if d.is_dir()
        for f in d.rglob("*")
    )


def _natural(path: Path) -> list:
    """Sort key that puts ``2.tar`` before ``10.tar``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]
