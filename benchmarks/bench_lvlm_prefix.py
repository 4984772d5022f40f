"""Benchmark: LVLM answer scoring, one full forward per candidate vs one shared-prefix pass.

The CounterAnimal paper (Wang, Lin et al., NeurIPS 2024) scores each image's 20 candidate
answers "A <name>." by their language-modelling loss under an LVLM (LLaVA-1.5-7B, MiniGPT-4).
Done naively that is 20 full forwards per image, each re-running the vision tower and ~600
prefix tokens (576 image tokens at 336 px) for a 3-5 token answer. ``LVLMAdapter.score_candidates``
runs the image + prompt prefix once with ``use_cache=True`` and all 20 answers in one batched
forward on the cached keys/values. This script times both on the same machine, in one run, and
checks they give the same losses:

1. naive: for each candidate, ``processor(image, prompt + answer)`` and ``model(labels=...)``
   with the prompt masked, i.e. what one writes with the plain transformers API;
2. prefix reuse: ``adapter.score_candidates([image], None, names)``.

Models are random-init LLaVA-1.5 architectures (the cost of a forward does not depend on the
weights' values), saved to a temporary folder and loaded through the adapter as a user would:

* ``--preset small`` (default, CPU): 224 px / patch 14 → 256 image tokens, a 4-layer width-256
  LM, so that the image prefix dominates as it does in LLaVA-1.5;
* ``--preset llava-1.5-7b`` (GPU): the real LLaVA-1.5-7B architecture in bf16, 576 image tokens;
  also reports peak GPU memory of each method (``torch.cuda.max_memory_allocated``).

Usage::

    .venv/bin/python benchmarks/bench_lvlm_prefix.py                  # small, CPU, 4 images
    python benchmarks/bench_lvlm_prefix.py --preset llava-1.5-7b --device cuda --images 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from spurbench.models.lvlm import LVLMAdapter, load_lvlm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.random_llava import llava_15_7b_config, save_random_llava

#: 20 ImageNet (WordNet) names of 1-3 words, like a 1-vs-20 candidate set.
NAMES = [
    "ostrich", "black swan", "ice bear", "brown bear", "American black bear", "sloth bear",
    "goldfish", "great white shark", "tench", "hen", "cock", "water ouzel", "king penguin",
    "albatross", "grey whale", "killer whale", "dugong", "sea lion", "Chihuahua", "Maltese dog",
]  # fmt: skip


def naive_losses(adapter: LVLMAdapter, image: Image.Image, names: list[str]) -> np.ndarray:
    """One full forward per candidate with the model's own loss (answer tokens only)."""
    proc, model = adapter.processor, adapter.module
    prompt = adapter.prompt()
    n_prompt = proc(images=[image], text=[prompt], return_tensors="pt")["input_ids"].shape[1]
    out = []
    with torch.inference_mode():
        for name in names:
            inputs = proc(images=[image], text=[adapter.full_text(name)], return_tensors="pt")
            inputs = {
                k: v.to(adapter.device, adapter.dtype if v.is_floating_point() else None)
                for k, v in inputs.items()
            }
            labels = inputs["input_ids"].clone()
            labels[:, :n_prompt] = -100
            out.append(float(model(**inputs, labels=labels).loss))
    return np.array(out)


def timed(fn: Callable[[], np.ndarray], device: torch.device) -> tuple[float, np.ndarray]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=("small", "llava-1.5-7b"), default="small")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--candidates", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    names = (NAMES * (1 + args.candidates // len(NAMES)))[: args.candidates]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "random_llava"
        t0 = time.perf_counter()
        if args.preset == "small":
            save_random_llava(
                folder, image_size=224, patch_size=14, vision_width=128, vision_layers=4,
                text_width=256, text_layers=4,
            )  # fmt: skip
        else:
            save_random_llava(
                folder, config=llava_15_7b_config(), dtype=torch.bfloat16, device=args.device
            )
        print(f"built and saved the random model in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        adapter = load_lvlm(str(folder), device=args.device)
        print(f"loaded through LVLMAdapter in {time.perf_counter() - t0:.1f} s")
        if device.type == "cuda":
            weights = torch.cuda.memory_allocated(device) / 2**30
            print(f"GPU memory after loading (weights): {weights:.2f} GiB")
        n_params = sum(p.numel() for p in adapter.module.parameters())
        side = adapter.preprocess_cfg.size[0]
        rng = np.random.default_rng(0)
        images = [
            Image.fromarray(rng.integers(0, 256, (side + 16, side + 40, 3)).astype(np.uint8))
            for _ in range(args.images + 1)
        ]
        methods = {
            "naive: 1 full forward / candidate": lambda im: naive_losses(adapter, im, names),
            "prefix once + 1 batched forward": lambda im: adapter.score_candidates(
                [im], None, names
            )[0],
        }
        times: dict[str, list[float]] = {m: [] for m in methods}
        peaks: dict[str, float] = {}
        losses: dict[str, list[np.ndarray]] = {m: [] for m in methods}
        for m, fn in methods.items():
            fn(images[0])  # warm-up
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            for im in images[1:]:
                dt, out = timed(lambda im=im, fn=fn: fn(im), device)
                times[m].append(dt)
                losses[m].append(out)
            if device.type == "cuda":
                peaks[m] = torch.cuda.max_memory_allocated(device) / 2**30
        diff = max(float(np.abs(a - b).max()) for a, b in zip(*losses.values(), strict=True))
    n_prefix = len(adapter.processor(images=[images[0]], text=[adapter.prompt()])["input_ids"][0])
    print(
        f"\n{args.preset}: {n_params / 1e6:.1f} M parameters, {str(adapter.dtype)[6:]} on "
        f"{args.device}, prefix {n_prefix} tokens, {len(names)} candidates, "
        f"{args.images} images, {torch.get_num_threads()} CPU threads"
    )
    base = statistics.median(next(iter(times.values())))
    header = f"{'method':<36} {'s / image (median)':>19} {'speed-up':>9}"
    print(header + (f" {'peak GPU GiB':>13}" if peaks else ""))
    for m, ts in times.items():
        med = statistics.median(ts)
        line = f"{m:<36} {med:>19.4f} {base / med:>8.1f}×"
        print(line + (f" {peaks[m]:>13.2f}" if peaks else ""))
    print(f"max |loss difference| between the methods: {diff:.2e}")


if __name__ == "__main__":
    main()
