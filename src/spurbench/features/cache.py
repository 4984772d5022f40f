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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from spurbench.atomic import write_atomic, write_json_atomic
from spurbench.data.dataset import ImageDataset
from spurbench.data.images import ImageFiles
from spurbench.models.base import ModelAdapter
from spurbench.progress import progress_bar

SHARD_ROWS = 512


@dataclass
class FeatureSet:
    """Features of every row of a dataset (rows that failed to decode are flagged, not dropped)."""

    pre_head: np.ndarray  # (n, d_H) float32
    embedding: np.ndarray  # (n, d_E) float32
    ok: np.ndarray  # (n,) bool
    errors: list[str]  # (n,) '' or the reason the image was skipped
    key: str


def default_cache_dir() -> Path:
    import os

    return Path(os.environ.get("SPURBENCH_CACHE", Path.home() / ".cache" / "spurbench"))


def feature_key(model: ModelAdapter, dataset: ImageDataset, layer: str = "final") -> str:
    payload = json.dumps(
        [model.fingerprint, model.preprocess_cfg.digest(), dataset.images_digest(), layer]
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def _save_shard(path: Path, pre: np.ndarray, emb: np.ndarray, errors: list[str]) -> None:
    def write(fh: io.BufferedWriter) -> None:
        np.savez(fh, pre_head=pre, embedding=emb, errors=np.array(errors, dtype=object).astype(str))

    write_atomic(path, write)


def _load_shard(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            return z["pre_head"], z["embedding"], [str(e) for e in z["errors"]]
    except (OSError, ValueError, KeyError, EOFError):
        return None  # an unreadable shard is recomputed, never trusted


def encode_dataset(
    model: ModelAdapter,
    dataset: ImageDataset,
    cache_dir: str | Path | None = None,
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    shard_rows: int = SHARD_ROWS,
    show_progress: bool = True,
) -> FeatureSet:
    """Features of every image of ``dataset``, from the cache where present."""
    key = feature_key(model, dataset)
    folder = Path(cache_dir or default_cache_dir()) / "features" / key
    folder.mkdir(parents=True, exist_ok=True)
    n = len(dataset)
    shard_rows = max(batch_size, shard_rows - shard_rows % batch_size)
    shards = [(s, min(s + shard_rows, n)) for s in range(0, n, shard_rows)]
    loaded: dict[int, tuple[np.ndarray, np.ndarray, list[str]]] = {}
    todo = []
    for i, _ in enumerate(shards):
        shard = _load_shard(folder / f"shard-{i:05d}.npz")
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
                _save_shard(folder / f"shard-{i:05d}.npz", *loaded[i])
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
