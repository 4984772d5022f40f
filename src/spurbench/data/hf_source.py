"""Hugging Face datasets: ``hf:org/name[:config][@split]`` and folders saved with ``datasets``.

Hub datasets load with ``datasets.load_dataset`` (prepared once into the Hugging Face cache as
Arrow files; ``hf:`` also takes a local clone of a hub repository, e.g. a folder of Parquet
files), folders written by ``save_to_disk`` with ``load_from_disk``. Either way the data lives
in Arrow files on disk, memory-mapped: spurbench reads the label and group columns, and each
image cell only when it is encoded (rows are located as ``arrow://row:column:file``, see
:mod:`.members`). Nothing is held in memory beyond those columns and one batch of images.

Columns are detected: the image is the first ``Image`` feature (or a column named ``image`` /
``img``), the label the first ``ClassLabel`` (or ``label`` / ``labels``), the group a column
named ``group``; ``SourceColumns`` (``--image-column/--label-column/--group-column``) names
them instead. ``ClassLabel`` names become the class list.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd

from spurbench.data.classes import ClassList
from spurbench.data.dataset import ImageDataset, SourceColumns
from spurbench.data.members import arrow_locator
from spurbench.data.sources import build_dataset, missing_library
from spurbench.errors import DatasetError

PREFIX = "hf:"
_SPEC = re.compile(r"^(?P<name>[^:@]+)(?::(?P<config>[^@]+))?(?:@(?P<split>.+))?$")
#: Split chosen when the dataset has several and none is named (evaluation sets first).
PREFERRED_SPLITS = ("test", "validation", "val")
_OFFLINE_HINT = (
    "To use a local copy, pass -d hf:/path/to/clone (a clone or `hf download --repo-type "
    "dataset` of the repository), or -d a folder written by `Dataset.save_to_disk`; a dataset "
    "already in your Hugging Face cache loads with HF_DATASETS_OFFLINE=1."
)


def is_saved_dataset(path: Path) -> bool:
    """True for a folder written by ``Dataset.save_to_disk`` or ``DatasetDict.save_to_disk``."""
    return (path / "dataset_dict.json").is_file() or (
        (path / "state.json").is_file() and (path / "dataset_info.json").is_file()
    )


def is_image_parquet(path: Path) -> bool:
    """True for a Parquet file of images (no ``path`` column, an image-bytes struct column)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except Exception:
        return False
    if "path" in schema.names:
        return False  # a manifest
    return any(pa.types.is_struct(f.type) and f.type.get_field_index("bytes") >= 0 for f in schema)


def open_hf(
    source: str | Path,
    *,
    split: str | None = None,
    columns: SourceColumns | None = None,
    classes: ClassList | None = None,
    name_set: str = "openai",
) -> ImageDataset:
    """Open ``hf:org/name[:config][@split]`` or a ``save_to_disk`` folder as an ImageDataset."""
    try:
        import datasets
    except ImportError:
        raise missing_library("datasets", "hf") from None
    text = str(source)
    if text.startswith(PREFIX):
        m = _SPEC.match(text[len(PREFIX) :])
        if not m:
            raise DatasetError(f"{text!r} is not hf:org/name[:config][@split].")
        name, config = m.group("name"), m.group("config")
        split = m.group("split") or split
        loaded = _load_hub(datasets, name, config, split)
        label = name
    elif Path(text).suffix.lower() in (".parquet", ".pq"):
        path = Path(text).expanduser().resolve()
        loaded = _load_hub(datasets, "parquet", None, "train", data_files=str(path))
        label, split = path.stem, split or ""
    else:
        path = Path(text).expanduser().resolve()
        try:
            loaded = datasets.load_from_disk(str(path))
        except Exception as e:
            raise DatasetError(f"Could not read the saved dataset {path}: {e}") from None
        label = path.name
    ds, split = _one_split(loaded, split, text)
    return _to_image_dataset(ds, label, split, columns or SourceColumns(), classes, name_set)


def _load_hub(
    datasets: Any, name: str, config: str | None, split: str | None, **kwargs: Any
) -> Any:
    try:
        return datasets.load_dataset(name, config, split=split, **kwargs)
    except Exception as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DatasetError(
            f"Could not load {name!r} with `datasets.load_dataset` ({reason[:300]}). "
            + _OFFLINE_HINT
        ) from None


def _one_split(loaded: Any, split: str | None, text: str) -> tuple[Any, str]:
    """The one split to evaluate from a Dataset or a DatasetDict."""
    if not hasattr(loaded, "keys"):  # a single Dataset
        return loaded, split or str(getattr(loaded, "split", None) or "")
    names = list(loaded.keys())
    if split is None:
        split = next((s for s in PREFERRED_SPLITS if s in names), None)
        if split is None and len(names) == 1:
            split = names[0]
    if split not in names:
        raise DatasetError(f"{text} has splits {names}; choose one with @split or --split.")
    return loaded[split], split


def _to_image_dataset(
    ds: Any,
    name: str,
    split: str,
    columns: SourceColumns,
    classes: ClassList | None,
    name_set: str,
) -> ImageDataset:
    import datasets

    if getattr(ds, "_indices", None) is not None:  # a selection: make rows match the files
        ds = ds.flatten_indices()
    features = ds.features
    image = columns.image or _detect(
        features, datasets.Image, ("image", "img"), "image", "--image-column"
    )
    label = columns.label or _detect(
        features, datasets.ClassLabel, ("label", "labels"), "label", "--label-column"
    )
    group = columns.group or ("group" if "group" in features else None)
    for column in (image, label, group):
        if column is not None and column not in features:
            raise DatasetError(f"The dataset has no column {column!r}; it has {list(features)}.")
    files = _arrow_files(ds)
    locators = [arrow_locator(f, row, image) for f, n in files for row in range(n)]
    table = pd.DataFrame(
        {
            "image_id": [f"{split or 'data'}/{i}" for i in range(len(locators))],
            "path": locators,
            "label": ds.data.column(label).to_pylist(),
        }
    )
    for target, column in (("group", group), ("background", "background")):
        if column is not None and column in features:
            table[target] = [str(v) for v in ds.data.column(column).to_pylist()]
    if table["label"].isna().any():
        raise DatasetError(f"{int(table['label'].isna().sum())} rows have no label.")
    feature = features[label]
    names = list(feature.names) if isinstance(feature, datasets.ClassLabel) else None
    table["split"] = split
    root = Path(files[0][0]).parent
    return build_dataset(name, root, table, class_names=names, classes=classes, name_set=name_set)


def _detect(features: Any, kind: type, names: tuple[str, ...], what: str, option: str) -> str:
    typed = [c for c, f in features.items() if isinstance(f, kind)]
    found = typed[:1] or [c for c in names if c in features]
    if not found:
        raise DatasetError(f"Found no {what} column among {list(features)}; name it with {option}.")
    return found[0]


def _arrow_files(ds: Any) -> list[tuple[str, int]]:
    """The dataset's Arrow files with their row counts, in row order."""
    import pyarrow as pa

    files = [c["filename"] for c in ds.cache_files]
    counts = [pa.ipc.open_stream(pa.memory_map(f)).read_all().num_rows for f in files]
    if not files or sum(counts) != len(ds):
        raise DatasetError(
            "This dataset is not backed by Arrow files on disk (built in memory?); "
            "save it with `save_to_disk` and pass that folder."
        )
    return list(zip(files, counts, strict=True))
