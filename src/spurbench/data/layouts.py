"""Loaders for the layouts grouped-image datasets come in.

* **CounterAnimal release layout** (Wang, Lin et al., NeurIPS 2024): one folder per class named
  ``<ImageNet index> <class name>`` (e.g. ``100 black swan``), each with exactly one
  ``common-<background>/`` and one ``counter-<background>/`` folder of images; also the
  appendix's ``<class name>/common-<bg>/`` spelling, mapped to ImageNet indices by name.
* **Class folders**: ``<class>/<group>/image`` or ``<class>/image`` (group ``all``).
* **Manifest**: CSV or Parquet with ``path, label`` and optional ``group, background, split``
  and any extra columns; paths relative to the manifest's folder (or ``root``).

Labels given as ImageNet indices (or CounterAnimal folder indices) index the ImageNet-1k class
list, so the 1-vs-1000 and 1-vs-20 protocols apply; otherwise the label space is the dataset's
own class names and only 1-vs-N applies.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from spurbench.data.classes import (
    ClassList,
    imagenet_classes,
    imagenet_index_of,
    read_class_file,
)
from spurbench.data.dataset import COMMON, COUNTER, ImageDataset, SourceColumns
from spurbench.errors import DatasetError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".jfif"}
_INDEXED = re.compile(r"^(\d{1,4})[ _-]+(.+)$")
_PAIRED = re.compile(r"^(common|counter)[-_](.+)$", re.IGNORECASE)


def open_dataset(
    source: str | Path,
    *,
    name_set: str = "openai",
    split: str | None = None,
    root: str | Path | None = None,
    classes: ClassList | str | Path | None = None,
    allow_outside_root: bool = False,
    columns: SourceColumns | None = None,
) -> ImageDataset:
    """Open a dataset folder or manifest file; the layout is recognised from what is there.

    ``classes`` (a ClassList or a file with one name per line) is the label space of a manifest
    whose integer labels index a custom class list, or whose names must match a fixed list.
    Hugging Face datasets (``hf:org/name[:config][@split]``, a ``save_to_disk`` folder, a
    Parquet file of image bytes) and WebDataset shards (a folder, a ``.tar``, a brace pattern)
    are read in place; ``columns`` names their image / label / group fields.
    """
    if isinstance(classes, str | Path):
        classes = read_class_file(classes)
    container = _open_container(source, split, columns, classes, name_set)
    if container is not None:
        return container
    path = Path(source).expanduser()
    if path.is_file() and path.suffix.lower() in (".csv", ".parquet", ".pq", ".tsv"):
        ds = load_manifest(
            path,
            root=root,
            name_set=name_set,
            classes=classes,
            allow_outside_root=allow_outside_root,
        )
    elif path.is_dir():
        manifest = path / "manifest.csv"
        if manifest.is_file() and not _has_class_folders(path):
            ds = load_manifest(
                manifest, name_set=name_set, classes=classes, allow_outside_root=allow_outside_root
            )
        else:
            ds = load_folder(path, name_set=name_set)
    else:
        raise DatasetError(
            f"{source} is neither a dataset folder nor a .csv/.parquet manifest. Expected a "
            "CounterAnimal folder ('<index> <class>/common-<bg>/', 'counter-<bg>/'), class "
            "folders ('<class>/<group>/images'), or a manifest with columns path,label[,group]."
        )
    if split is not None:
        mask = ds.table["split"].astype(str) == split
        if not mask.any():
            raise DatasetError(
                f"No images with split {split!r}; "
                f"splits present: {sorted(ds.table['split'].unique())}."
            )
        ds = ds.filter(mask)
    return ds


def _open_container(
    source: str | Path,
    split: str | None,
    columns: SourceColumns | None,
    classes: ClassList | None,
    name_set: str,
) -> ImageDataset | None:
    """A Hugging Face or WebDataset source opened in place, or None for other layouts."""
    from spurbench.data import hf_source, wds_source

    text = str(source)
    path = Path(text).expanduser()
    options = dict(split=split, columns=columns, classes=classes, name_set=name_set)
    if (
        text.startswith(hf_source.PREFIX)
        or (path.is_dir() and hf_source.is_saved_dataset(path))
        or (path.suffix.lower() in (".parquet", ".pq") and hf_source.is_image_parquet(path))
    ):
        return hf_source.open_hf(source, **options)
    if wds_source.is_webdataset(source):
        return wds_source.open_webdataset(source, **options)
    return None


def _has_class_folders(path: Path) -> bool:
    return any(p.is_dir() and not p.name.startswith(".") for p in path.iterdir())


def _images_in(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )


def load_folder(root: str | Path, *, name_set: str = "openai") -> ImageDataset:
    """Class folders with optional group sub-folders (CounterAnimal's layout is a special case)."""
    root = Path(root).expanduser().resolve()
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DatasetError(f"{root} holds no class folders.")
    labels = [_imagenet_label(d.name) for d in class_dirs]
    imagenet = all(v is not None for v in labels)
    classes = (
        imagenet_classes(name_set)
        if imagenet
        else ClassList(tuple(d.name for d in class_dirs), None, "custom")
    )
    rows = []
    for k, class_dir in enumerate(class_dirs):
        label = labels[k] if imagenet else k
        group_dirs = sorted(
            p for p in class_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
        )
        paired = [g for g in group_dirs if _PAIRED.match(g.name)]
        if paired:
            kinds = [_PAIRED.match(g.name).group(1).lower() for g in paired]  # type: ignore[union-attr]
            if sorted(kinds) != [COMMON, COUNTER]:
                raise DatasetError(
                    f"Class folder '{class_dir.name}' must hold exactly one common-<bg>/ and one "
                    "counter-<bg>/ folder (CounterAnimal layout); "
                    f"found {[g.name for g in paired]}."
                )
        units = [(g, *_group_of(g.name)) for g in group_dirs] or [(class_dir, "all", "")]
        for folder, group, background in units:
            files = (
                _images_in(folder)
                if folder is not class_dir
                else sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            )
            if not files:
                raise DatasetError(f"Group folder {folder.relative_to(root)} holds no images.")
            rows += [
                (
                    f.relative_to(root).as_posix(),
                    str(f),
                    label,
                    classes.names[label],
                    group,
                    background,
                )
                for f in files
            ]
    table = pd.DataFrame(
        rows, columns=["image_id", "path", "label", "class_name", "group", "background"]
    )
    table["class_folder"] = table["image_id"].str.split("/").str[0]
    return ImageDataset(root.name, root, table, classes)


def _imagenet_label(folder_name: str) -> int | None:
    """The ImageNet index a class folder stands for, checking index and name agree."""
    m = _INDEXED.match(folder_name)
    if m:
        index, name = int(m.group(1)), m.group(2)
        if not 0 <= index < 1000:
            return None
        by_name = imagenet_index_of(name)
        if by_name is not None and by_name != index:
            raise DatasetError(
                f"Class folder '{folder_name}': index {index} is "
                f"'{imagenet_classes().names[index]}' in ImageNet, but the name says {by_name} "
                f"('{imagenet_classes().names[by_name]}'). Fix the folder name or index."
            )
        return index
    return imagenet_index_of(folder_name)


def _group_of(folder_name: str) -> tuple[str, str]:
    m = _PAIRED.match(folder_name)
    if m:
        return m.group(1).lower(), m.group(2)
    return folder_name, folder_name


def load_manifest(
    path: str | Path,
    *,
    root: str | Path | None = None,
    name_set: str = "openai",
    classes: ClassList | None = None,
    allow_outside_root: bool = False,
) -> ImageDataset:
    """Read a CSV/Parquet manifest (``path, label`` required; ``group`` defaults to ``all``)."""
    path = Path(path).expanduser()
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            df = pd.read_parquet(path)
        else:
            # dtype=str: a cell is what the file says ("01" stays "01", "True" stays a name);
            # labels are typed below by one explicit rule instead of pandas' inference
            df = pd.read_csv(
                path,
                sep="\t" if path.suffix.lower() == ".tsv" else ",",
                dtype=str,
                keep_default_na=False,
            )
    except Exception as e:
        raise DatasetError(f"Could not read manifest {path}: {e}") from None
    for col in ("path", "label"):
        if col not in df.columns:
            raise DatasetError(
                f"Manifest {path} needs a '{col}' column; it has {list(df.columns)}."
            )
    if df.empty:
        raise DatasetError(f"Manifest {path} has no rows.")
    base = Path(root).expanduser().resolve() if root else path.parent.resolve()
    df = df.copy()
    df["image_id"] = df["path"].astype(str)
    bad = [p for p in df["image_id"] if not p.strip() or "\x00" in p]
    if bad:
        raise DatasetError(
            f"Manifest {path} has {len(bad)} empty or NUL-containing paths, e.g. {bad[0]!r}."
        )
    df["path"] = [_safe_path(base, p, allow_outside_root) for p in df["image_id"]]
    df["label"], classes = _labels(df, classes, name_set)
    df["class_name"] = [classes.names[i] for i in df["label"]]
    if "group" not in df.columns:
        df["group"] = "all"
    df["group"] = df["group"].astype(str).replace("", "all")
    return ImageDataset(path.stem, base, df, classes)


def _safe_path(base: Path, rel: str, allow_outside_root: bool) -> str:
    """Resolve a manifest path; refuse escapes from the dataset root (``..``, absolute, links)."""
    candidate = Path(rel).expanduser()
    full = (candidate if candidate.is_absolute() else base / candidate).resolve()
    if not allow_outside_root and not full.is_relative_to(base):
        raise DatasetError(
            f"Manifest path {rel!r} resolves to {full}, outside the dataset root {base}. "
            "Refused (it could read arbitrary files); pass allow_outside_root=True "
            "(--allow-outside-root) if you trust this manifest."
        )
    return str(full)


def _labels(
    df: pd.DataFrame, classes: ClassList | None, name_set: str
) -> tuple[list[int], ClassList]:
    """Labels are integer class indices when every cell is an integer, else class names.

    Integers index ``classes`` (ImageNet-1k unless a class list is given). Booleans are names
    ("True"/"False"), never 1/0; numbers that are not integers (``1.5``, ``inf``, ``1e400``)
    are refused rather than guessed at.
    """
    raw = df["label"]
    if pd.api.types.is_bool_dtype(raw):
        raw = raw.astype(str)
    if pd.api.types.is_numeric_dtype(raw):
        values = raw.to_numpy(dtype=float)
        bad = sorted({str(v) for v in values if not (np.isfinite(v) and v == round(v))})
        if bad:
            raise DatasetError(f"Labels must be integer class indices or names; got {bad[:10]}.")
        return _indices([int(v) for v in values], classes, name_set)
    text = raw.astype(str).str.strip()
    if (text == "").any():
        raise DatasetError(f"{int((text == '').sum())} manifest rows have an empty label.")
    if text.str.fullmatch(r"[+-]?\d+").all():
        return _indices([int(v) for v in text], classes, name_set)
    numeric = pd.to_numeric(text, errors="coerce")
    if numeric.notna().any() and not text.str.fullmatch(r"[+-]?\d+").any():
        bad = sorted(set(text[numeric.notna()]))
        raise DatasetError(
            f"Labels must be integer class indices or names; these are neither: {bad[:10]}."
        )
    names = text.tolist()
    if classes is None:
        classes = ClassList(tuple(sorted(set(names))), None, "custom")
    index = {n: i for i, n in enumerate(classes.names)}
    unknown = sorted({n for n in names if n not in index})
    if unknown:
        raise DatasetError(f"Labels not in the class list: {unknown[:10]}.")
    return [index[n] for n in names], classes


def _indices(
    ints: list[int], classes: ClassList | None, name_set: str
) -> tuple[list[int], ClassList]:
    """Check integer labels against the class list before they become array indices."""
    classes = classes or imagenet_classes(name_set)
    out_of_range = sorted({i for i in ints if not 0 <= i < len(classes)})
    if out_of_range:
        raise DatasetError(
            f"Integer labels {out_of_range[:10]} are outside the class list of "
            f"{len(classes)} classes (integers are ImageNet indices unless --classes is given)."
        )
    return ints, classes
