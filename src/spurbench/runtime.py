"""Where and how the image pass runs, as one typed value every stage receives.

A :class:`Runtime` gathers the options that decide *how fast* and *where* features are computed
(cache folder, batch size, decode workers, device, progress bars, the Ray backend) and the opt-in
extensions of the image pass that are recorded with every run (precision, engine, JPEG decode).
Evaluation, probes, counterfactuals, the suite and curation pass one object instead of a dozen
keywords each, so an option added here reaches every stage at once.

The public functions stay one call from a notebook: they take the common options as keywords
(``cache_dir=``, ``batch_size=``, ``classes=`` ...) and build the :class:`Runtime` and the
:class:`~spurbench.data.spec.DataSpec` with :func:`run_specs`.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spurbench.data.dataset import ImageDataset
from spurbench.data.spec import DataSpec
from spurbench.errors import SpurbenchError, closest

if TYPE_CHECKING:
    from spurbench.features.cache import FeatureSet, ShardEncoder
    from spurbench.models.base import ModelAdapter

__all__ = ["ENGINE_ENV", "PRECISION_ENV", "RENAMED", "Runtime", "run_specs", "runtime_from"]

#: Environment variables that override the ``auto`` defaults of the image pass, e.g.
#: ``SPURBENCH_PRECISION=fp32`` to pin a whole workflow (or a test suite) to the exact pass.
PRECISION_ENV = "SPURBENCH_PRECISION"
ENGINE_ENV = "SPURBENCH_ENGINE"
#: What stages that run only the exact image pass accept (``auto`` resolves to it there).
_EXACT = {"precision": "fp32", "engine": "eager", "decode": "exact", "backend": "local"}

#: Keywords of earlier releases and the option each became: ``num_workers`` was the DataLoader's
#: and ``workers`` Ray's, two names too close to tell apart.
RENAMED = {"num_workers": "decode_workers", "workers": "ray_workers"}


@dataclass(frozen=True)
class Runtime:
    """How a run computes features; none of these options changes a number except the recorded
    image-pass choices (``precision``, ``engine``, ``decode``).

    ``precision`` and ``engine`` default to ``auto``: the fastest of the exact pass and its
    alternative *on this machine*, measured once per architecture (what open_clip and
    clip_benchmark do on a GPU, and on a CPU only where it is measured faster). The choice is
    recorded with every run, labelled in every table, and agrees with the exact pass to within
    the bounds tests/models/test_precision.py asserts; ``fp32``/``eager`` reproduce bit for bit.

    Attributes:
        cache_dir: the feature cache (None: ``$SPURBENCH_CACHE`` or ``~/.cache/spurbench``).
        batch_size: images per forward pass.
        decode_workers: DataLoader processes decoding images (None: 0 on CPU, where each batch is
            decoded between forwards on every core; more on a GPU).
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        show_progress: progress bars on stderr.
        precision: the image pass's ``auto`` (default: measured per machine and architecture,
            see :mod:`spurbench.models.precision`), ``fp32`` (exact), or ``bf16``/``fp16``
            autocast; ``$SPURBENCH_PRECISION`` overrides the default. Recorded with every run.
        engine: the image tower's ``auto`` (default: measured, see
            :mod:`spurbench.models.engine`), ``eager`` PyTorch (exact) or ``onnx`` (ONNX
            Runtime, fp32 on CPU); ``$SPURBENCH_ENGINE`` overrides the default. Recorded.
        decode: ``exact`` (every pixel, the papers') or ``draft`` (large JPEGs decoded at a
            reduced DCT scale, see :func:`spurbench.data.images.load_rgb`); recorded.
        backend: where missing feature shards are encoded: ``local`` (this process) or ``ray``
            (work units on a Ray cluster; the features are bit-identical).
        address: the Ray cluster (``auto``, ``host:port``, ``ray://host:port``); None starts a
            local one with ``ray_workers`` CPUs.
        ray_workers: Ray encoder actors (None: as many as the cluster's CPUs allow).
    """

    cache_dir: str | Path | None = None
    batch_size: int = 64
    decode_workers: int | None = None
    device: str = "cpu"
    show_progress: bool = True
    precision: str = field(default_factory=lambda: os.environ.get(PRECISION_ENV) or "auto")
    engine: str = field(default_factory=lambda: os.environ.get(ENGINE_ENV) or "auto")
    decode: str = "exact"
    backend: str = "local"
    address: str | None = None
    ray_workers: int | None = None

    @property
    def cache(self) -> Path:
        """The feature-cache folder this run uses."""
        from spurbench.features.cache import default_cache_dir

        return Path(self.cache_dir).expanduser() if self.cache_dir else default_cache_dir()

    def encode(
        self, model: ModelAdapter, dataset: ImageDataset, shard_encoder: ShardEncoder | None = None
    ) -> FeatureSet:
        """``dataset``'s features under this runtime, from the cache where present (see
        :func:`~spurbench.features.cache.encode_dataset`)."""
        from spurbench.features.cache import encode_dataset

        return encode_dataset(
            model,
            dataset,
            self.cache,
            batch_size=self.batch_size,
            decode_workers=self.decode_workers,
            show_progress=self.show_progress,
            shard_encoder=shard_encoder,
        )

    def replace(self, **changes: Any) -> Runtime:
        """A copy with ``changes`` applied (the object itself is frozen)."""
        return dataclasses.replace(self, **changes)

    def refuse_changed(self, options: tuple[str, ...], caller: str) -> None:
        """Refuse, rather than ignore, ``options`` that ``caller`` (a stage that runs only the
        exact image pass) does not apply: anything but the exact value, or ``auto``."""
        for option in options:
            value, exact = getattr(self, option), _EXACT[option]
            if value not in (exact, "auto"):
                raise SpurbenchError(
                    f"{caller}() runs with {option}={exact!r} only, not {value!r}."
                )


_DATA_OPTIONS = DataSpec.field_names()
_RUNTIME_OPTIONS = tuple(f.name for f in fields(Runtime))


def run_specs(
    data: str | Path | ImageDataset | DataSpec,
    runtime: Runtime | None,
    options: dict[str, Any],
    caller: str,
) -> tuple[DataSpec, Runtime]:
    """The :class:`DataSpec` and :class:`Runtime` of a call to ``caller``.

    ``options`` are the caller's extra keywords: data options (``name_set``, ``split``,
    ``classes``, ``allow_outside_root``, ``columns``) applied over ``data``, and runtime options
    (``cache_dir``, ``batch_size``, ``decode_workers``, ``device``...) applied over ``runtime``.
    """
    options = dict(options)
    data_options = {k: options.pop(k) for k in list(options) if k in _DATA_OPTIONS}
    if isinstance(data, DataSpec):
        spec = dataclasses.replace(data, **data_options)
    else:
        spec = DataSpec(data, **data_options)
    return spec, runtime_from(runtime, options, caller, also_known=_DATA_OPTIONS)


def runtime_from(
    runtime: Runtime | None,
    options: dict[str, Any],
    caller: str,
    also_known: tuple[str, ...] = (),
) -> Runtime:
    """``runtime`` (default: a fresh one) with the runtime ``options`` of a call applied.

    An unknown keyword is a ``TypeError`` naming the closest known one, as Python's own is;
    the names of :data:`RENAMED` still work, with a ``DeprecationWarning``.
    """
    options = dict(options)
    for old, new in RENAMED.items():
        if old in options:
            if new in options:
                raise TypeError(f"{caller}() got both {old!r} and its new name {new!r}")
            warnings.warn(f"{caller}(): {old}= is now {new}=", DeprecationWarning, stacklevel=3)
            options[new] = options.pop(old)
    unknown = [k for k in options if k not in _RUNTIME_OPTIONS]
    if unknown:
        hint = closest(unknown[0], _RUNTIME_OPTIONS + also_known, n=1)
        raise TypeError(
            f"{caller}() got an unexpected keyword argument {unknown[0]!r}"
            + (f"; did you mean {hint[0]!r}?" if hint else "")
        )
    return (runtime or Runtime()).replace(**options)
