"""Masks: the synthetic world's are exact, user folders mirror the image tree."""

from __future__ import annotations

from pathlib import Path
from urllib.error import URLError

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from spurbench.counterfactual.estimate import GRABCUT_BOX, GRABCUT_CENTRE
from spurbench.counterfactual.masks import (
    SYNTHETIC,
    USER,
    folder_masks,
    mask_lookup,
    mask_status,
    synthetic_masks,
)
from spurbench.data.layouts import open_dataset
from spurbench.errors import DatasetError, UnknownModelError, WeightsUnavailableError
from spurbench.synth.render import SMALL_OBJECT_SCALE, ForegroundSpec, compose, render_layers
from spurbench.synth.world import (
    World,
    WorldConfig,
    generate_world,
    hidden_object_paths,
    render_seeds,
    small_object_paths,
)

SMALL = WorldConfig(n_classes=3, n_backgrounds=3, n_train_per_class=2, n_test_per_cell=2)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    return generate_world(SMALL, tmp_path_factory.mktemp("cf") / "world")


def test_rendered_layers_recompose_the_stored_image(world):
    """The layers re-drawn from a seed (badge folded into the background) are the ones the
    world's PNG was composed from, pixel for pixel."""
    seeds = render_seeds(world.config)
    for row in world.manifest.itertuples():
        spec = ForegroundSpec(row.shape, row.colour, row.texture)
        rng = np.random.default_rng(seeds[row.path])
        badge = (row.badge_colour, row.badge_texture)
        bg, fg, alpha = render_layers(
            spec, row.background, rng, world.config.image_size, badge=badge
        )
        stored = np.asarray(Image.open(world.root / row.path))
        assert (np.asarray(compose(bg, fg, alpha)) == stored).all(), row.path


def test_synthetic_masks_find_counteranimal_copies(world):
    ds = open_dataset(world.counteranimal_root)
    lookup = mask_lookup(ds, None)
    direct = synthetic_masks(world.root)
    manifest = open_dataset(world.root / "manifest.csv")
    by_name = {
        (r.label, r.background, Path(r.path).name): r
        for r in manifest.table.itertuples()
        if r.split == "test"
    }
    for _, row in ds.table.iterrows():
        mask = lookup(row)
        assert mask is not None and mask.source == SYNTHETIC
        same = by_name[(row["label"], row["background"], Path(row["path"]).name)]
        other = direct(manifest.table.loc[same.Index])
        assert np.array_equal(mask.alpha, other.alpha)
        assert 0.05 < mask.area < 0.9


def test_user_mask_folder_mirrors_the_tree(tmp_path):
    root = tmp_path / "data"
    for rel in ("1 goldfish/common-water/a.jpg", "1 goldfish/counter-sand/b.jpg"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20, 10), (9, 9, 9)).save(root / rel)
    m = np.zeros((5, 10), np.uint8)
    m[:, :5] = 255  # half-size mask: resized to the image, nearest
    (tmp_path / "masks/1 goldfish/common-water").mkdir(parents=True)
    Image.fromarray(m).save(tmp_path / "masks/1 goldfish/common-water/a.png")
    ds = open_dataset(root)
    lookup = folder_masks(ds, tmp_path / "masks")
    got = {Path(r["path"]).name: lookup(r) for _, r in ds.table.iterrows()}
    assert got["b.jpg"] is None
    assert got["a.jpg"].source == USER and got["a.jpg"].alpha.shape == (10, 20)
    assert got["a.jpg"].area == pytest.approx(0.5)
    with pytest.raises(DatasetError, match="--masks"):
        mask_lookup(ds, None)
    with pytest.raises(DatasetError, match="does not exist"):
        mask_lookup(ds, tmp_path / "nowhere")


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a >= 0.5, b >= 0.5
    return float((a & b).sum() / (a | b).sum())


def _copy_with_boxes(world: World, tmp_path: Path, n: int = 6) -> tuple[Path, list[np.ndarray]]:
    """World test photos copied outside the world (so its exact masks are not found), with a
    manifest of boxes around each object (its exact mask's box, 2 px margin); the exact masks."""
    seeds = render_seeds(world.config)
    rows, truth = [], []
    for r in world.split("test").head(n).itertuples():
        spec = ForegroundSpec(r.shape, r.colour, r.texture)
        rng = np.random.default_rng(seeds[r.path])
        badge = (r.badge_colour, r.badge_texture)
        _, _, alpha = render_layers(spec, r.background, rng, world.config.image_size, badge=badge)
        ys, xs = np.nonzero(alpha > 0)
        box = (xs.min() - 2, ys.min() - 2, xs.max() + 3, ys.max() + 3)
        name = f"{r.Index}.png"
        (tmp_path / name).write_bytes((world.root / r.path).read_bytes())
        rows.append((name, r.label, r.class_name, r.group, *box))
        truth.append(alpha)
    cols = ["path", "label", "class_name", "group", "x0", "y0", "x1", "y1"]
    manifest = tmp_path / "boxes.csv"
    pd.DataFrame(rows, columns=cols).to_csv(manifest, index=False)
    return manifest, truth


