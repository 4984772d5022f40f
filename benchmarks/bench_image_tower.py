"""Benchmark: the image tower's precisions and engines on a random ViT-B-32: agreement and speed.

``spurbench eval --precision bf16`` runs the image tower under bfloat16 autocast and
``--engine onnx`` runs it in ONNX Runtime (``auto`` picks either where measured faster); this
script measures what each costs in agreement with eager fp32 and buys in time, on one machine
(``--compile`` adds torch.compile, which spurbench does not use):

* **agreement**: ``--images`` generated JPEGs at ImageNet sizes, decoded and preprocessed by the
  model's own transform, encoded in fp32 and in bf16 autocast; per-image feature cosine (min,
  mean) and the share of identical top-1 classes under the 1000-class zero-shot head (built
  in fp32 from the paper's prompt, as spurbench does at every precision);
* **speed**: the forward alone on the preprocessed batches, ``--repeats`` times per variant,
  in alternating order, best of each (a shared machine only ever adds time).

Random weights are the hard case for top-1 agreement: 1000 class scores sit within float noise
of each other, so a trained model keeps its top-1 at least as well (tests/models/
test_precision.py checks the demo world's trained CLIP and its common-counter drop).

Usage::

    .venv/bin/python benchmarks/bench_image_tower.py                 # ViT-B-32, 64 images
    .venv/bin/python benchmarks/bench_image_tower.py --images 256 --arch ViT-B-16
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import busy_warning, cpu_description, load_average, make_imagenet_val


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="ViT-B-32", help="An open_clip architecture.")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="Also torch.compile (inductor).")
    args = parser.parse_args()

    import torch

    from spurbench.data.classes import imagenet_classes, resolve_templates
    from spurbench.features.cache import image_files
    from spurbench.models import create_model
    from spurbench.models.engine import exported_graph, image_encoder, onnx_available, onnx_session
    from spurbench.models.precision import agreement, forward_context

    busy = busy_warning()
    load_before = load_average()
    adapter = create_model(f"{args.arch},random")
    with tempfile.TemporaryDirectory(prefix="bench_image_tower-") as tmp:
        root = make_imagenet_val(Path(tmp), args.images)
        files = image_files(adapter, [str(p) for p in sorted(root.glob("val/*/*.JPEG"))])
        images = torch.stack([files[i][1] for i in range(len(files))])
        variants = {"eager fp32": (adapter.encode_images, "fp32")}
        variants["eager bf16"] = (adapter.encode_images, "bf16")
        if onnx_available():
            session = onnx_session(exported_graph(adapter, Path(tmp)))
            variants["onnx fp32"] = (image_encoder(_onnx(adapter, session)), "fp32")
        if args.compile:
            compiled = torch.compile(adapter.encode_images)
            variants["compile fp32"] = (compiled, "fp32")
            variants["compile bf16"] = (compiled, "bf16")
        with torch.inference_mode():
            head = adapter.head(imagenet_classes("openai"), resolve_templates(None))
        feats, seconds = {}, {name: [] for name in variants}
        for r in range(args.repeats):
            order = list(variants) if r % 2 == 0 else list(reversed(variants))
            for name in order:
                encode, precision = variants[name]
                start = time.perf_counter()
                with forward_context("cpu", precision):  # what the image pass runs under
                    out = [encode(b) for b in images.split(args.batch_size)]
                seconds[name].append(time.perf_counter() - start)
                feats[name] = torch.cat([o.embedding for o in out])
    classifier = torch.from_numpy(head.weight)
    print(
        f"{args.arch} (random init), {len(images)} JPEGs, batch {args.batch_size}, "
        f"{torch.get_num_threads()} torch threads, best of {args.repeats} (the first repeat of "
        f"each includes its warm-up); {cpu_description()}"
    )
    header = ("variant", "img/s", "vs eager fp32", "min cosine", "top-1 agree")
    print("{:<14} {:>7} {:>13} {:>11} {:>11}".format(*header))
    base = min(seconds["eager fp32"])
    for name in variants:
        got = agreement(feats["eager fp32"], feats[name], classifier)
        best = min(seconds[name])
        print(
            f"{name:<14} {len(images) / best:7.2f} {base / best:12.2f}x "
            f"{got['min_cosine']:11.6f} {100 * got['top1_agreement']:10.1f}%"
        )
    print(f"load average before {load_before}, after {load_average()}")
    if busy:
        print(busy)


def _onnx(adapter, session):
    adapter.engine, adapter.onnx_session = "onnx", session
    return adapter


if __name__ == "__main__":
    main()
