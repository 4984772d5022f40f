"""JPEG draft decoding (--decode draft): faster on large photos, within tolerance of exact.

Large JPEGs are generated here (smooth colour fields with grain, like photographs at 1-6 MP);
the exact pipeline decodes every pixel, draft mode decodes at a reduced DCT scale that keeps at
least twice the target side before the same resize. The tolerance is measured, not assumed.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from spurbench.data.images import ImageFiles, load_rgb
from spurbench.data.layouts import open_dataset
from spurbench.evaluate import evaluate
from spurbench.features.cache import encode_dataset, feature_key
from spurbench.models import create_model
from spurbench.store.results import ResultsStore

#: Mean absolute difference of the preprocessed 224 px tensors (normalised units, ~1/0.27 per
#: unit of [0, 1] intensity): ~0.3 grey levels of 255. Measured 0.003-0.005 on these photos.
DRAFT_MAX_MEAN_ABS = 0.01
#: Feature cosine of draft to exact features on the tiny CLIP.
DRAFT_MIN_COSINE = 0.999
SIZES = ((2000, 1500), (3000, 2000), (1500, 2000), (1024, 768))


def _photo(path, w: int, h: int, rng: np.random.Generator) -> None:
    low = rng.integers(0, 256, size=(h // 32 + 1, w // 32 + 1, 3)).astype(np.uint8)
    smooth = np.asarray(Image.fromarray(low).resize((w, h), Image.Resampling.BILINEAR))
    pixels = np.clip(smooth + rng.normal(0, 12, size=(h, w, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=90)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("photos") / "CounterAnimal"
    for i, (w, h) in enumerate(SIZES):
        group = "common-ground" if i % 2 else "counter-water"
        _photo(root / "9 ostrich" / group / f"{i}.jpg", w, h, rng)
    return root


def test_draft_decodes_fewer_pixels_and_stays_within_tolerance(photos):
    from open_clip.transform import image_transform

    transform = image_transform(224, is_train=False)
    paths = [str(p) for p in sorted(photos.rglob("*.jpg"))]
    exact = ImageFiles(paths, transform, (224, 224))
    draft = ImageFiles(paths, transform, (224, 224), decode="draft")
    for i, path in enumerate(paths):
        full, small = load_rgb(path, short_side=224), load_rgb(path, short_side=224, draft=True)
        assert min(small.size) >= 2 * 224  # never below twice the target side
        if min(full.size) >= 4 * 224:
            assert small.width * small.height < full.width * full.height  # DCT scaling ran
        diff = (exact[i][1] - draft[i][1]).abs()
        print(f"{full.size} -> {small.size}: mean abs {diff.mean():.4f}, max {diff.max():.3f}")
        assert diff.mean() <= DRAFT_MAX_MEAN_ABS


def test_draft_leaves_small_and_non_jpeg_images_exact(tmp_path):
    rng = np.random.default_rng(1)
    _photo(tmp_path / "small.jpg", 500, 375, rng)
    _photo(tmp_path / "big.jpg", 2000, 1500, rng)
    Image.open(tmp_path / "big.jpg").save(tmp_path / "big.png")
    for name in ("small.jpg", "big.png"):
        path = str(tmp_path / name)
        a, b = load_rgb(path, short_side=224), load_rgb(path, short_side=224, draft=True)
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_draft_is_recorded_and_keyed_and_features_agree(tiny_clip_dir, photos, tmp_path):
    model = create_model(f"local-dir:{tiny_clip_dir}")
    kw = dict(cache_dir=tmp_path / "c", show_progress=False, n_boot=20)
    store = tmp_path / "s.duckdb"
    runs = {d: evaluate(model, photos, ["1vN"], store=store, decode=d, **kw)[0]
            for d in ("exact", "draft")}  # fmt: skip
    assert runs["exact"].run_id != runs["draft"].run_id
    config = ResultsStore(store, read_only=True).runs().set_index("run_id")["config"]
    assert json.loads(config[runs["draft"].run_id])["decode"] == "draft"
    assert json.loads(config[runs["exact"].run_id])["decode"] == "exact"
    ds = open_dataset(photos)
    feats, keys = {}, {}
    for d in ("exact", "draft"):
        model.decode = d
        keys[d] = feature_key(model, ds, cache_dir=tmp_path / "c")
        feats[d] = torch.from_numpy(encode_dataset(model, ds, tmp_path / "c").pre_head)
    assert keys["exact"] != keys["draft"]
    cosine = torch.nn.functional.cosine_similarity(feats["exact"], feats["draft"], dim=1)
    assert cosine.min() >= DRAFT_MIN_COSINE


def test_cli_refuses_an_unknown_decode(tiny_clip_dir, photos):
    from typer.testing import CliRunner

    from spurbench.cli import app

    args = ["eval", "-m", f"local-dir:{tiny_clip_dir}", "-d", str(photos), "--decode", "fast"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2
    assert "error:" in res.output and "fast" in res.output
