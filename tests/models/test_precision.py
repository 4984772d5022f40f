"""Image-pass precision: fp32 exact, bf16 close, auto decided by a (fake) clock and cached."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from spurbench.data.layouts import open_dataset
from spurbench.evaluate import evaluate
from spurbench.features.cache import encode_dataset, feature_key, image_files
from spurbench.features.content import content_digest
from spurbench.models import create_model
from spurbench.models.precision import (
    BF16_MARGIN,
    agreement,
    forward_context,
    resolve_precision,
)
from spurbench.models.spec import ModelSpec
from spurbench.store.results import ResultsStore

#: Feature cosine of bf16 autocast to fp32 on the tiny random ViT: bf16 keeps 8 mantissa bits
#: (~0.4 % relative error per operation); two layers stay far above this bound.
BF16_MIN_COSINE = 0.99
#: Share of images whose zero-shot top-1 may change under bf16. Random weights put 1000 class
#: scores within float noise of each other, so flips happen there; a trained model's margins are
#: far wider (the demo-world test below asks for more).
BF16_MIN_TOP1_RANDOM = 0.8
BF16_MIN_TOP1_TRAINED = 0.97
#: The common-minus-counter drop may move by at most this much (in accuracy, 0.02 = 2 points).
BF16_MAX_DROP_CHANGE = 0.02


@pytest.fixture()
def model(tiny_clip_dir):
    return create_model(f"local-dir:{tiny_clip_dir}")


def _images(n: int = 32) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_fp32_features_are_the_plain_forward_bit_for_bit(model, counteranimal_dir, tmp_path):
    """fp32 runs no autocast at all: the cache holds exactly what encode_images returns."""
    ds = open_dataset(counteranimal_dir)
    model.precision = "fp32"
    feats = encode_dataset(model, ds, tmp_path, batch_size=8, show_progress=False)
    files = image_files(model, ds.table["path"].tolist())
    batch = torch.stack([files[i][1] for i in range(8)])
    with torch.inference_mode():
        plain = model.encode_images(batch)
    assert np.array_equal(feats.embedding[:8], plain.embedding.numpy())
    assert feats.embedding.dtype == np.float32


def test_fp32_keeps_the_old_cache_key_and_other_precisions_get_their_own(
    model, counteranimal_dir, tmp_path
):
    ds = open_dataset(counteranimal_dir)
    images = content_digest(ds.table["path"].tolist(), tmp_path)
    old = [model.fingerprint, model.preprocess_cfg.digest(), images, "final", "content-v1"]
    old_key = hashlib.sha256(json.dumps(old).encode()).hexdigest()[:24]
    keys = {}
    for p in ("fp32", "bf16", "fp16"):
        model.precision = p
        keys[p] = feature_key(model, ds, cache_dir=tmp_path)
    assert keys["fp32"] == old_key
    assert len(set(keys.values())) == 3


def test_bf16_features_agree_with_fp32(model, capsys):
    images = _images()
    with torch.inference_mode():
        fp32 = model.encode_images(images)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = model.encode_images(images)
    assert bf16.embedding.dtype == torch.float32  # adapters hand back float32 whatever ran
    a, b = fp32.pre_head, bf16.pre_head
    cosine = torch.nn.functional.cosine_similarity(a, b, dim=1)
    head = torch.randn(10, fp32.embedding.shape[1], generator=torch.Generator().manual_seed(2))
    top1 = (fp32.embedding @ head.T).argmax(1) == (bf16.embedding @ head.T).argmax(1)
    print(f"bf16 vs fp32: min cosine {cosine.min():.5f}, top-1 agreement {top1.float().mean():.3f}")
    assert cosine.min() >= BF16_MIN_COSINE
    assert not torch.equal(a, b)  # autocast really ran in bf16


def _top1(result) -> np.ndarray:
    return np.array([labels[0] for labels in result.predictions["topk_labels"]])


def test_bf16_agreement_on_a_random_tiny_vit(model, counteranimal_dir, tmp_path, capsys):
    """bf16 vs fp32 through the whole pipeline (JPEG/PNG decode, preprocessing, 1-vs-1000).

    :func:`agreement` on the cached features is checked against the pipeline's own predictions:
    both must count the same top-1 flips.
    """
    kw = dict(cache_dir=tmp_path / "c", show_progress=False, batch_size=8, n_boot=20)
    runs = {
        p: evaluate(model, counteranimal_dir, ["1v1000"], precision=p, **kw)[0]
        for p in ("fp32", "bf16")
    }
    ds = open_dataset(counteranimal_dir)
    feats = {}
    for p in ("fp32", "bf16"):
        model.precision = p
        feats[p] = torch.from_numpy(
            encode_dataset(model, ds, tmp_path / "c", show_progress=False).embedding
        )
    (head,) = (tmp_path / "c" / "heads").glob("*.npz")  # the text head both runs used
    with np.load(head) as z:
        classifier = torch.from_numpy(z["weight"])
    got = agreement(feats["fp32"], feats["bf16"], classifier)
    pipeline_top1 = (_top1(runs["fp32"]) == _top1(runs["bf16"])).mean()
    print(f"random tiny ViT, bf16 vs fp32: {got}, pipeline top-1 agreement {pipeline_top1:.3f}")
    assert got["top1_agreement"] == pytest.approx(pipeline_top1)
    assert got["min_cosine"] >= BF16_MIN_COSINE
    assert got["top1_agreement"] >= BF16_MIN_TOP1_RANDOM


@pytest.mark.slow
def test_bf16_agreement_and_drop_on_the_demo_world(synth_cache, tmp_path, capsys):
    """The demo world's trained tiny CLIP: bf16 keeps its predictions and its planted drop."""
    from spurbench.synth.train import TrainConfig
    from spurbench.synth.world import WorldConfig
    from tests.conftest import trained_world

    world, zoo = trained_world(
        synth_cache, WorldConfig.fast(rho=0.9), TrainConfig.fast(models=("tiny_clip",))
    )
    kw = dict(cache_dir=tmp_path / "c", show_progress=False, n_boot=20)
    runs = {
        p: evaluate(f"local-dir:{zoo['tiny_clip']}", world.counteranimal_root, ["1vN"],
                    precision=p, **kw)[0]
        for p in ("fp32", "bf16")
    }  # fmt: skip
    top1 = (_top1(runs["fp32"]) == _top1(runs["bf16"])).mean()
    drops = {p: r.value("drop") for p, r in runs.items()}
    print(f"demo world tiny CLIP 1vN: top-1 agreement {top1:.4f}, drop {drops}")
    assert drops["fp32"] > 0.3  # the planted shortcut is there to be kept
    assert top1 >= BF16_MIN_TOP1_TRAINED
    assert abs(drops["bf16"] - drops["fp32"]) <= BF16_MAX_DROP_CHANGE


