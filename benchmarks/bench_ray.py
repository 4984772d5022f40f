"""Benchmark: encoding a dataset with the local backend vs the Ray backend (2 local workers).

Issue 8 item 2 scales the feature pass out on Ray. This script measures, side by side in one
run on the same machine, the throughput of the image-encoding stage (``encode_dataset``, the
only stage the Ray backend changes) on a fresh cache each time:

1. local: this process, ``--threads`` torch threads (default: 2, the whole of a 2-core box);
2. Ray, cold: a freshly started local Ray (``--workers`` CPUs) and a fresh worker pool, so the
   workers' process start, imports and model load are inside the time;
3. Ray, warm: the same pool again on another fresh cache: the steady-state rate a long run or
   a sweep of many models sees (the pool outlives one encode).

Ray's own start-up (``ray.init``) is timed apart, and the pool start-up is reported as
cold − warm. The model is a real open_clip architecture at random init saved to a folder (Ray
workers load it by its path: a ``,random`` name would draw other weights in every worker; the
cost of a forward does not depend on the weights' values). Images are generated JPEGs a little
larger than the model input (``bench_probes.make_dataset``).

Usage::

    .venv/bin/python benchmarks/bench_ray.py                    # ViT-B-32, 192 images, 224 px
    .venv/bin/python benchmarks/bench_ray.py --images 512 --workers 4 --threads 4

Shards are ``--shard-rows`` rows (default 48: 4 work units for 192 images) on both sides, so
the units spread evenly over 2 workers; the run takes about 2-3 minutes on two shared cores.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_probes import make_dataset, timed


def save_random_open_clip(arch: str, folder: Path, seed: int = 0) -> Path:
    """``arch`` at random init, saved in open_clip's local-dir layout (what Ray workers load)."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    cfg = open_clip.get_model_config(arch)
    torch.manual_seed(seed)
    model = open_clip.CLIP(**cfg)
    folder.mkdir(parents=True, exist_ok=True)
    preprocess = {
        "size": cfg["vision_cfg"]["image_size"],
        "mean": list(open_clip.OPENAI_DATASET_MEAN),
        "std": list(open_clip.OPENAI_DATASET_STD),
        "interpolation": "bicubic",
        "resize_mode": "shortest",
    }
    (folder / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": cfg, "preprocess_cfg": preprocess})
    )
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "open_clip_model.safetensors"))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="ViT-B-32", help="open_clip architecture.")
    parser.add_argument("--images", type=int, default=192)
    parser.add_argument("--side", type=int, default=256, help="Side of the generated images.")
    parser.add_argument("--batch-size", type=int, default=24)
    parser.add_argument("--shard-rows", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2, help="Torch threads, local backend.")
    parser.add_argument("--workers", type=int, default=2, help="Ray workers (1 thread each).")
    args = parser.parse_args()

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    import torch

    from spurbench.data.layouts import open_dataset
    from spurbench.features.cache import encode_dataset
    from spurbench.features.ray_backend import RayShardEncoder, release_workers
    from spurbench.models import create_model

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench_ray-") as tmp_dir:
        tmp = Path(tmp_dir)
        manifest = make_dataset(tmp / "data", args.images, args.side)
        ds = open_dataset(manifest)
        adapter = create_model(f"local-dir:{save_random_open_clip(args.arch, tmp / 'model')}")
        _ = adapter.fingerprint  # set-up shared by both backends, not timed

        def encode(cache: str, encoder: Any = None) -> tuple[float, Any]:
            return timed(
                lambda: encode_dataset(
                    adapter, ds, tmp / cache, batch_size=args.batch_size,
                    shard_rows=args.shard_rows, show_progress=False, shard_encoder=encoder,
                )
            )  # fmt: skip

        t_local, local = encode("cache-local")
        t_init, _ = timed(
            lambda: ray.init(
                address="local", num_cpus=args.workers, include_dashboard=False,
                object_store_memory=200 * 2**20,
            )
        )  # fmt: skip
        try:
            t_cold, cold = encode("cache-ray-cold", RayShardEncoder(adapter, ds, args.batch_size))
            t_warm, warm = encode("cache-ray-warm", RayShardEncoder(adapter, ds, args.batch_size))
        finally:
            release_workers()
            ray.shutdown()

    n, d_h, d_e = len(ds), local.pre_head.shape[1], local.embedding.shape[1]
    units = -(-n // args.shard_rows)
    print(
        f"{args.arch} at random init (d_H={d_h}, d_E={d_e}: {(d_h + d_e) * 4} cache bytes/image)"
        f" · {n} images at {adapter.preprocess_cfg.size[0]} px, batch {args.batch_size}, "
        f"{units} shards of {args.shard_rows} rows · {os.cpu_count()} CPUs"
    )
    rows = [
        (f"local backend ({args.threads} torch threads)", t_local),
        (f"Ray, cold pool ({args.workers} workers x 1 thread)", t_cold),
        (f"Ray, warm pool ({args.workers} workers x 1 thread)", t_warm),
    ]
    print(f"{'encode, fresh cache':<44}{'seconds':>9}{'images/s':>10}{'vs local':>10}")
    for label, secs in rows:
        print(f"{label:<44}{secs:>9.2f}{n / secs:>10.1f}{t_local / secs:>9.2f}x")
    print(f"Ray start-up, not in the rows: ray.init {t_init:.2f} s")
    print(f"Ray worker pool start-up (process, imports, model load): ~{t_cold - t_warm:.2f} s")
    for label, feats in (("cold", cold), ("warm", warm)):
        same = np.array_equal(feats.embedding, local.embedding) and np.array_equal(
            feats.pre_head, local.pre_head
        )
        diff = float(np.abs(feats.embedding - local.embedding).max())
        print(
            f"Ray {label} features bit-identical to local: {same} (max |diff| {diff:.2g}; "
            f"equal bits need equal torch threads: local {args.threads}, workers 1)"
        )


if __name__ == "__main__":
    main()
