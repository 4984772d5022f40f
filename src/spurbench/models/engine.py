"""The engine that runs the image tower: eager PyTorch, or ONNX Runtime, or ``auto``.

ONNX Runtime is made for CPU inference: the tower is exported to ONNX once per model (weights
fingerprint, input size, exporter version) and cached beside the features under
``<cache>/engines/``; it fuses the attention and MLP blocks that eager PyTorch runs op by op.
Its features differ from eager's by float rounding only (tests/models/test_engine.py bounds the
difference and checks the predictions are identical). It runs fp32 only: with bf16 or fp16
autocast the image pass stays eager.

``auto`` measures like the precision does: a few batches through each engine usable at the
run's precision, once per (machine, architecture, precision, threads, engine versions), the
verdict cached; another engine than eager is used only when faster by :data:`ENGINE_MARGIN`.
``eager`` is always available; the engine is recorded with every run and is part of the
feature-cache key when it is not eager.

OpenVINO was measured (faster than eager here at fp32 and bf16) and left out: loaded into the
process, it corrupted the heap that later allocations of other libraries ran into.
"""

from __future__ import annotations

import functools
import hashlib
import json
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from spurbench.atomic import atomic_path
from spurbench.errors import SpurbenchError
from spurbench.models.base import Features, ModelAdapter
from spurbench.models.precision import (
    best_seconds,
    measured_choice,
    time_batch,
)

ENGINES = ("auto", "eager", "onnx")
#: An engine must beat eager by this fraction of eager's time to be chosen by ``auto``.
ENGINE_MARGIN = 0.10
ONNX_MARGIN = ENGINE_MARGIN  # public name kept for callers of earlier releases
#: Bumped when the export changes (opset, wrapper), so that older graphs are not reused.
EXPORT_VERSION = 1
OPSET = 17


def check_engine(engine: str) -> str:
    """``engine`` if it is one of :data:`ENGINES` and usable here, else a SpurbenchError."""
    if engine not in ENGINES:
        raise SpurbenchError(f"Unknown engine {engine!r}; choose one of {', '.join(ENGINES)}.")
    if engine == "onnx" and not onnx_available():
        raise SpurbenchError(
            "--engine onnx needs ONNX Runtime: pip install 'spurbench[fast]' (or --engine eager)."
        )
    return engine


def onnx_available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))


def resolve_engine(
    engine: str,
    adapter: ModelAdapter,
    cache_dir: str | Path | None,
    *,
    timer: Callable[[ModelAdapter, str], float] | None = None,
) -> str:
    """The concrete engine (``eager`` or ``onnx``) a run uses for ``adapter``.

    ONNX Runtime needs fp32 on CPU; anything else (autocast, CUDA, a missing ONNX Runtime)
    resolves ``auto`` to eager. Call after the precision is resolved.
    """
    check_engine(engine)
    cpu_fp32 = adapter.precision == "fp32" and _device(adapter).type == "cpu"
    if engine == "onnx" and not cpu_fp32:
        raise SpurbenchError(
            "--engine onnx runs fp32 on CPU only; use --device cpu with --precision fp32, "
            "or --engine eager."
        )
    if engine != "auto":
        return engine
    if not (cpu_fp32 and onnx_available()):
        return "eager"
    return measured_choice(
        "engine",
        adapter,
        cache_dir,
        ("eager", "onnx"),
        _unless_unexportable(timer or functools.partial(time_engine, cache_dir=cache_dir)),
        margin=ENGINE_MARGIN,
        extra=[adapter.precision, torch.get_num_threads(), {"onnx": _onnxruntime_version()}],
    )


