"""Numeric precision of the image pass: fp32 (exact), bf16 / fp16 autocast, or ``auto``.

Which precision is fastest depends on the hardware, not on the model alone: a CPU with native
bf16 instructions (AVX512-BF16, AMX) runs a CLIP image tower markedly faster under bf16
autocast, one without them runs it several times *slower*. So ``auto`` measures instead of
assuming: on CPU it times a few batches of the model in fp32 and in bf16 autocast, once per
(machine, architecture), keeps the verdict as a small JSON file in the cache folder, and picks
bf16 only when it is faster by at least :data:`BF16_MARGIN`. On CUDA it follows open_clip and
clip_benchmark: autocast to bf16 where the GPU supports it, else fp16.

Only the image pass is autocast; features are stored as float32 and zero-shot text heads are
always built in fp32. ``auto`` is the default; ``fp32`` reproduces earlier runs bit for bit.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import platform
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch

from spurbench.atomic import write_json_atomic
from spurbench.errors import SpurbenchError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
#: bf16 must beat fp32 by this fraction of fp32's time to be chosen (timings on a shared machine
#: jitter by a few percent; a marginal win is not worth the loss of exact reproduction).
BF16_MARGIN = 0.10
#: Batches timed per choice (after one warm-up batch), and their size. The fastest batch counts:
#: on a shared machine other work only ever adds time.
TIMED_BATCHES = 3
TIMING_BATCH = 16
#: Bumped when the verdict file's layout or the timing protocol changes.
VERDICT_VERSION = 4

#: seconds per batch of ``adapter`` at ``precision`` (injectable: tests pass a fake clock).
Timer = Callable[[object, str], float]


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else a SpurbenchError listing them."""
    if precision not in PRECISIONS:
        raise SpurbenchError(
            f"Unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}."
        )
    return precision


@contextlib.contextmanager
def forward_context(device: torch.device | str, precision: str) -> Iterator[None]:
    """The grad mode and autocast under which the image tower runs at a resolved precision.

    fp32 runs plain under ``torch.inference_mode``. Autocast runs under ``torch.no_grad``
    instead: autocast keeps its low-precision copies of the weights for a whole forward only
    outside inference mode; inside it, every op casts its weights again. Measured for ViT-B-32
    in bf16 on a 2-core AVX512-BF16 CPU: 36 images/s under ``no_grad`` against 20 under
    ``inference_mode`` (fp32: 16), and the recasting made bf16 *slower* than fp32 at small
    batches, which misled the ``auto`` timing.
    """
    if precision == "fp32":
        with torch.inference_mode():
            yield
        return
    device_type = torch.device(device).type
    with torch.no_grad(), torch.autocast(device_type=device_type, dtype=DTYPES[precision]):
        yield


def machine_signature() -> dict[str, str]:
    """What the verdict depends on: CPU model, its instruction-set flags and torch's kernels."""
    fields: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())  # the first CPU speaks for all
    model = fields.get("model name") or platform.processor() or platform.machine()
    flags = " ".join(sorted((fields.get("flags") or fields.get("Features") or "").split()))
    return {
        "cpu": model,
        "flags_hash": hashlib.sha256(flags.encode()).hexdigest()[:16],
        "capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
    }


