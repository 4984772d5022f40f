"""Benchmark: bf16 autocast against fp32 on a random ViT-B-32: agreement and speed of the tower.

The image pass of ``spurbench eval --precision bf16`` (or ``auto`` where bf16 wins) runs the
image tower under bfloat16 autocast; this script measures what that costs in agreement and buys
in time, on one machine:

* **agreement**: ``--images`` generated JPEGs at ImageNet sizes, decoded and preprocessed by the
  model's own transform, encoded in fp32 and in bf16 autocast; per-image feature cosine (min,
  mean) and the share of identical top-1 classes under the 1000-class zero-shot head (built
  in fp32 from the paper's prompt, as spurbench does at every precision);
* **speed**: the forward alone on the preprocessed batch, ``--repeats`` times per precision,
  interleaved, best of each (a shared machine only ever adds time).

Random weights are the hard case for top-1 agreement: 1000 class scores sit within float noise
of each other, so a trained model keeps its top-1 at least as well (tests/models/
test_precision.py checks the demo world's trained CLIP and its common-counter drop).

Usage::

    .venv/bin/python benchmarks/bench_precision.py                 # ViT-B-32, 64 images
    .venv/bin/python benchmarks/bench_precision.py --images 256 --arch ViT-B-16
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import busy_warning, load_average, make_imagenet_val


def cpu_description() -> str:
    """The CPU model and whether it has native bf16 instructions (what decides bf16's speed)."""
    from spurbench.models.precision import bf16_instructions, machine_signature

    flags = bf16_instructions()
    return f"{machine_signature()['cpu']}; bf16 instructions: {', '.join(flags) or 'none'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="ViT-B-32", help="An open_clip architecture.")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    import torch

    from spurbench.data.classes import imagenet_classes, resolve_templates
    from spurbench.features.cache import image_files
    from spurbench.models import create_model
    from spurbench.models.precision import agreement, autocast

    busy = busy_warning()
    load_before = load_average()
    adapter = create_model(f"{args.arch},random")
    with tempfile.TemporaryDirectory(prefix="bench_precision-") as tmp:
        root = make_imagenet_val(Path(tmp), args.images)
        files = image_files(adapter, [str(p) for p in sorted(root.glob("val/*/*.JPEG"))])
        images = torch.stack([files[i][1] for i in range(len(files))])
    with torch.inference_mode():
        head = adapter.head(imagenet_classes("openai"), resolve_templates(None))
        feats, seconds = {}, {"fp32": [], "bf16": []}
        for r in range(args.repeats):
            for precision in ("fp32", "bf16") if r % 2 == 0 else ("bf16", "fp32"):
                start = time.perf_counter()
                with autocast("cpu", precision):
                    out = [adapter.encode_images(b) for b in images.split(args.batch_size)]
                seconds[precision].append(time.perf_counter() - start)
                feats[precision] = torch.cat([o.embedding for o in out])
    got = agreement(feats["fp32"], feats["bf16"], torch.from_numpy(head.weight))
    best = {p: min(s) for p, s in seconds.items()}
    print(f"{args.arch} (random init), {len(images)} JPEGs, batch {args.batch_size}, "
          f"{torch.get_num_threads()} torch threads; {cpu_description()}")  # fmt: skip
    print(
        f"bf16 vs fp32: feature cosine min {got['min_cosine']:.6f}, mean {got['mean_cosine']:.6f}"
        f"; top-1 agreement (1000 classes) {100 * got['top1_agreement']:.1f} %"
    )
    print(
        f"image tower: fp32 {len(images) / best['fp32']:.1f} img/s, bf16 "
        f"{len(images) / best['bf16']:.1f} img/s → bf16 {best['fp32'] / best['bf16']:.2f}× "
        f"(best of {args.repeats}; load average before {load_before}, after {load_average()})"
    )
    if busy:
        print(busy)


if __name__ == "__main__":
    main()
