"""Tiny-model training: checkpoints reload bit for bit through the libraries' own loaders, training
is deterministic, and the zoo is cached. A few optimiser steps each: correctness, not accuracy
(the accuracy ground truth is measured through spurbench's evaluation pipeline elsewhere)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from spurbench.synth import train as T
from spurbench.synth.world import World, WorldConfig, generate_world

pytestmark = pytest.mark.slow

WORLD = WorldConfig(n_classes=3, n_backgrounds=3, n_train_per_class=24, n_test_per_cell=2)
CFG = T.TrainConfig(clip_steps=3, classifier_steps=3, finetune_steps=2, batch_size=16)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return generate_world(WORLD, tmp_path_factory.mktemp("synth") / "world")


@pytest.fixture(scope="module")
def tiny_clip(world: World) -> T.TrainedModel:
    return T.train_tiny_clip(world, CFG)


def _test_batch(world: World, transform) -> torch.Tensor:
    from PIL import Image

    paths = world.paths(world.split("test"))[:6]
    return torch.stack([transform(Image.open(p).convert("RGB")) for p in paths])


@torch.no_grad()
def test_tiny_clip_reloads_through_open_clip_local_dir(
    world: World, tiny_clip: T.TrainedModel, tmp_path: Path
) -> None:
    import open_clip

    folder = T.save_open_clip(tiny_clip, tmp_path / "clip")
    saved = json.loads((folder / "open_clip_config.json").read_text())
    assert set(saved) == {"model_cfg", "preprocess_cfg"}
    assert {"embed_dim", "vision_cfg", "text_cfg"} <= set(saved["model_cfg"])
    assert (folder / "open_clip_model.safetensors").is_file()

    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{folder}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
    model.eval()
    assert tokenizer.context_length == CFG.context_length

    images = _test_batch(world, preprocess)
    assert images.shape[1:] == (3, WORLD.image_size, WORLD.image_size)
    texts = tokenizer([f"a photo of a {c}." for c in world.class_names])
    assert torch.equal(model.encode_image(images), tiny_clip.model.encode_image(images))
    assert torch.equal(model.encode_text(texts), tiny_clip.model.encode_text(texts))
    assert torch.equal(model.logit_scale, tiny_clip.model.logit_scale)


@torch.no_grad()
def test_tiny_classifier_reloads_through_timm_local_dir(world: World, tmp_path: Path) -> None:
    import timm
    from timm.data import create_transform, resolve_data_config

    trained = T.train_tiny_classifier(world, CFG)
    folder = T.save_timm(trained, tmp_path / "cls", world)
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["num_classes"] == WORLD.n_classes
    assert cfg["label_names"] == world.class_names
    assert cfg["imagenet_indices"] == world.imagenet_indices
    pre = cfg["pretrained_cfg"]
    assert pre["input_size"] == [3, WORLD.image_size, WORLD.image_size]
    assert {"mean", "std", "interpolation", "crop_pct"} <= set(pre)
    assert (folder / "model.safetensors").is_file()

    model = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    assert model.pretrained_cfg["label_names"] == world.class_names
    transform = create_transform(**resolve_data_config({}, model=model))
    images = _test_batch(world, transform)
    assert torch.equal(model(images), trained.model(images))


@torch.no_grad()
def test_finetuned_twin_changes_only_the_image_tower(
    world: World, tiny_clip: T.TrainedModel, tmp_path: Path
) -> None:
    base_dir = T.save_open_clip(tiny_clip, tmp_path / "clip")
    twin = T.finetune_tiny_clip(base_dir, world, CFG)
    twin_dir = T.save_open_clip(twin, tmp_path / "twin")
    model, preprocess, tokenizer = T.load_open_clip(twin_dir)

    images = _test_batch(world, preprocess)
    texts = tokenizer([f"a photo of a {c}." for c in world.class_names])
    assert torch.equal(model.encode_image(images), twin.model.encode_image(images))
    assert torch.equal(model.encode_text(texts), tiny_clip.model.encode_text(texts))
    assert not torch.equal(model.encode_image(images), tiny_clip.model.encode_image(images))


@torch.no_grad()
def test_contrastive_fine_tuning_differs_from_supervised_only_by_its_loss(
    world: World, tiny_clip: T.TrainedModel, tmp_path: Path
) -> None:
    base_dir = T.save_open_clip(tiny_clip, tmp_path / "clip")
    contrastive = T.finetune_tiny_clip(base_dir, world, CFG, objective="contrastive")
    supervised = T.finetune_tiny_clip(base_dir, world, CFG)
    assert contrastive.name == T.TINY_CLIP_FT_CONTRASTIVE and supervised.name == T.TINY_CLIP_FT
    preprocess, tokenizer = T.load_open_clip(base_dir)[1:]
    images = _test_batch(world, preprocess)
    texts = tokenizer([f"a photo of a {c}." for c in world.class_names])
    # the text side stays the base model's; the image towers move, and differently
    assert torch.equal(contrastive.model.encode_text(texts), tiny_clip.model.encode_text(texts))
    feats = [m.model.encode_image(images) for m in (contrastive, supervised, tiny_clip)]
    assert not torch.equal(feats[0], feats[2]) and not torch.equal(feats[0], feats[1])
    again = T.finetune_tiny_clip(base_dir, world, CFG, objective="contrastive").model
    assert torch.equal(again.encode_image(images), feats[0])  # deterministic
    with pytest.raises(ValueError, match="objective"):
        T.finetune_tiny_clip(base_dir, world, CFG, objective="triplet")


def test_contrastive_twin_is_opt_in_and_trains_its_base(world: World, tmp_path: Path) -> None:
    assert T.TINY_CLIP_FT_CONTRASTIVE not in T.ZOO_MODELS  # the demo's zoo is unchanged
    cfg = T.TrainConfig(**{**CFG.__dict__, "models": (T.TINY_CLIP_FT_CONTRASTIVE,)})
    zoo = T.train_zoo(world, cfg, tmp_path, progress=False, threads=1)
    assert list(zoo) == [T.TINY_CLIP_FT_CONTRASTIVE]
    record = json.loads((zoo[T.TINY_CLIP_FT_CONTRASTIVE] / "spurbench_train.json").read_text())
    assert record["model"] == T.TINY_CLIP_FT_CONTRASTIVE
    assert (T.zoo_dir(world, cfg, tmp_path) / T.TINY_CLIP / "spurbench_train.json").is_file()
    with pytest.raises(ValueError, match="unknown models"):
        T.TrainConfig(models=("tiny_clip_ft_triplet",))


def test_training_is_deterministic(world: World, tiny_clip: T.TrainedModel) -> None:
    again = T.train_tiny_clip(world, CFG).model.state_dict()
    first = tiny_clip.model.state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)
    other = T.train_tiny_clip(world, T.TrainConfig(**{**CFG.__dict__, "seed": 1})).model
    assert not torch.equal(other.state_dict()["visual.conv1.weight"], first["visual.conv1.weight"])


def test_train_zoo_writes_every_model_and_hits_the_cache(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    zoo = T.train_zoo(world, CFG, tmp_path, progress=False, threads=1)
    assert list(zoo) == list(T.ZOO_MODELS)
    for name, folder in zoo.items():
        record = json.loads((folder / "spurbench_train.json").read_text())
        assert record["model"] == name and record["world_key"] == WORLD.key()
    assert not list(zoo[T.TINY_CLIP].parent.glob(".*tmp-*"))  # no temporary folders left

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("trained again instead of using the cache")

    for name in T.TRAINERS:
        monkeypatch.setitem(T.TRAINERS, name, boom)
    assert T.train_zoo(world, CFG, tmp_path, progress=False) == zoo

    # a zoo of fewer models reuses the models already trained with the same recipe
    assert T.train_zoo(world, T.TrainConfig(**{**CFG.__dict__, "models": (T.TINY_CLIP,)}),
                       tmp_path, progress=False) == {T.TINY_CLIP: zoo[T.TINY_CLIP]}  # fmt: skip

    # a different training config is a different cache entry
    with pytest.raises(AssertionError, match="cache"):
        T.train_zoo(world, T.TrainConfig(**{**CFG.__dict__, "seed": 5}), tmp_path, progress=False)


def test_train_zoo_trains_the_base_clip_for_a_requested_twin(world: World, tmp_path: Path) -> None:
    cfg = T.TrainConfig(**{**CFG.__dict__, "models": (T.TINY_CLIP_FT,)})
    zoo = T.train_zoo(world, cfg, tmp_path, progress=False, threads=1)
    assert list(zoo) == [T.TINY_CLIP_FT]
    assert (T.zoo_dir(world, cfg, tmp_path) / T.TINY_CLIP / "spurbench_train.json").is_file()


@torch.no_grad()
def test_saved_clip_scores_through_the_evaluation_pipeline(
    world: World, tiny_clip: T.TrainedModel, tmp_path: Path
) -> None:
    """A saved tiny CLIP is measured by spurbench's own pipeline (synth keeps no accuracy path
    of its own): its 1-vs-N predictions are the zero-shot argmax of open_clip's own forward."""
    import numpy as np
    import torch.nn.functional as F
    from PIL import Image

    from spurbench.evaluate import evaluate
    from spurbench.evaluate.runner import as_dataset

    folder = T.save_open_clip(tiny_clip, tmp_path / "clip")
    dataset = as_dataset(world.counteranimal_root)
    (res,) = evaluate(f"local-dir:{folder}", dataset, ["1vN"], templates=[T.ZERO_SHOT_TEMPLATE],
                      cache_dir=tmp_path / "cache", n_boot=20, show_progress=False)  # fmt: skip
    assert len(res.predictions) == len(dataset.table) > 0

    # independent: open_clip's forward of the saved folder, over the world's classes
    model, preprocess, tokenizer = T.load_open_clip(folder)
    name_of = dict(world.classes)
    labels = np.array(sorted(name_of))
    prompts = [T.ZERO_SHOT_TEMPLATE.format(c=name_of[c]) for c in labels]
    text = F.normalize(model.encode_text(tokenizer(prompts)), dim=-1)
    images = torch.stack([preprocess(Image.open(p).convert("RGB")) for p in dataset.table["path"]])
    logits = (F.normalize(model.encode_image(images), dim=-1) @ text.T).numpy()
    top2 = np.sort(logits, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-4  # a near-tie may flip with the batch size
    expected = labels[logits.argmax(axis=1)]
    got = res.predictions.set_index("image_id").loc[dataset.table["image_id"]]
    top1 = np.array([int(t[0]) for t in got["topk_labels"]])
    assert clear.mean() > 0.5
    np.testing.assert_array_equal(top1[clear], expected[clear])
    truth = dataset.table["label"].to_numpy()
    assert got["correct"].to_numpy()[clear].tolist() == (expected == truth)[clear].tolist()


def test_class_names_are_open_clip_imagenet_names() -> None:
    """The world spells the names out (importing open_clip is slow); they must match it."""
    from open_clip import IMAGENET_CLASSNAMES

    from spurbench.synth.world import COUNTERANIMAL_CLASSES

    assert len(COUNTERANIMAL_CLASSES) == 20
    assert all(IMAGENET_CLASSNAMES[i] == name for i, name in COUNTERANIMAL_CLASSES)


def test_train_config_key_and_presets() -> None:
    assert CFG.key() == T.TrainConfig(**CFG.__dict__).key()
    assert CFG.key() != T.TrainConfig(**{**CFG.__dict__, "seed": 1}).key()
    fast = T.TrainConfig.fast(seed=2)
    assert fast.seed == 2 and fast.clip_steps < T.TrainConfig().clip_steps
    with pytest.raises(ValueError):
        T.TrainConfig(models=("resnet",))
