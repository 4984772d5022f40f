"""Loaders for the layouts grouped-image datasets come in.

* **CounterAnimal release layout** (Wang, Lin et al., NeurIPS 2024): one folder per class named
  ``<ImageNet index> <class name>`` (e.g. ``100 black swan``), each with exactly one
  ``common-<background>/`` and one ``counter-<background>/`` folder of images; also the
  appendix's ``<class name>/common-<bg>/`` spelling, mapped to ImageNet indices by name.
* **Class folders**: ``<class>/<group>/image`` or ``<class>/image`` (group ``all``).
* **Manifest**: CSV or Parquet with ``path, label`` and optional ``group, background, split``
  and any extra columns; paths relative to the manifest's folder (or ``root``). A folder holding
  a ``spurbench curate`` export (``manifest.csv`` beside ``datasheet.json``) is read through
  its manifest, which keeps the true class names its folder names encode.

Labels given as ImageNet indices (or CounterAnimal folder indices) index the ImageNet-1k class
list, so the 1-vs-1000 and 1-vs-20 protocols apply; otherwise the label space is the dataset's
own class names and only 1-vs-N applies.

Whatever the layout, ambiguous input is refused rather than guessed at, since every guess
changes the numbers: folders holding both images and sub-folders (which images count?), images
below group folders, a label column mixing indices and names, class or group spellings that
differ only in case, one file listed under two spellings, and links leaving the dataset root
(unless ``allow_outside_root``). System folders that operating systems, NAS boxes and archivers
leave behind (``.*``, ``@eaDir``, ``__MACOSX``, ...) are skipped: they are never data.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from spurbench.data.classes import (
    ClassList,
    imagenet_classes,
    imagenet_index_of,
    imagenet_spellings,
    name_key,
    read_class_file,
)
from spurbench.data.dataset import COMMON, COUNTER, ImageDataset, SourceColumns
from spurbench.errors import DatasetError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".jfif"}
_INDEXED = re.compile(r"^(\d{1,4})[ _-]+(.+)$")
_PAIRED = re.compile(r"^(common|counter)[-_](.+)$", re.IGNORECASE)
_INTEGER = r"[+-]?\d+"
#: Folder and file names that file systems, NAS boxes and archivers add (compared lower-case);
#: names starting with ``.`` or ``@`` (``.DS_Store``, ``@eaDir``, ``@Recycle``) are also skipped.
SYSTEM_NAMES = frozenset(
    {"__macosx", "$recycle.bin", "system volume information", "lost+found", "#recycle",
     "#snapshot", "thumbs.db", "desktop.ini"}
)  # fmt: skip
#: The file that marks a folder as a ``spurbench curate`` export.
EXPORT_MARKER = "datasheet.json"


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
        export = manifest.is_file() and (path / EXPORT_MARKER).is_file()
        if export or (manifest.is_file() and not _has_class_folders(path)):
            ds = load_manifest(
                manifest, name_set=name_set, classes=classes, allow_outside_root=allow_outside_root
            )
            if export:  # named after its folder, like any other folder dataset
                ds.name = path.resolve().name
        else:
            ds = load_folder(path, name_set=name_set, allow_outside_root=allow_outside_root)
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


def is_system_name(name: str) -> bool:
    """Hidden or system entries (``.DS_Store``, ``@eaDir``, ``__MACOSX``): never data."""
    return name.startswith((".", "@")) or name.lower() in SYSTEM_NAMES


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
    return any(p.is_dir() and not is_system_name(p.name) for p in path.iterdir())


def _listing(folder: Path, root: Path, allow_outside_root: bool) -> tuple[list[Path], list[Path]]:
    """The (sub-folders, image files) of ``folder``, sorted, system entries skipped.

    Entries named like images that are not regular files (a FIFO ``x.jpg``) are kept: decoding
    skips them with a reason, as for manifests. Links leaving ``root`` are refused.
    """
    folders, images = [], []
    for p in sorted(folder.iterdir()):
        if is_system_name(p.name):
            continue
        if p.is_dir():
            folders.append(p)
        elif p.suffix.lower() in IMAGE_SUFFIXES:
            images.append(p)
        else:
            continue
        if p.is_symlink():  # ``folder`` itself was checked: only a link can lead elsewhere
            _inside_root(p, root, allow_outside_root, f"'{p.relative_to(root).as_posix()}'")
    return folders, images


def load_folder(
    root: str | Path, *, name_set: str = "openai", allow_outside_root: bool = False
) -> ImageDataset:
    """Class folders with optional group sub-folders (CounterAnimal's layout is a special case).

    A folder holds images or sub-folders, never both, and images sit at most two levels down
    (``<class>/<group>/<image>``); anything else is refused, naming the folder.
    """
    root = Path(root).expanduser().resolve()
    class_dirs, _ = _listing(root, root, allow_outside_root)
    if not class_dirs:
        raise DatasetError(f"{root} holds no class folders.")
    labels = [imagenet_label(d.name) for d in class_dirs]
    imagenet = all(v is not None for v in labels)
    if not imagenet:
        _refuse_spelling_variants([d.name for d in class_dirs], "Class folders")
    classes = (
        imagenet_classes(name_set)
        if imagenet
        else ClassList(tuple(d.name for d in class_dirs), None, "custom")
    )
    rows = []
    for k, class_dir in enumerate(class_dirs):
        label = labels[k] if imagenet else k
        group_dirs, top_images = _listing(class_dir, root, allow_outside_root)
        if group_dirs and top_images:
            raise DatasetError(
                f"Class folder '{class_dir.name}' holds both images and sub-folders "
                f"({_some(g.name for g in group_dirs)}): it is unclear which images count. "
                "Put every image in a group folder, or move the sub-folders out."
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
        _refuse_spelling_variants(
            [_group_of(g.name)[0] for g in group_dirs], f"Group folders of '{class_dir.name}'"
        )
        units = [(g, *_group_of(g.name)) for g in group_dirs] or [(class_dir, "all", "")]
        for folder, group, background in units:
            files = (
                top_images
                if folder is class_dir
                else _group_images(folder, root, allow_outside_root)
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
    resolved = [Path(p).resolve() for p in table["path"]]
    _refuse_same_file_twice(table["image_id"], resolved, "Files")
    table["class_folder"] = table["image_id"].str.split("/").str[0]
    return ImageDataset(root.name, root, table, classes)


def _group_images(folder: Path, root: Path, allow_outside_root: bool) -> list[Path]:
    sub, images = _listing(folder, root, allow_outside_root)
    if sub:
        raise DatasetError(
            f"Group folder '{folder.relative_to(root).as_posix()}' holds sub-folders "
            f"({_some(p.name for p in sub)}): images must sit directly in group folders "
            "(<class>/<group>/<image>). Move or delete the sub-folders (thumbnails?)."
        )
    return images


def _some(items: Iterable[str], n: int = 3) -> str:
    """The first ``n`` items quoted, and how many more: one-line error messages."""
    items = list(items)
    shown = ", ".join(f"'{x}'" for x in items[:n])
    return shown + (f" and {len(items) - n} more" if len(items) > n else "")


def _rows(positions: Iterable[int], n: int = 8) -> str:
    """``row 3`` or ``rows 2, 5``: manifest rows as a spreadsheet numbers them (header: 1)."""
    rows = [str(i + 2) for i in positions]
    more = f" and {len(rows) - n} more" if len(rows) > n else ""
    return ("row " if len(rows) == 1 else "rows ") + ", ".join(rows[:n]) + more


def _refuse_spelling_variants(values: Sequence[str], what: str) -> None:
    """Refuse names that differ only in case or spacing (``OSTRICH``/``ostrich``).

    Such names would be separate classes (or groups) by accident, and neither spelling can be
    chosen for the user: the class name is what the prompts say.
    """
    spellings: dict[str, list[str]] = {}
    for v in dict.fromkeys(values):
        spellings.setdefault(name_key(v), []).append(v)
    clashes = [s for s in spellings.values() if len(s) > 1]
    if clashes:
        shown = "; ".join(" vs ".join(f"'{v}'" for v in s) for s in clashes[:3])
        raise DatasetError(
            f"{what} {shown} differ only in case or spacing: spell each one way "
            "(they would count as different classes or groups)."
        )


def _refuse_same_file_twice(names: pd.Series, resolved: Sequence[str], what: str) -> None:
    """One file, one image: ``./x.png`` and ``img/../x.png`` must not count twice."""
    key = pd.Series([str(p) for p in resolved], index=names.index)
    dup = key.duplicated(keep=False)
    if dup.any():
        first = key[dup].iloc[0]
        same = [i for i, k in enumerate(key) if k == first]
        raise DatasetError(
            f"{what} {_some(names.iloc[same])} are the same file ({_rows(same)}): "
            f"list each image once, or it counts {len(same)} times."
        )


def imagenet_label(folder_name: str) -> int | None:
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
    # one spelling per file: "./x.png", "img/../x.png" and "x.png" are one image
    written = df["image_id"]
    df["image_id"] = [posixpath.normpath(p) for p in written]
    df["path"] = [_manifest_file(base, p, allow_outside_root) for p in df["image_id"]]
    _refuse_same_file_twice(written, df["path"], f"Manifest {path.name} paths")
    df["label"], classes = labels_of(df, classes, name_set)
    df["class_name"] = [classes.names[i] for i in df["label"]]
    if "group" not in df.columns:
        df["group"] = "all"
    df["group"] = _groups(df["group"])
    return ImageDataset(path.stem, base, df, classes)


def _groups(column: pd.Series) -> list[str]:
    """Group cells as the folder layout reads them: ``Common``/``COUNTER`` are the paired
    groups whatever their case; an empty cell is ``all``; other spellings must agree."""
    text = column.astype(str).str.strip()
    out = ["all" if g == "" else g.lower() if g.lower() in (COMMON, COUNTER) else g for g in text]
    _refuse_spelling_variants(out, "Groups")
    return out


def _manifest_file(base: Path, rel: str, allow_outside_root: bool) -> str:
    """The absolute, link-resolved file a manifest path names (relative to ``base``)."""
    try:
        candidate = Path(rel).expanduser()
    except RuntimeError:  # "~nosuchuser/x.png"
        raise DatasetError(
            f"Manifest path {rel!r} names a home folder that does not exist."
        ) from None
    return str(_inside_root(base / candidate, base, allow_outside_root, f"Manifest path {rel!r}"))


def _inside_root(path: Path, root: Path, allow_outside_root: bool, shown: str) -> Path:
    """Resolve ``path``; refuse escapes from the dataset root (``..``, absolute, links)."""
    full = path.resolve()
    if not allow_outside_root and not full.is_relative_to(root):
        raise DatasetError(
            f"{shown} resolves to {full}, outside the dataset root {root}. "
            "Refused (it could read arbitrary files); pass allow_outside_root=True "
            "(--allow-outside-root) if you trust this dataset."
        )
    return full


def labels_of(
    df: pd.DataFrame, classes: ClassList | None, name_set: str
) -> tuple[list[int], ClassList]:
    """Type the label column by one rule: every cell an integer, or every cell a name.

    Integers index ``classes`` (ImageNet-1k unless a class list is given). Booleans are names
    ("True"/"False"), never 1/0; numbers that are not integers (``1.5``, ``inf``, ``1e400``)
    and columns mixing indices and names are refused with their rows rather than guessed at
    (one name among indices used to turn every index into a class *name*). A label column
    equal to a ``class_name`` column holds names, even digits: that is how a ``curate export``
    writes a custom class named ``7``.
    """
    raw = df["label"]
    if pd.api.types.is_bool_dtype(raw):
        raw = raw.astype(str)
    if pd.api.types.is_numeric_dtype(raw):
        values = raw.to_numpy(dtype=float)
        odd = np.flatnonzero(~(np.isfinite(values) & (values == np.round(values))))
        if len(odd):
            raise DatasetError(
                f"Labels must be integer class indices or names, not "
                f"{_some(str(values[i]) for i in odd)} ({_rows(odd)})."
            )
        return _indices([int(v) for v in values], classes, name_set, df)
    text = raw.astype(str).str.strip()
    if (text == "").any():
        raise DatasetError(
            f"{int((text == '').sum())} manifest rows have an empty label "
            f"({_rows(np.flatnonzero(text == ''))})."
        )
    written_as_names = "class_name" in df.columns and text.equals(
        df["class_name"].astype(str).str.strip()
    )
    integer = text.str.fullmatch(_INTEGER).to_numpy()
    number = pd.to_numeric(text, errors="coerce").notna().to_numpy() & ~integer
    if not written_as_names:
        if number.any():
            odd = np.flatnonzero(number)
            raise DatasetError(
                f"Labels must be integer class indices or names, not numbers such as "
                f"{_some(text.iloc[odd].unique())} ({_rows(odd)})."
            )
        if integer.all():
            return _indices([int(v) for v in text], classes, name_set, df)
        if integer.any():
            indices_first = integer.sum() > len(text) / 2
            odd = np.flatnonzero(~integer if indices_first else integer)
            kinds = ("class indices", "names") if indices_first else ("names", "class indices")
            raise DatasetError(
                f"The label column mixes {kinds[0]} and {kinds[1]}: "
                f"{_some(text.iloc[odd].unique())} ({_rows(odd)}). Write every label as a class "
                "index, or every label as a class name."
            )
    names = text.tolist()
    if classes is None:
        _refuse_spelling_variants(names, "Labels")
        classes = ClassList(tuple(sorted(set(names))), None, "custom")
    index = {n: i for i, n in enumerate(classes.names)}
    unknown = sorted({n for n in names if n not in index})
    if unknown:
        by_key = {name_key(n): n for n in classes.names}
        hints = [f"'{n}' (did you mean '{by_key[name_key(n)]}'?)" for n in unknown
                 if name_key(n) in by_key]  # fmt: skip
        raise DatasetError(
            f"Labels not in the class list: {_some(hints or unknown, 10)}."
            if hints
            else f"Labels not in the class list: {unknown[:10]}."
        )
    return [index[n] for n in names], classes


def _indices(
    ints: list[int], classes: ClassList | None, name_set: str, df: pd.DataFrame
) -> tuple[list[int], ClassList]:
    """Check integer labels against the class list (and a ``class_name`` column, if any)
    before they become array indices."""
    classes = classes or imagenet_classes(name_set)
    out_of_range = sorted({i for i in ints if not 0 <= i < len(classes)})
    if out_of_range:
        raise DatasetError(
            f"Integer labels {out_of_range[:10]} are outside the class list of "
            f"{len(classes)} classes (integers are ImageNet indices unless --classes is given)."
        )
    if "class_name" in df.columns:
        _check_class_names(ints, df["class_name"].astype(str).tolist(), classes)
    return ints, classes


def _check_class_names(ints: list[int], given: list[str], classes: ClassList) -> None:
    """A ``class_name`` column must name the class each integer label indexes.

    Otherwise the integers were meant for another class list (a custom export read as ImageNet
    indices says "tench" for "heron"). ImageNet classes may be spelled as in either name set.
    """
    ok: dict[tuple[int, str], bool] = {}
    odd = []
    for row, (i, name) in enumerate(zip(ints, given, strict=True)):
        if not name.strip():
            continue
        key = (i, name_key(name))
        if key not in ok:
            spellings = (
                imagenet_spellings(i) if classes.is_imagenet else {name_key(classes.names[i])}
            )
            ok[key] = key[1] in spellings
        if not ok[key]:
            odd.append(row)
    if odd:
        r = odd[0]
        raise DatasetError(
            f"{_rows(odd).capitalize()}: integer labels that the class_name column contradicts: "
            f"label {ints[r]} is '{classes.names[ints[r]]}' in the class list, class_name says "
            f"'{given[r]}'. Integer labels index ImageNet-1k unless --classes is given: write "
            "the labels as class names, pass --classes, or fix the class_name column."
        )
