"""Checks of a run's inputs that must pass before a model is loaded.

Loading a large model takes minutes (and may download gigabytes), and encoding a dataset takes
longer: an option typed wrong, a device the machine lacks, a cache folder that cannot be
written, a candidates file that is not JSON, or a dataset whose images are all missing must
stop the run first, as one message saying what to fix (a :class:`SpurbenchError`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from spurbench.data.dataset import ImageDataset
from spurbench.data.images import load_rgb
from spurbench.errors import DatasetError, SpurbenchError
from spurbench.evaluate.candidates import check_one_source
from spurbench.user_files import read_json_file

__all__ = [
    "check_batch_size",
    "check_cache_dir",
    "check_device",
    "check_readable",
    "check_run_inputs",
]

#: Images tried (in order, stopping at the first that decodes) before a run is let through
#: unchecked: enough to catch a manifest copied away from its images, cheap on any dataset.
MAX_DECODE_TRIES = 200


def check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise SpurbenchError(f"--batch-size must be at least 1, got {batch_size}.")


def check_device(device: str) -> None:
    """``cpu``, ``cuda``, ``cuda:N`` or ``mps``, and present on this machine."""
    import torch

    unknown = SpurbenchError(f"Unknown --device {device!r}: use cpu, cuda, cuda:N or mps.")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise unknown from None
    if dev.type == "cpu":
        return
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise SpurbenchError(f"--device {device}: this machine has no usable CUDA GPU.")
        if dev.index is not None and dev.index >= n:
            raise SpurbenchError(f"--device {device}: only {n} CUDA GPU(s) here (cuda:0..{n - 1}).")
        return
    if dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise SpurbenchError(f"--device {device}: MPS (Apple GPU) is not available here.")
        return
    raise unknown


def check_cache_dir(cache: Path) -> None:
    """The feature cache must be a folder this process can create files in."""
    if cache.exists() and not cache.is_dir():
        raise SpurbenchError(f"--cache-dir {cache} is a file; the feature cache needs a folder.")
    try:
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=cache):
            pass
    except OSError as e:
        raise SpurbenchError(
            f"--cache-dir {cache} cannot be written ({e.strerror or e}); choose another folder "
            "(or set SPURBENCH_CACHE)."
        ) from None


def check_readable(dataset: ImageDataset) -> None:
    """Refuse a dataset none of whose images decodes (before the model loads).

    Unreadable images are otherwise skipped one by one with a reason; a dataset where *every*
    image is unreadable (typically a manifest copied away from its images) has nothing to score.
    Images are tried in order until one decodes, so a readable dataset costs one decode; past
    :data:`MAX_DECODE_TRIES` failures the dataset is refused only if no file exists at all.
    """
    paths = [str(p) for p in dataset.table["path"]]
    if not paths:
        raise DatasetError(f"{dataset.name} holds no images.")
    first_reason = ""
    for p in paths[:MAX_DECODE_TRIES]:
        try:
            load_rgb(p)
            return
        except Exception as e:  # any decoder failure means "this one is unreadable"
            first_reason = first_reason or f"{type(e).__name__}: {str(e).splitlines()[0]}"[:200]
    missing = sum(not os.path.exists(p) for p in paths)
    if missing == len(paths):
        raise DatasetError(
            f"None of the {len(paths)} images of {dataset.name} exists (e.g. {paths[0]}); "
            "manifest paths are relative to the manifest's folder: was it moved away from "
            "its images?"
        )
    if len(paths) <= MAX_DECODE_TRIES:
        raise DatasetError(
            f"No image of {dataset.name} can be read ({missing} missing, "
            f"{len(paths) - missing} undecodable; first: {paths[0]}: {first_reason})."
        )


def check_run_inputs(
    dataset: ImageDataset,
    *,
    batch_size: int,
    device: str,
    cache: Path,
    candidates: str | Path | None,
    reference: object = None,
) -> None:
    """Everything :func:`spurbench.evaluate.evaluate` can check before loading a model."""
    check_one_source(reference, candidates)
    check_batch_size(batch_size)
    check_device(device)
    check_cache_dir(cache)
    if candidates is not None:
        read_json_file(candidates, "--candidates")
    check_readable(dataset)