def bf16_instructions() -> list[str]:
    """The CPU's native bf16 instruction sets among ``/proc/cpuinfo``'s flags (empty: none)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return sorted(f for f in line.split(":", 1)[1].split() if "bf16" in f)
    return []


def resolve_precision(
    precision: str,
    adapter,
    cache_dir: str | Path | None,
    *,
    timer: Timer | None = None,
) -> str:
    """The concrete precision (``fp32``, ``bf16`` or ``fp16``) a run uses for ``adapter``.

    ``auto`` on CPU reads the cached verdict for this machine and architecture, or times the
    model (``timer``, default :func:`time_batch`) and caches the verdict; a cache folder that
    cannot be written only means the timing is repeated next run.
    """
    check_precision(precision)
    if precision != "auto":
        return precision
    device = torch.device(getattr(adapter, "device", "cpu"))
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type != "cpu":
        return "fp32"  # mps and others: no measured verdict yet, stay exact
    return measured_choice(
        "precision", adapter, cache_dir, ("fp32", "bf16"), timer or time_batch, margin=BF16_MARGIN
    )


def measured_choice(
    kind: str,
    adapter,
    cache_dir: str | Path | None,
    candidates: Sequence[str],
    timer: Timer,
    *,
    margin: float,
    extra: object = None,
) -> str:
    """The fastest of ``candidates`` for ``adapter`` (``timer``: seconds of a batch), measured once.

    The first candidate is the exact one: another wins only when faster by ``margin`` (a
    fraction of its time). The verdict is kept per (machine, architecture, ``kind``, ``extra``)
    under ``<cache_dir>/<kind>/``; a cache folder that cannot be written only means the timing
    is repeated next run.
    """
    machine = machine_signature()
    arch = f"{adapter.spec.family}:{adapter.spec.arch}"
    names = list(candidates)
    key = hashlib.sha256(
        json.dumps([machine, arch, VERDICT_VERSION, names, extra]).encode()
    ).hexdigest()[:24]
    path = Path(cache_dir) / kind / f"{key}.json" if cache_dir else None
    cached = _read_verdict(path, names)
    if cached is not None:
        return cached
    seconds = {name: timer(adapter, name) for name in names}
    exact = names[0]
    best = min(names[1:], key=seconds.__getitem__, default=exact)
    verdict = best if seconds[best] <= (1 - margin) * seconds[exact] else exact
    if path is not None:
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(
                path,
                {
                    "version": VERDICT_VERSION,
                    "verdict": verdict,
                    "machine": machine,
                    "arch": arch,
                    "extra": extra,
                    "seconds_per_batch": seconds,
                    "batch": TIMING_BATCH,
                    "margin": margin,
                },
            )
    return verdict


def _read_verdict(path: Path | None, names: list[str]) -> str | None:
    if path is None:
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("version") != VERDICT_VERSION:
        return None
    verdict = data.get("verdict")
    return verdict if verdict in names else None


def time_batch(adapter, precision: str) -> float:
    """Seconds of one eager forward of a random batch at ``precision`` (see
    :func:`best_seconds`), timed once per adapter, precision and thread count in a process: the
    engine's choice compares the other engines with the eager pass the precision's choice has
    just timed."""
    timed = _EAGER_SECONDS.setdefault(adapter, {})
    key = (precision, torch.get_num_threads())
    if key not in timed:
        timed[key] = best_seconds(adapter.encode_images, adapter, adapter.device, precision)
    return timed[key]


_EAGER_SECONDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def best_seconds(encode: Callable, adapter, device, precision: str) -> float:
    """The fastest of :data:`TIMED_BATCHES` calls of ``encode`` on one random batch of
    :data:`TIMING_BATCH` images of ``adapter``'s input size, after one warm-up call (allocator,
    kernel selection)."""
    h, w = adapter.preprocess_cfg.size
    images = torch.randn(TIMING_BATCH, 3, h, w, generator=torch.Generator().manual_seed(0))
    times = []
    with forward_context(device, precision):
        encode(images)
        for _ in range(TIMED_BATCHES):
            start = time.perf_counter()
            encode(images)
            times.append(time.perf_counter() - start)
    return min(times)


def agreement(
    reference: torch.Tensor, other: torch.Tensor, classifier: torch.Tensor
) -> dict[str, float]:
    """How far features of one precision (``other``) are from fp32's (``reference``).

    Feature cosine per image (min and mean), and the share of images whose top-1 class under
    ``classifier`` (one row per class, in the features' space) is the same: what a user of the
    faster precision gives up, stated in the units the benchmark's tables use.
    """
    reference, other = reference.float(), other.float()
    cosine = torch.nn.functional.cosine_similarity(reference, other, dim=1)
    top1 = (reference @ classifier.T).argmax(1) == (other @ classifier.T).argmax(1)
    return {
        "min_cosine": float(cosine.min()),
        "mean_cosine": float(cosine.mean()),
        "top1_agreement": float(top1.float().mean()),
    }
