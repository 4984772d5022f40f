"""The preprocessing half of the feature-cache key: typed fields, not a transform's ``repr``.

A torchvision release that prints its transforms differently must not orphan every cached
feature, and a setting that changes the pixels must change the key. The typed fields are checked
against the transform itself: a pipeline rebuilt here from them alone, with plain torchvision,
gives the adapter's tensors.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torchvision.transforms as T
from PIL import Image

from spurbench.data.layouts import open_dataset
from spurbench.features.cache import feature_key
from spurbench.models import PreprocessConfig, create_model
from tests.conftest import make_counteranimal


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("pre") / "CounterAnimal"
    return open_dataset(make_counteranimal(root, n_common=2, n_counter=2))


def test_key_does_not_depend_on_how_torchvision_prints_a_transform(
    tiny_clip_dir, dataset, tmp_path, monkeypatch
):
    before = create_model(f"local-dir:{tiny_clip_dir}")
    printed = repr(before.preprocess)
    # what a torchvision release that prints Compose another way would do to the same pipeline
    monkeypatch.setattr(T.Compose, "__repr__", lambda self: "Compose(printed another way)")
    after = create_model(f"local-dir:{tiny_clip_dir}")
    assert repr(after.preprocess) != printed
    assert after.preprocess_cfg == before.preprocess_cfg
    assert feature_key(after, dataset, cache_dir=tmp_path) == feature_key(
        before, dataset, cache_dir=tmp_path
    )


@pytest.mark.parametrize(
    "change",
    [
        {"mean": (0.5, 0.5, 0.5)},
        {"std": (0.25, 0.25, 0.25)},
        {"interpolation": "bilinear"},
        {"size": (48, 48)},
        {"resize": (72,)},
        {"resize_mode": "squash", "crop": "none"},
        {"border_crop": 3},
    ],
)
def test_every_setting_that_changes_pixels_changes_the_key(
    tiny_clip_dir, dataset, tmp_path, change
):
    model = create_model(f"local-dir:{tiny_clip_dir}")
    key = feature_key(model, dataset, cache_dir=tmp_path)
    model.preprocess_cfg = dataclasses.replace(model.preprocess_cfg, **change)
    assert feature_key(model, dataset, cache_dir=tmp_path) != key


def test_equal_settings_spelled_differently_have_one_digest():
    a = PreprocessConfig(size=(224, 224), mean=(0, 0, 0), std=(1, 1, 1), interpolation="bicubic",
                         resize=(224,))  # fmt: skip
    b = PreprocessConfig(size=[224, 224], mean=[0.0, 0.0, 0.0], std=np.ones(3),  # type: ignore[arg-type]
                         interpolation="bicubic", resize=[np.int64(224)])  # fmt: skip
    assert a == b and a.digest() == b.digest()
    assert PreprocessConfig.from_dict(a.as_dict()) == a


def test_unknown_modes_are_refused():
    with pytest.raises(ValueError, match="resize_mode"):
        PreprocessConfig((8, 8), (0,), (1,), "bicubic", (8,), resize_mode="shortest_edge=8")
    with pytest.raises(ValueError, match="crop"):
        PreprocessConfig((8, 8), (0,), (1,), "bicubic", (8,), crop="middle")


def _rebuilt(cfg: PreprocessConfig) -> T.Compose:
    """The eval transform from the typed fields alone (the shortest-edge, centre-crop case)."""
    assert cfg.resize_mode == "shortest" and cfg.crop == "center" and len(cfg.resize) == 1
    return T.Compose(
        [
            T.Resize(cfg.resize[0], interpolation=T.InterpolationMode(cfg.interpolation)),
            T.CenterCrop(cfg.size),
            T.ToTensor(),
            T.Normalize(cfg.mean, cfg.std),
        ]
    )


@pytest.mark.parametrize("family", ["open_clip", "hf_clip", "timm", "torchvision"])
def test_typed_fields_describe_the_models_own_transform(family, tiny_clip_dir, tiny_hf_clip_dir):
    name = {
        "open_clip": f"local-dir:{tiny_clip_dir}",
        "hf_clip": f"hf:{tiny_hf_clip_dir}",
        "timm": "timm:test_vit,random",
        "torchvision": "torchvision:resnet18:random",
    }[family]
    model = create_model(name)
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (301, 257, 3), dtype=np.uint8))  # not square
    own = model.preprocess(image)
    assert tuple(own.shape[1:]) == model.preprocess_cfg.size
    torch.testing.assert_close(own, _rebuilt(model.preprocess_cfg)(image), atol=1e-5, rtol=0)
