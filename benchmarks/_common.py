"""Shared pieces of the speed benchmarks: generated ImageNet-like data, a random-init checkpoint,
timers, peak memory and the machine's load.

Nothing here imports spurbench or torch at module level: ``bench_vs_clip_benchmark.py`` runs
its clip_benchmark side in another virtual environment, where only the standard library, torch
and clip_benchmark are installed.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: Typical ImageNet validation sizes (width, height): photographs of 300-500 px on a side.
SIZES = ((500, 375), (500, 333), (375, 500), (500, 400), (333, 500), (400, 300))


def wnids() -> list[str]:
    """ImageNet's 1000 WordNet ids in index order (sorted, as torchvision's ImageFolder sorts)."""
    path = ROOT / "src" / "spurbench" / "data" / "imagenet" / "wnids.txt"
    ids = path.read_text().split()
    assert len(ids) == 1000 and ids == sorted(ids)
    return ids


def make_imagenet_val(root: Path, n_images: int, seed: int = 0) -> Path:
    """``n_images`` JPEGs in the ImageNet validation layout ``root/val/<wnid>/<name>.JPEG``
    (torchvision's ImageFolder, i.e. clip_benchmark's ``imagenet1k-unverified``), one class
    after another (image i has label i mod 1000), plus ``root/manifest.csv`` (path, label)
    listing the same files in the order ImageFolder reads them.

    Pictures are smooth random colour fields with grain, JPEG quality 90, at typical ImageNet
    sizes, so that decoding and resizing cost about what they cost on photographs.
    """
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    ids = wnids()
    rows = []
    for i in range(n_images):
        label = i % 1000
        w, h = SIZES[i % len(SIZES)]
        low = rng.integers(0, 256, size=(h // 32 + 1, w // 32 + 1, 3)).astype(np.uint8)
        smooth = np.asarray(Image.fromarray(low).resize((w, h), Image.Resampling.BILINEAR))
        grain = rng.normal(0, 12, size=(h, w, 3))
        pixels = np.clip(smooth + grain, 0, 255).astype(np.uint8)
        rel = Path("val") / ids[label] / f"ILSVRC2012_val_{i + 1:08d}.JPEG"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(root / rel, quality=90)
        rows.append((rel.as_posix(), label))
    rows.sort()  # ImageFolder's order: class folder, then file name
    lines = ["path,label"] + [f"{p},{y}" for p, y in rows]
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root


def save_random_checkpoint(arch: str, path: Path, seed: int = 0) -> Path:
    """A random-init open_clip model saved as a plain state dict (open_clip's checkpoint format,
    loadable with ``pretrained=<path>``). A forward's cost does not depend on the weights."""
    import open_clip
    import torch

    torch.manual_seed(seed)
    model = open_clip.create_model(arch)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path


@contextmanager
def stopwatch(into: dict[str, float], name: str):
    start = time.perf_counter()
    try:
        yield
    finally:
        into[name] = into.get(name, 0.0) + time.perf_counter() - start


def wrap_timed(owner: Any, attr: str, into: dict[str, float], name: str) -> Callable:
    """Replace ``owner.attr`` by a wrapper adding its run time to ``into[name]``; returns the
    original."""
    original = getattr(owner, attr)

    def timed(*args: Any, **kwargs: Any) -> Any:
        with stopwatch(into, name):
            return original(*args, **kwargs)

    setattr(owner, attr, timed)
    return original


def peak_rss_mib() -> dict[str, float]:
    """Peak resident memory of this process and of its largest finished child (MiB)."""
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale / 2**20
    return {"self": own, "children": kids}


def load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f} (1, 5, 15 min) on {os.cpu_count()} CPUs"


def busy_warning() -> str | None:
    """A warning to print when other work already loads the machine at the start (1-min load
    average above 3/4 of the CPUs): every timing then carries it, unevenly."""
    try:
        one = os.getloadavg()[0]
    except OSError:
        return None
    cpus = os.cpu_count() or 1
    if one <= 0.75 * cpus:
        return None
    return (
        f"warning: load average {one:.2f} on {cpus} CPUs at the start: other processes compete "
        "for the CPUs and skew these timings (and their ratios); rerun on a quiet machine."
    )


def emit(result: dict[str, Any]) -> None:
    """The last line a benchmark child prints: its measurements as JSON."""
    print("BENCH-RESULT " + json.dumps(result), flush=True)


def parse_result(stdout: str) -> dict[str, Any]:
    for line in reversed(stdout.splitlines()):
        if line.startswith("BENCH-RESULT "):
            return json.loads(line[len("BENCH-RESULT ") :])
    raise RuntimeError("the benchmark child printed no result:\n" + stdout[-3000:])


def run_child(script: str, cfg: dict[str, Any], what: str) -> dict[str, Any]:
    """Run ``script --child CFG`` in a fresh process and return what it emitted."""
    import subprocess

    proc = subprocess.run(
        [sys.executable, script, "--child", json.dumps(cfg)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise SystemExit(f"The {what} run failed:\n{proc.stderr[-4000:]}")
    return parse_result(proc.stdout)


def parse_or_run_child(parser: Any, child: Callable[[dict[str, Any]], None]) -> Any:
    """Parse the benchmark's arguments; as a ``--child CFG`` process, run ``child`` and return
    None (the parent then has nothing left to do)."""
    import argparse

    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return None
    return args


def cpu_description() -> str:
    """The CPU model and whether it has native bf16 instructions (what decides bf16's speed)."""
    from spurbench.models.precision import bf16_instructions, machine_signature

    flags = bf16_instructions()
    return f"{machine_signature()['cpu']}; bf16 instructions: {', '.join(flags) or 'none'}"