def test_grabcut_from_boxes_recovers_the_exact_masks(world, tmp_path):
    manifest, truth = _copy_with_boxes(world, tmp_path)
    ds = open_dataset(manifest)
    lookup = mask_lookup(ds, None, boxes=True, cache_dir=tmp_path / "cache")
    masks = [lookup(row) for _, row in ds.table.iterrows()]
    assert all(m.source == GRABCUT_BOX for m in masks)
    ious = [_iou(m.alpha, t) for m, t in zip(masks, truth, strict=True)]
    assert np.median(ious) > 0.7, ious
    # estimated once, then read back from the cache
    again = [lookup(row) for _, row in ds.table.iterrows()]
    assert all(np.array_equal(a.alpha, b.alpha) for a, b in zip(masks, again, strict=True))
    # the centre prior is a rougher guess, recorded as such
    centre = mask_lookup(ds, None, source="grabcut", cache_dir=tmp_path / "cache")
    assert centre(ds.table.iloc[0]).source == GRABCUT_CENTRE


def test_boxes_are_checked(world, tmp_path):
    manifest, _ = _copy_with_boxes(world, tmp_path, n=2)
    df = pd.read_csv(manifest)
    df.loc[0, "x1"] = df.loc[0, "x0"]
    df.to_csv(manifest, index=False)
    with pytest.raises(DatasetError, match="1 boxes are empty"):
        mask_lookup(open_dataset(manifest), None, boxes=True)


def test_segmentation_model_by_name(world, tmp_path, monkeypatch):
    ds = open_dataset(world.counteranimal_root)
    row = ds.table.iloc[0]
    spec = "segmentation:lraspp_mobilenet_v3_large:random"  # random init: the code path only
    mask = mask_lookup(ds, None, source=spec, cache_dir=tmp_path)(row)
    assert mask.source == f"{spec}" and mask.alpha.shape == (32, 32)
    assert set(np.unique(mask.alpha)) <= {0.0, 1.0}
    with pytest.raises(UnknownModelError, match="lraspp_mobilenet_v3_large"):
        mask_lookup(ds, None, source="segmentation:lraspp_mobilenet")

    def offline(*args, **kwargs):
        raise URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsUnavailableError, match="hub cache"):
        mask_lookup(ds, None, source="segmentation:lraspp_mobilenet_v3_large")


def test_small_object_option_is_off_by_default_and_exact_when_on(tmp_path):
    assert WorldConfig().small_counter_fraction == 0 and not small_object_paths(SMALL)
    # off, the cache key (so every existing world) is what it was before the option existed
    assert SMALL.key() == WorldConfig(**{**SMALL.__dict__, "small_counter_fraction": 0.0}).key()
    cfg = WorldConfig(**{**SMALL.__dict__, "small_counter_fraction": 0.5})
    assert cfg.key() != SMALL.key()
    world = generate_world(cfg, tmp_path / "w")
    small = small_object_paths(cfg)
    assert len(small) == SMALL.n_classes * 1  # 1 of 2 images of each counter cell
    lookup = synthetic_masks(world.root)
    for _, row in open_dataset(world.root / "manifest.csv").table.iterrows():
        rel = str(Path(row["path"]).relative_to(world.root))
        area = lookup(row).area
        assert (area < 0.1) if rel in small else (area > 0.1), (rel, area)
    # the small objects' layers recompose their stored images exactly
    seeds = render_seeds(cfg)
    for row in world.manifest[world.manifest["path"].isin(small)].itertuples():
        rng = np.random.default_rng(seeds[row.path])
        spec = ForegroundSpec(row.shape, row.colour, row.texture)
        badge = (row.badge_colour, row.badge_texture)
        layers = render_layers(spec, row.background, rng, cfg.image_size, SMALL_OBJECT_SCALE, badge)
        assert (np.asarray(compose(*layers)) == np.asarray(Image.open(world.root / row.path))).all()


def test_hidden_object_images_have_an_empty_mask(tmp_path):
    """A training image whose object is hidden has no foreground: its exact mask is empty, so
    the guard keeps it out of every variant (nothing to swap)."""
    cfg = WorldConfig(**{**SMALL.__dict__, "n_train_per_class": 4, "hidden_object_fraction": 0.5})
    world = generate_world(cfg, tmp_path / "w")
    hidden = hidden_object_paths(cfg)
    lookup = synthetic_masks(world.root)
    for _, row in open_dataset(world.root / "manifest.csv").table.iterrows():
        mask = lookup(row)
        rel = str(Path(row["path"]).relative_to(world.root))
        assert (mask_status(mask) == "too_small") == (rel in hidden), rel
        assert (mask.alpha.max() == 0) == (rel in hidden), rel
