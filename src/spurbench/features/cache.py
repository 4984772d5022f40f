"""Encode images once and keep the features on disk.

Image features are cached per (model fingerprint, preprocessing, image files) in shards of a fixed
number of rows, each written atomically. An evaluation killed mid-way leaves complete shards and
a rerun encodes only the missing ones; a second protocol, a probe or a report on the same data
never calls the image encoder again. Memory is bounded by one shard, not by the dataset.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from spurbench.atomic import DiskFullError, is_disk_full, write_atomic, write_json_atomic
from spurbench.data.dataset import ImageDataset
from spurbench.data.images import ImageFiles
from spurbench.errors import SpurbenchError
from spurbench.models.base import ModelAdapter
from spurbench.progress import progress_bar

#: Rows per shard; ``SPURBENCH_SHARD_ROWS`` overrides it (smaller shards lose less to a kill).
SHARD_ROWS = 512
#: Temporary files a killed writer left behind are removed once they are this old (seconds);
#: younger ones may belong to a process writing the same shard right now.
STALE_TMP_S = 6 * 3600


@dataclass
class FeatureSet:
    """Features of every row of a dataset (rows that failed to decode are flagged, not dropped)."""

    pre_head: np.ndarray  # (n, d_H) float32
    embedding: np.ndarray  # (n, d_E) float32
    ok: np.ndarray  # (n,) bool
    errors: list[str]  # (n,) '' or the reason the image was skipped
    key: str


def default_cache_dir() -> Path:
    return Path(os.environ.get("SPURBENCH_CACHE", Path.home() / ".cache" / "spurbench"))


def feature_key(model: ModelAdapter, dataset: ImageDataset, layer: str = "final") -> str:
    payload = json.dumps(
        [model.fingerprint, model.preprocess_cfg.digest(), dataset.images_digest(), layer]
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def shard_rows_default() -> int:
    """``SPURBENCH_SHARD_ROWS`` if set (a positive integer), else :data:`SHARD_ROWS`."""
    raw = os.environ.get("SPURBENCH_SHARD_ROWS", "").strip()
    if not raw:
        return SHARD_ROWS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise SpurbenchError(f"SPURBENCH_SHARD_ROWS must be a positive integer, not {raw!r}.")
    return value


def _save_shard(
    path: Path, rows: tuple[int, int], pre: np.ndarray, emb: np.ndarray, errors: list[str]
) -> None:
    def write(fh: io.BufferedWriter) -> None:
        np.savez(
            fh,
            rows=np.array(rows, dtype=np.int64),
            pre_head=pre,
            embedding=emb,
            errors=np.array(errors, dtype=object).astype(str),
        )

    write_atomic(path, write)


def _load_shard(
    path: Path, rows: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, list[str]] | None:
    """A shard's arrays if it is complete and covers exactly ``rows`` (start, stop), else None.

    Shards are recomputed, never trusted, when unreadable (a torn file after a power cut, disk
    corruption) or when they hold another row range: the shard size follows the batch size and
    ``SPURBENCH_SHARD_ROWS``, and a rerun with other settings must not splice misaligned rows.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            pre, emb = z["pre_head"], z["embedding"]
            errors = [str(e) for e in z["errors"]]
            stored = tuple(int(r) for r in z["rows"]) if "rows" in z.files else None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    n = rows[1] - rows[0]
    if (stored is not None and stored != rows) or not len(pre) == len(emb) == len(errors) == n:
        return None
    return pre, emb, errors


def _remove_stale_tmp(folder: Path) -> None:
    """Delete temporary shard files that a killed writer left, once they are surely orphaned."""
    now = time.time()
    for tmp in folder.glob(".shard-*.tmp"):
        try:
            if now - tmp.stat().st_mtime > STALE_TMP_S:
                tmp.unlink()
        except OSError:
            pass  # gone already, or not ours to delete


def encode_dataset(
    model: ModelAdapter,
    dataset: ImageDataset,
    cache_dir: str | Path | None = None,
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    shard_rows: int | None = None,
    show_progress: bool = True,
) -> FeatureSet:
    """Features of every image of ``dataset``, from the cache where present.

    ``shard_rows`` defaults to :func:`shard_rows_default`; it is rounded down to a multiple of
    ``batch_size`` so that batches never straddle shards (a resumed run then feeds the encoder
    exactly the batches an uninterrupted one would, and gets bit-identical features).
    """
    if shard_rows is None:
        shard_rows = shard_rows_default()
    key = feature_key(model, dataset)
    folder = Path(cache_dir or default_cache_dir()) / "features" / key
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        if is_disk_full(e):
            raise DiskFullError(folder, e) from e
        raise
    _remove_stale_tmp(folder)
    n = len(dataset)
    shard_rows = max(batch_size, shard_rows - shard_rows % batch_size)
    shards = [(s, min(s + shard_rows, n)) for s in range(0, n, shard_rows)]
    loaded: dict[int, tuple[np.ndarray, np.ndarray, list[str]]] = {}
    todo = []
    for i, rows in enumerate(shards):
        shard = _load_shard(folder / f"shard-{i:05d}.npz", rows)
        if shard is None:
            todo.append(i)
        else:
            loaded[i] = shard
    if todo:
        write_json_atomic(
            folder / "meta.json",
            {
                "model": model.describe(),
                "dataset": dataset.name,
                "n": n,
                "shard_rows": shard_rows,
            },
        )
        files = ImageFiles(
            dataset.table["path"].tolist(), model.preprocess, model.preprocess_cfg.size
        )
        rows_todo = sum(shards[i][1] - shards[i][0] for i in todo)
        with progress_bar(f"encode {model.name}", total=rows_todo, enabled=show_progress) as bar:
            for i in todo:
                start, stop = shards[i]
                loaded[i] = _encode_rows(
                    model, files, range(start, stop), batch_size, num_workers, bar
                )
                _save_shard(folder / f"shard-{i:05d}.npz", shards[i], *loaded[i])
    pre = np.concatenate([loaded[i][0] for i in range(len(shards))])
    emb = np.concatenate([loaded[i][1] for i in range(len(shards))])
    errors = [e for i in range(len(shards)) for e in loaded[i][2]]
    ok = np.array([e == "" for e in errors])
    return FeatureSet(pre, emb, ok, errors, key)


def _encode_rows(
    model: ModelAdapter, files: ImageFiles, rows: range, batch_size: int, num_workers: int, bar
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    subset = torch.utils.data.Subset(files, list(rows))
    loader = DataLoader(
        subset,
        batch_size=batch_size,
        num_workers=num_workers,
        shuffle=False,
        persistent_workers=False,
    )
    pres, embs, errors = [], [], []
    with torch.inference_mode():
        for _, images, reasons in loader:
            feats = model.encode_images(images)
            pres.append(feats.pre_head.numpy())
            embs.append(feats.embedding.numpy())
            errors += list(reasons)
            bar.advance(len(reasons))
    return np.concatenate(pres), np.concatenate(embs), errors
