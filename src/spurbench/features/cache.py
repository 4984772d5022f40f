"""Encode images once and keep the features on disk.

Image features are cached per (model fingerprint, preprocessing, image files) in shards of a fixed
number of rows, each written atomically. An evaluation killed mid-way leaves complete shards and
a rerun encodes only the missing ones; a second protocol, a probe or a report on the same data
never calls the image encoder again. Memory is bounded by one shard, not by the dataset.

The key covers the images' *content* (a hash of their bytes), so a file replaced by ``cp -p``,
``rsync -t`` or ``tar x`` with its size and mtime kept is encoded again. The trade-off: each
file is read once more to hash it, and the hash is remembered under the file's identity (path,
size, mtime, inode, ctime), so reruns only stat the files; a rewrite keeping all five (ctime
needs the system clock moved) would go unnoticed. Caches keyed the older way are not read:
their features are recomputed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import time
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, default_collate

from spurbench.atomic import DiskFullError, is_disk_full, write_atomic, write_json_atomic
from spurbench.data.dataset import ImageDataset
from spurbench.data.images import ImageFiles
from spurbench.errors import Interrupted, SpurbenchError
from spurbench.features.content import content_digest
from spurbench.models.base import Features, ModelAdapter
from spurbench.models.engine import image_encoder
from spurbench.models.precision import forward_context
from spurbench.paths import default_cache_dir  # re-exported: callers import it here
from spurbench.progress import progress_bar

#: Rows per shard; ``SPURBENCH_SHARD_ROWS`` overrides it (smaller shards lose less to a kill).
SHARD_ROWS = 512
#: Temporary files a killed writer left behind are removed once they are this old (seconds);
#: younger ones may belong to a process writing the same shard right now.
STALE_TMP_S = 6 * 3600

#: One shard's arrays: pre_head (rows, d_H), embedding (rows, d_E), per-row error reason or ''.
Shard = tuple[np.ndarray, np.ndarray, list[str]]
#: A shard to encode: its index in the cache folder and its row range (start, stop).
ShardUnit = tuple[int, tuple[int, int]]
#: Encodes the shards missing from the cache, yielding (index, shard) in any order and advancing
#: the progress bar (second argument) by the rows done. :func:`encode_dataset` alone writes the
#: shards, whoever computes them: the default runs the model in this process, the Ray backend
#: (:mod:`spurbench.features.ray_backend`) on a cluster.
ShardEncoder = Callable[[list[ShardUnit], Any], Iterable[tuple[int, Shard]]]


@dataclass
class FeatureSet:
    """Features of every row of a dataset (rows that failed to decode are flagged, not dropped)."""

    pre_head: np.ndarray  # (n, d_H) float32
    embedding: np.ndarray  # (n, d_E) float32
    ok: np.ndarray  # (n,) bool
    errors: list[str]  # (n,) '' or the reason the image was skipped
    key: str


def feature_key(
    model: ModelAdapter,
    dataset: ImageDataset,
    layer: str = "final",
    cache_dir: str | Path | None = None,
) -> str:
    """The cache folder's name: model, preprocessing, precision, layer and the images' *bytes*.

    Files are identified by content, not by (path, size, mtime), which copy tools preserve
    across a change (see :mod:`spurbench.features.content` for the cost and its limits).
    """
    images = content_digest(dataset.table["path"].tolist(), Path(cache_dir or default_cache_dir()))
    parts = [model.fingerprint, model.preprocess_cfg.digest(), images, layer, "content-v1"]
    if model.precision != "fp32":  # fp32 keeps the key it always had: old caches stay valid
        parts.append(model.precision)
    if model.engine != "eager":  # another engine rounds differently: its own entry
        parts.append(model.engine)
    if model.decode != "exact":
        parts.append(f"decode-{model.decode}")
    payload = json.dumps(parts)
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
    decode_workers: int | None = None,
    shard_rows: int | None = None,
    show_progress: bool = True,
    shard_encoder: ShardEncoder | None = None,
) -> FeatureSet:
    """Features of every image of ``dataset``, from the cache where present.

    ``shard_rows`` defaults to :func:`shard_rows_default`; it is rounded down to a multiple of
    ``batch_size`` so that batches never straddle shards (a resumed run then feeds the encoder
    exactly the batches an uninterrupted one would, and gets bit-identical features).
    ``decode_workers`` DataLoader processes decode and preprocess images while the model runs;
    0 decodes each batch in this process, on every core, between forwards; None picks
    :func:`default_decode_workers`. Features do not depend on it.
    ``shard_encoder`` computes the missing shards elsewhere (see :data:`ShardEncoder`); it is
    called only when some shard is missing, and each shard it yields is saved as it arrives.
    """
    if shard_rows is None:
        shard_rows = shard_rows_default()
    if decode_workers is None:
        decode_workers = default_decode_workers(gpu=_on_cuda(model))
    key = feature_key(model, dataset, cache_dir=cache_dir)
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
        encode = shard_encoder or (
            lambda units, bar: _encode_locally(
                model, dataset, units, batch_size, decode_workers, bar
            )
        )
        rows_todo = sum(shards[i][1] - shards[i][0] for i in todo)
        try:
            with progress_bar(
                f"encode {model.name}", total=rows_todo, enabled=show_progress
            ) as bar:
                for i, shard in encode([(i, shards[i]) for i in todo], bar):
                    _save_shard(folder / f"shard-{i:05d}.npz", shards[i], *shard)
                    loaded[i] = shard
        except KeyboardInterrupt:
            # what is on disk, counted there: Ctrl-C can land inside the save or just after
            # it (shards are renamed into place whole, so a file present is a complete shard)
            kept = sum((folder / f"shard-{i:05d}.npz").is_file() for i in range(len(shards)))
            raise Interrupted(
                f"{kept} of {len(shards)} feature shards of {model.name} kept in "
                f"{folder}; rerun the same command to resume"
            ) from None
    pre = np.concatenate([loaded[i][0] for i in range(len(shards))])
    emb = np.concatenate([loaded[i][1] for i in range(len(shards))])
    errors = [e for i in range(len(shards)) for e in loaded[i][2]]
    ok = np.array([e == "" for e in errors])
    return FeatureSet(pre, emb, ok, errors, key)


def image_files(model: ModelAdapter, paths: list[str]) -> ImageFiles:
    """The dataset's files decoded and preprocessed the way ``model`` expects."""
    return ImageFiles(paths, model.preprocess, model.preprocess_cfg.size, model.decode)


