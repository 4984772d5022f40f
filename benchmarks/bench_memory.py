"""Benchmark: peak memory of an evaluation at two dataset sizes (target: flat).

An evaluation should hold one batch of decoded images (and one shard of features) at a time, not
the dataset: its peak memory should not grow with the number of images beyond the features and
result rows themselves (a few KiB per image). This script runs the same 1-vs-1000 evaluation,
each in a fresh process, on the first ``--sizes`` images of one generated ImageNet-like set, and
reads each process's peak resident memory (``getrusage``: the main process, and separately its
largest DataLoader worker).

The model is a real open_clip architecture at random init; the default, ViT-S-32, is the small
ViT of open_clip's list, so that 2,500 images fit in a few minutes on two cores (what is measured
is the pipeline's memory, which the model only offsets by its size).

Usage::

    .venv/bin/python benchmarks/bench_memory.py                       # ViT-S-32, 500 and 2000
    .venv/bin/python benchmarks/bench_memory.py --model ViT-B-32,random --sizes 250 1000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import busy_warning, emit, load_average, make_imagenet_val, parse_result, peak_rss_mib


def rss_now_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(cfg: dict) -> None:
    import spurbench
    from spurbench.models import create_model

    adapter = create_model(cfg["model"])
    _ = adapter.fingerprint
    after_load = rss_now_mib()
    start = time.perf_counter()
    spurbench.evaluate(
        adapter,
        cfg["manifest"],
        ["1v1000"],
        cache_dir=cfg["cache"],
        store=cfg["store"],
        batch_size=cfg["batch_size"],
        show_progress=False,
        precision=cfg["precision"],
        engine=cfg["engine"],
    )
    seconds = time.perf_counter() - start
    ran = {k: getattr(adapter, k) for k in ("precision", "engine")}
    emit({"after_load": after_load, "peak": peak_rss_mib(), "seconds": seconds, "ran": ran})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="ViT-S-32,random")
    parser.add_argument("--sizes", type=int, nargs=2, default=(500, 2000))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--precision", default="auto", help="spurbench --precision [auto]")
    parser.add_argument("--engine", default="auto", help="spurbench --engine [auto]")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return

    from rich.console import Console
    from rich.table import Table

    console = Console(width=120)
    small, large = sorted(args.sizes)
    load_before = load_average()
    busy = busy_warning()
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_memory-") as tmp_dir:
        tmp = Path(tmp_dir)
        make_imagenet_val(tmp / "data", large)
        rows = (tmp / "data" / "manifest.csv").read_text().splitlines()
        for n in (small, large):
            manifest = tmp / "data" / f"manifest-{n}.csv"
            manifest.write_text("\n".join(rows[: n + 1]) + "\n")
            cfg = {
                "model": args.model,
                "manifest": str(manifest),
                "cache": str(tmp / f"cache-{n}"),
                "store": str(tmp / f"store-{n}.duckdb"),
                "batch_size": args.batch_size,
                "precision": args.precision,
                "engine": args.engine,
            }
            proc = subprocess.run(
                [sys.executable, __file__, "--child", json.dumps(cfg)],
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                raise SystemExit(f"The {n}-image run failed:\n{proc.stderr[-4000:]}")
            results[n] = parse_result(proc.stdout)
    load_after = load_average()

    table = Table(
        title=f"{args.model} · 1v1000 evaluation, fresh process and cache per size · "
        f"batch {args.batch_size} · spurbench's default decoding · ran "
        + ", ".join(f"{k} {v}" for k, v in results[small].get("ran", {}).items()),
        title_justify="left",
    )
    for col in (
        "images",
        "RSS after model load (MiB)",
        "peak RSS, main (MiB)",
        "peak RSS, largest worker (MiB)",
        "peak − after load (MiB)",
        "seconds",
    ):
        table.add_column(col, justify="right")
    for n, r in results.items():
        table.add_row(
            str(n),
            f"{r['after_load']:.0f}",
            f"{r['peak']['self']:.0f}",
            f"{r['peak']['children']:.0f}",
            f"{r['peak']['self'] - r['after_load']:.0f}",
            f"{r['seconds']:.1f}",
        )
    console.print(table)
    a, b = results[small]["peak"]["self"], results[large]["peak"]["self"]
    per_image = (b - a) * 1024 / (large - small)
    decoded = 3 * 224 * 224 * 4 / 1024  # one preprocessed image, float32 (KiB)
    ratio = b / a
    console.print(
        f"peak RSS {large} vs {small} images: {b:.0f} vs {a:.0f} MiB, ×{ratio:.3f} "
        f"({per_image:.1f} KiB per extra image; holding every decoded 224-px image would cost "
        f"{decoded:.0f} KiB each) → {'flat' if ratio <= 1.1 else 'NOT flat'} (target: flat)"
    )
    console.print(f"load average before {load_before}; after {load_after}")
    if busy:
        console.print(f"[bold red]{busy}[/bold red]")


if __name__ == "__main__":
    main()