class FakeClock:
    """Seconds per batch by choice (precision or engine), counting how often it timed."""

    def __init__(self, **seconds: float):
        self.seconds, self.calls = seconds, 0

    def __call__(self, adapter, choice: str) -> float:
        self.calls += 1
        return self.seconds[choice]


@pytest.mark.parametrize(
    ("bf16_s", "verdict"),
    [(0.5, "bf16"), (1 - BF16_MARGIN, "bf16"), (0.95, "fp32"), (5.0, "fp32")],
)
def test_auto_picks_bf16_only_when_faster_by_the_margin(model, tmp_path, bf16_s, verdict):
    clock = FakeClock(fp32=1.0, bf16=bf16_s)
    assert resolve_precision("auto", model, tmp_path, timer=clock) == verdict
    assert clock.calls == 2


def test_auto_verdict_is_cached_per_architecture_and_reused(model, tmp_path):
    assert resolve_precision("auto", model, tmp_path, timer=FakeClock(fp32=1.0, bf16=0.5)) == "bf16"

    def no_timing(adapter, precision):
        raise AssertionError("the cached verdict should have been used")

    assert resolve_precision("auto", model, tmp_path, timer=no_timing) == "bf16"
    (saved,) = (tmp_path / "precision").glob("*.json")
    record = json.loads(saved.read_text())
    assert record["verdict"] == "bf16" and record["machine"]["cpu"]
    # another architecture is timed on its own
    model.spec = ModelSpec(model.spec.family, "other-arch")
    clock = FakeClock(fp32=1.0, bf16=2.0)
    assert resolve_precision("auto", model, tmp_path, timer=clock) == "fp32"
    assert clock.calls == 2
    # explicit precisions never time anything
    assert resolve_precision("fp16", model, tmp_path, timer=no_timing) == "fp16"


def test_precision_is_recorded_with_the_run(model, counteranimal_dir, tmp_path):
    kw = dict(cache_dir=tmp_path / "c", show_progress=False, batch_size=8, n_boot=50)
    store = tmp_path / "s.duckdb"
    (fp32,) = evaluate(model, counteranimal_dir, ["1vN"], store=store, **kw)
    (bf16,) = evaluate(model, counteranimal_dir, ["1vN"], store=store, precision="bf16", **kw)
    assert fp32.run_id != bf16.run_id
    runs = ResultsStore(store, read_only=True).runs().set_index("run_id")
    configs = {r: json.loads(runs.loc[r, "config"]) for r in (fp32.run_id, bf16.run_id)}
    assert configs[fp32.run_id]["precision"] == "fp32"
    assert configs[bf16.run_id]["precision"] == "bf16"
    same = fp32.predictions["correct"].to_numpy() == bf16.predictions["correct"].to_numpy()
    agree = same.mean()
    print(f"demo world 1vN: per-image correctness agreement bf16 vs fp32 {agree:.3f}")


class _CastCounter(TorchDispatchMode):
    """Counts dtype casts (``aten._to_copy`` / ``aten.to.dtype``) reaching the kernels."""

    def __init__(self) -> None:
        super().__init__()
        self.casts = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.casts += str(func) in ("aten._to_copy.default", "aten.to.dtype")
        return func(*args, **(kwargs or {}))


def test_autocast_casts_the_weights_once_per_pass():
    """Under bf16 the weights are cast once, then reused: each further forward casts only its
    input. (Under ``inference_mode`` autocast recasts input, weight and bias at every call, which
    made bf16 slower than fp32 at small batches.) fp32 casts nothing."""
    layer, x = torch.nn.Linear(8, 8), torch.randn(4, 8)
    counts = {}
    for precision in ("bf16", "fp32"):
        with forward_context("cpu", precision), _CastCounter() as counter:
            for _ in range(3):
                out = layer(x)
        counts[precision] = counter.casts
        assert not out.requires_grad
    assert counts == {"bf16": 3 + 2, "fp32": 0}
