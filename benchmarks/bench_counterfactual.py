"""Benchmark: background counterfactuals, cost per image per variant and memory at two sizes.

Building a variant is a paste with a mask (no model call), so the model's pass over the variant
images should dominate: the cost of one variant image should be about that of one image of a
plain evaluation. Each size runs in a fresh process and cache on the CounterAnimal-layout test
split of a generated synthetic world (exact masks), and times a plain evaluation of the photos,
then ``spurbench.counterfactual`` split into building the variants and scoring them. Peak
resident memory (``getrusage``) should not grow with the number of photos: one photo and its
donor are in memory at a time, the variants live on disk.

The model is a real open_clip architecture at random init (ViT-S-32 by default: its pass at
224 px is what a real CLIP costs, unlike the tests' 32-px tiny CLIP).

Usage::

    .venv/bin/python benchmarks/bench_counterfactual.py                  # 5 and 20 per cell
    .venv/bin/python benchmarks/bench_counterfactual.py --per-cell 3 12  # smaller, faster
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    busy_warning,
    emit,
    load_average,
    parse_or_run_child,
    peak_rss_mib,
    run_child,
    stopwatch,
    wrap_timed,
)


def child(cfg: dict) -> None:
    import importlib

    import spurbench
    from spurbench.models import create_model
    from spurbench.synth.world import WorldConfig, generate_world

    world = generate_world(
        WorldConfig(n_test_per_cell=cfg["per_cell"], n_train_per_class=1), Path(cfg["world"])
    )
    adapter = create_model(cfg["model"])
    _ = adapter.fingerprint
    times: dict[str, float] = {}
    with stopwatch(times, "plain"):
        (plain,) = spurbench.evaluate(
            adapter, world.counteranimal_root, ["1vN"], cache_dir=cfg["cache"],
            batch_size=cfg["batch_size"], show_progress=False,
        )  # fmt: skip
    # spurbench.counterfactual is the function at the top level; the module by its full name
    cf_run = importlib.import_module("spurbench.counterfactual.run")
    wrap_timed(cf_run, "variants_for", times, "build")
    with stopwatch(times, "counterfactual"):
        r = spurbench.counterfactual(
            adapter, world.counteranimal_root, protocol="1vN", cache_dir=cfg["cache"],
            batch_size=cfg["batch_size"], show_progress=False,
        )  # fmt: skip
    emit(
        {
            "photos": len(r.images),
            "variant_images": len(r.run.predictions),
            "plain_images": len(plain.predictions),
            "times": times,
            "peak": peak_rss_mib(),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="ViT-S-32,random")
    parser.add_argument("--per-cell", type=int, nargs=2, default=(5, 20))
    parser.add_argument("--batch-size", type=int, default=64)
    if (args := parse_or_run_child(parser, child)) is None:
        return

    from rich.console import Console
    from rich.table import Table

    console = Console(width=140)
    load_before, busy = load_average(), busy_warning()
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_counterfactual-") as tmp_dir:
        tmp = Path(tmp_dir)
        for n in sorted(args.per_cell):
            cfg = {"model": args.model, "per_cell": n, "world": str(tmp / f"world-{n}"),
                   "cache": str(tmp / f"cache-{n}"), "batch_size": args.batch_size}  # fmt: skip
            results[n] = run_child(__file__, cfg, f"{n}-per-cell")

    table = Table(
        title=f"{args.model} · 1vN · background counterfactuals vs a plain evaluation, "
        "fresh process and cache per size",
        title_justify="left",
    )
    for col in ("photos", "variant images", "plain s/img", "build s/variant", "score s/variant",
                "variant / plain", "peak RSS (MiB)"):  # fmt: skip
        table.add_column(col, justify="right")
    for r in results.values():
        t = r["times"]
        plain = t["plain"] / r["plain_images"]
        build = t["build"] / r["variant_images"]
        score = (t["counterfactual"] - t["build"]) / r["variant_images"]
        table.add_row(
            str(r["photos"]), str(r["variant_images"]), f"{plain * 1e3:.1f} ms",
            f"{build * 1e3:.1f} ms", f"{score * 1e3:.1f} ms", f"×{(build + score) / plain:.2f}",
            f"{r['peak']['self']:.0f}",
        )  # fmt: skip
    console.print(table)
    small, large = (results[n] for n in sorted(args.per_cell))
    ratio = large["peak"]["self"] / small["peak"]["self"]
    console.print(
        f"peak RSS {large['photos']} vs {small['photos']} photos: ×{ratio:.3f} → "
        f"{'flat' if ratio <= 1.1 else 'NOT flat'} (target: flat). A variant image costs "
        "'variant / plain' times one image of a plain evaluation (the first run builds the "
        "variants; a rerun finds them in the cache)."
    )
    console.print(f"load average before {load_before}; after {load_average()}")
    if busy:
        console.print(f"[bold red]{busy}[/bold red]")


if __name__ == "__main__":
    main()
