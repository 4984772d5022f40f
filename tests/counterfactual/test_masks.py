"""Masks: the synthetic world's are exact, user folders mirror the image tree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spurbench.counterfactual.masks import (
    SYNTHETIC,
    USER,
    folder_masks,
    mask_lookup,
    synthetic_masks,
)
from spurbench.data.layouts import open_dataset
from spurbench.errors import DatasetError
from spurbench.synth.render import ForegroundSpec, compose, render_layers
from spurbench.synth.world import World, WorldConfig, generate_world, render_seeds

SMALL = WorldConfig(n_classes=3, n_backgrounds=3, n_train_per_class=2, n_test_per_cell=2)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    return generate_world(SMALL, tmp_path_factory.mktemp("cf") / "world")


def test_rendered_layers_recompose_the_stored_image(world):
    """The layers re-drawn from a seed are the ones the world's PNG was composed from."""
    seeds = render_seeds(world.config)
    for row in world.manifest.itertuples():
        spec = ForegroundSpec(row.shape, row.colour, row.texture)
        rng = np.random.default_rng(seeds[row.path])
        bg, fg, alpha = render_layers(spec, row.background, rng, world.config.image_size)
        stored = np.asarray(Image.open(world.root / row.path))
        assert (np.asarray(compose(bg, fg, alpha)) == stored).all(), row.path


def test_synthetic_masks_find_counteranimal_copies(world):
    ds = open_dataset(world.counteranimal_root)
    lookup = mask_lookup(ds, None)
    direct = synthetic_masks(world.root)
    manifest = open_dataset(world.root / "manifest.csv")
    by_name = {
        (r.label, r.background, Path(r.path).name): r for r in manifest.table.itertuples()
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