def default_decode_workers(gpu: bool = False) -> int:
    """Decode workers when the caller names none: 0 on CPU, up to 8 for a GPU.

    On CPU the forward already runs on every core (torch's intra-op threads), so a decoder
    process running beside it only preempts one of those threads, and the others wait for it at
    the next synchronisation point. Decoding each batch between forwards, on a thread per core,
    keeps every core busy with one thing at a time (measured on 2 cores: 77 % of the
    forward-only limit with 2 worker processes, ~94 % between forwards; ``bench_speed.py``
    shows both on any machine). A GPU runs the forward without the CPU, which is then free to
    decode the next batches meanwhile: as many worker processes as the machine can spare.
    ``SPURBENCH_WORKERS`` overrides the choice.
    """
    raw = os.environ.get("SPURBENCH_WORKERS", "").strip()
    if raw:
        try:
            value = int(raw)
        except ValueError:
            value = -1
        if value < 0:
            raise SpurbenchError(f"SPURBENCH_WORKERS must be an integer ≥ 0, not {raw!r}.")
        return value
    if not gpu:
        return 0
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return min(8, cpus - 1)


def _encode_locally(
    model: ModelAdapter,
    dataset: ImageDataset,
    units: list[ShardUnit],
    batch_size: int,
    num_workers: int,
    bar,
) -> Iterator[tuple[int, Shard]]:
    """The default :data:`ShardEncoder`: every missing shard, in order, in this process.

    One DataLoader serves all the shards, so its decode workers start once per call and keep
    decoding across shard boundaries. If workers cannot be used (no ``fork``/``spawn`` in a
    sandbox, a daemonic parent process, a worker killed by the OOM killer), the shards not yet
    finished are encoded again without workers: the batches are the same, and so are the
    features, bit for bit.
    """
    files = image_files(model, dataset.table["path"].tolist())
    pending = list(units)
    while pending:
        rows = sum(stop - start for _, (start, stop) in pending)
        workers = num_workers if rows > batch_size else 0  # one batch: nothing to overlap
        try:
            for i, shard in _encode_units(model, files, list(pending), batch_size, workers, bar):
                pending.pop(0)
                yield i, shard
        except _LoaderFailed as e:
            if workers == 0:
                raise e.__cause__ from None  # the loader's own error, unwrapped
            warnings.warn(
                f"DataLoader workers failed ({type(e.__cause__).__name__}: {e.__cause__}); "
                "decoding the remaining images in the main process instead.",
                RuntimeWarning,
                stacklevel=2,
            )
            num_workers = 0


def _encode_rows(
    model: ModelAdapter, files: ImageFiles, rows: range, batch_size: int, num_workers: int, bar
) -> Shard:
    """Features of ``files[rows]`` (a contiguous range), in batches of ``batch_size``."""
    units: list[ShardUnit] = [(0, (rows.start, rows.stop))]
    try:
        ((_, shard),) = list(_encode_units(model, files, units, batch_size, num_workers, bar))
    except _LoaderFailed as e:
        raise e.__cause__ from None  # the loader's own error, unwrapped
    return shard


class _LoaderFailed(Exception):
    """The DataLoader (not the model) raised: its workers could not start or died."""