def _onnxruntime_version() -> str:
    """The installed ONNX Runtime's version, part of the verdict's key: an upgrade is timed
    again."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("onnxruntime")
    except PackageNotFoundError:  # importable without metadata (a source tree)
        return "unknown"


def _unless_unexportable(timer: Callable[[ModelAdapter, str], float]):
    """``timer``, timing a model an exporter cannot trace as infinitely slow in that engine.

    ``auto`` is a default: a model whose tower uses an op without an exported form must still
    run, eagerly, and the verdict (cached) says so; an engine asked for by name still fails.
    """

    def timed(adapter: ModelAdapter, engine: str) -> float:
        if engine == "eager":
            return timer(adapter, engine)
        try:
            return timer(adapter, engine)
        except Exception as e:  # the exporters raise many types (tracer, opset, runtime load)
            warnings.warn(
                f"{_export_failed(adapter, e)}; the image pass runs in eager PyTorch.",
                stacklevel=2,
            )
            return float("inf")

    return timed


def image_encoder(adapter: ModelAdapter) -> Callable[[torch.Tensor], Features]:
    """What encodes a batch for ``adapter``'s engine (its ``encode_images`` when eager).

    An exported tower is exported (or read from the cache) here, on the first batch to encode:
    a rerun whose features are all cached never pays for it.
    """
    if adapter.engine == "eager":
        return adapter.encode_images
    key = (adapter.engine, adapter.precision, torch.get_num_threads())
    if adapter.engine_runner is None or adapter.engine_runner[0] != key:
        try:
            runner = _runner(adapter, adapter.engine_cache)
        except Exception as e:  # asked for by name: a clear error, not the exporter's trace
            raise SpurbenchError(f"{_export_failed(adapter, e)}; use --engine eager.") from e
        adapter.engine_runner = (key, runner)
    return adapter.engine_runner[1]


def _export_failed(adapter: ModelAdapter, error: Exception) -> str:
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    what = f"{type(error).__name__}: {first}"
    return f"ONNX export of {adapter.spec.arch} failed ({what})"


def _session_encoder(session) -> Callable[[torch.Tensor], Features]:
    def encode(images: torch.Tensor) -> Features:
        pre_head, embedding = session.run(None, {"images": images.contiguous().numpy()})
        return Features(torch.from_numpy(pre_head), torch.from_numpy(embedding))

    return encode


def _runner(adapter: ModelAdapter, cache_dir: str | Path) -> Callable[[torch.Tensor], Features]:
    """The ONNX Runtime encoder of ``adapter``'s tower (exported, or read from the cache)."""
    return _session_encoder(onnx_session(exported_graph(adapter, cache_dir)))


def attach_engine(adapter: ModelAdapter, engine: str, cache_dir: str | Path) -> None:
    """Set ``adapter.engine`` and where its exported graph is cached (used on first encode)."""
    adapter.engine = engine
    adapter.engine_cache = Path(cache_dir)


def exported_graph(adapter: ModelAdapter, cache_dir: str | Path) -> Path:
    """The ONNX graph of ``adapter``'s image tower, exported on first use and cached."""
    h, w = adapter.preprocess_cfg.size
    key = hashlib.sha256(
        json.dumps([adapter.fingerprint, [h, w], EXPORT_VERSION, OPSET, torch.__version__]).encode()
    ).hexdigest()[:24]
    path = Path(cache_dir) / "engines" / f"{key}.onnx"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(2, 3, h, w)
    axes = {name: {0: "batch"} for name in ("images", "pre_head", "embedding")}
    # grad mode on: under no_grad torch takes attention fast paths the exporter cannot trace
    with atomic_path(path) as tmp, warnings.catch_warnings(), torch.inference_mode(False):
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notices
        torch.onnx.export(
            _Tower(adapter).eval(),
            (example,),
            str(tmp),
            input_names=["images"],
            output_names=["pre_head", "embedding"],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    return path


def onnx_session(path: Path):
    """An ONNX Runtime CPU session using torch's intra-op thread count."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def time_engine(adapter: ModelAdapter, engine: str, cache_dir: str | Path | None) -> float:
    """Seconds of one random batch through ``engine`` (see :func:`best_seconds`)."""
    _ = adapter.module  # build an unbuilt (lazy) model here, not under inference mode: the
    # exporter cannot trace parameters created as inference tensors
    if engine == "eager":
        return time_batch(adapter, adapter.precision)
    # the tower timed is the one a run would use: exported into the cache, where it stays
    with tempfile.TemporaryDirectory(prefix="spurbench-") as scratch:
        encode = _runner(adapter, cache_dir or scratch)
        return best_seconds(encode, adapter, _device(adapter), adapter.precision)


class _Tower(torch.nn.Module):
    """The adapter's image pass as a module with tensor outputs, for the exporter."""

    def __init__(self, adapter: ModelAdapter) -> None:
        super().__init__()
        self.adapter = adapter
        self.module = adapter.module

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.adapter.encode_images(images)
        return feats.pre_head, feats.embedding


def _device(adapter: ModelAdapter) -> torch.device:
    return torch.device(getattr(adapter, "device", None) or "cpu")