def _encode_units(
    model: ModelAdapter,
    files: ImageFiles,
    units: list[ShardUnit],
    batch_size: int,
    num_workers: int,
    bar,
) -> Iterator[tuple[int, Shard]]:
    """Encode each unit's rows in order, yielding each unit's arrays as soon as it is complete.

    Batches are cut per unit (a batch never straddles two shards), so the model sees exactly
    the batches it would see shard by shard. Without workers, each batch is decoded in this
    process just before its forward (:func:`_decode_between_forwards`).
    """
    batches = [
        list(range(s, min(s + batch_size, stop)))
        for _, (start, stop) in units
        for s in range(start, stop, batch_size)
    ]
    try:
        batch_iter = (
            iter(
                DataLoader(
                    files,
                    batch_sampler=batches,
                    num_workers=num_workers,
                    pin_memory=_on_cuda(model),  # page-locked batches: faster, async host-to-GPU
                    multiprocessing_context=_worker_context(),
                )
            )
            if num_workers
            else _decode_between_forwards(files, batches, pin=_on_cuda(model))
        )
    except Exception as e:  # workers could not be started
        raise _LoaderFailed from e
    encode = _halving_on_oom(image_encoder(model))
    try:
        for i, (start, stop) in units:
            pres, embs, errors = [], [], []
            for _ in range(-(-(stop - start) // batch_size)):
                try:
                    _, images, reasons = next(batch_iter)
                except Exception as e:  # ImageFiles never raises: this is the loader itself
                    raise _LoaderFailed from e
                with forward_context(_device(model), model.precision):
                    feats = encode(images)
                pres.append(feats.pre_head.float().numpy())  # stored as float32 at any precision
                embs.append(feats.embedding.float().numpy())
                errors += list(reasons)
                bar.advance(len(reasons))
            yield i, (np.concatenate(pres), np.concatenate(embs), errors)
    finally:
        close = getattr(batch_iter, "close", None)
        if close is not None:
            close()  # the decode threads stop with the pass, however it ends


def _halving_on_oom(
    encode: Callable[[torch.Tensor], Features],
) -> Callable[[torch.Tensor], Features]:
    """``encode``, splitting a batch that does not fit in GPU memory into halves (then
    quarters...) for the rest of the pass, with a warning each time it halves.

    A batch size that suits ViT-B-32 can exhaust a small GPU with ViT-L-14; the features of an
    image do not depend on the batch it is in, so a run that backs off gives the same results
    (up to the float rounding of a different GEMM shape) instead of dying mid-dataset.
    """
    parts = 1

    def encode_fitting(images: torch.Tensor) -> Features:
        nonlocal parts
        while True:
            try:
                chunks = [encode(chunk) for chunk in images.tensor_split(min(parts, len(images)))]
                break
            except torch.cuda.OutOfMemoryError:
                if parts >= len(images):
                    raise
                parts *= 2
                torch.cuda.empty_cache()
                warnings.warn(
                    f"Out of GPU memory at {len(images)} images per forward; encoding each "
                    f"batch in {parts} parts (--batch-size {max(1, len(images) // parts)} "
                    "avoids this).",
                    RuntimeWarning,
                    stacklevel=2,
                )
        if len(chunks) == 1:
            return chunks[0]
        return Features(
            torch.cat([c.pre_head for c in chunks]), torch.cat([c.embedding for c in chunks])
        )

    return encode_fitting


def _decode_between_forwards(
    files: ImageFiles, batches: list[list[int]], pin: bool = False
) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[str]]]:
    """Each batch decoded when asked for, by one thread per torch thread, collated as the
    DataLoader collates it.

    Pillow releases the GIL while it decodes and resizes, so the threads decode in parallel;
    they run only while the model waits for the batch, so they never compete with the forward
    for a core. Each thread's per-image tensor work runs on one torch thread (for one image,
    the intra-op pool's hand-offs cost more than the work).
    """
    with ThreadPoolExecutor(max(1, torch.get_num_threads()), "spurbench-decode") as pool:
        for batch in batches:
            with _single_thread(True):
                batch_out = default_collate(list(pool.map(files.__getitem__, batch)))
            if pin:
                batch_out[1] = batch_out[1].pin_memory()
            yield tuple(batch_out)


def _device(model: ModelAdapter) -> torch.device:
    return torch.device(getattr(model, "device", None) or "cpu")


def _on_cuda(model: ModelAdapter) -> bool:
    device = getattr(model, "device", None)
    return torch.cuda.is_available() and getattr(device, "type", str(device)) == "cuda"


def _worker_context() -> str | None:
    """``fork`` where it exists (Linux): workers start in milliseconds, without re-importing
    torch as ``spawn`` and ``forkserver`` workers would; elsewhere the platform's default."""
    return "fork" if sys.platform == "linux" else None


@contextmanager
def _single_thread(enabled: bool) -> Iterator[None]:
    if not enabled:
        yield
        return
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
