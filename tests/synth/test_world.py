"""The synthetic world generator: determinism, the planted distribution and the release layout."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import stats

from spurbench.synth import render
from spurbench.synth.world import (
    COUNTERANIMAL_INDICES,
    MANIFEST_COLUMNS,
    World,
    WorldConfig,
    generate_world,
    hidden_object_paths,
    plan_world,
    render_seeds,
    train_background_probs,
)

#: Small enough to render in about a second, big enough to hold every kind of cell.
SMALL = WorldConfig(n_classes=4, n_backgrounds=4, n_train_per_class=30, n_test_per_cell=3)


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return generate_world(SMALL, tmp_path_factory.mktemp("world") / "w")


def test_same_seed_gives_byte_identical_files(world: World, tmp_path: Path) -> None:
    again = generate_world(SMALL, tmp_path / "again")
    first, second = _hashes(world.root), _hashes(again.root)
    assert first == second
    assert any(k.endswith(".png") for k in first) and "manifest.csv" in first


def test_different_seed_gives_different_images(world: World, tmp_path: Path) -> None:
    other = generate_world(WorldConfig(**{**SMALL.__dict__, "seed": 1}), tmp_path / "other")
    first, second = _hashes(world.root), _hashes(other.root)
    pngs = [k for k in first if k.endswith(".png") and k in second]
    assert pngs
    assert sum(first[k] != second[k] for k in pngs) == len(pngs)


def test_every_test_cell_is_populated(world: World) -> None:
    test = world.split("test")
    counts = test.groupby(["label", "background"]).size()
    assert len(counts) == SMALL.n_classes * SMALL.n_backgrounds
    assert (counts == SMALL.n_test_per_cell).all()
    assert all((world.root / p).is_file() for p in world.manifest["path"])


def test_manifest_columns_and_concepts(world: World) -> None:
    m = world.manifest
    assert tuple(m.columns) == MANIFEST_COLUMNS
    assert set(m["split"]) == {"train", "test"}
    assert set(m["group"]) <= {"common", "counter", "other"}
    for col in ("shape", "colour", "texture", "background"):
        assert m[col].map(lambda v: isinstance(v, str) and v != "").all(), col
    # one object per class, and no two classes share one
    per_class = m.groupby("label")[["shape", "colour", "texture"]].nunique()
    assert (per_class == 1).all().all()
    objects = m.drop_duplicates("label")[["shape", "colour"]]
    assert not objects.duplicated().any()
    assert list(m.drop_duplicates("label")["label"]) == list(COUNTERANIMAL_INDICES[:4])


def test_groups_follow_the_planted_pairs(world: World) -> None:
    for row in world.manifest.itertuples():
        common, counter = world.planted[row.label]
        expected = (
            "common" if row.background == common else "counter" if row.background == counter
            else "other"
        )  # fmt: skip
        assert row.group == expected
    # class k's common background is backgrounds[k % B] and its counter backgrounds[(k+1) % B]
    for k, (label, _) in enumerate(world.classes):
        b = world.backgrounds
        assert world.planted[label] == (b[k % len(b)], b[(k + 1) % len(b)])


def test_counteranimal_release_layout(world: World) -> None:
    root = world.counteranimal_root
    assert sorted(p.name for p in root.iterdir()) == sorted(
        f"{idx} {name}" for idx, name in world.classes
    )
    for idx, name in world.classes:
        common, counter = world.planted[idx]
        folders = sorted(p.name for p in (root / f"{idx} {name}").iterdir())
        assert folders == sorted([f"common-{common}", f"counter-{counter}"])
        for sub in folders:
            files = list((root / f"{idx} {name}" / sub).iterdir())
            assert len(files) == SMALL.n_test_per_cell
            assert all(f.suffix == ".png" for f in files)


def test_world_json_records_config_and_pairs(world: World) -> None:
    meta = json.loads((world.root / "world.json").read_text())
    assert meta["key"] == SMALL.key()
    assert WorldConfig(**meta["config"]) == SMALL
    assert {p["label"]: (p["common"], p["counter"]) for p in meta["planted"]} == world.planted


def test_existing_world_is_returned_without_regenerating(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("regenerated a cached world")

    monkeypatch.setattr("spurbench.synth.world._write_images", boom)
    again = generate_world(SMALL, world.root)
    assert again.config == SMALL and len(again.manifest) == len(world.manifest)


def test_world_of_another_config_is_replaced(tmp_path: Path) -> None:
    generate_world(SMALL, tmp_path / "w")
    other = WorldConfig(**{**SMALL.__dict__, "n_test_per_cell": 1, "n_train_per_class": 2})
    world = generate_world(other, tmp_path / "w")
    assert World.load(tmp_path / "w").config == other == world.config
    assert len(world.split("test")) == 4 * 4 * 1
    assert [p.name for p in tmp_path.iterdir()] == ["w"]  # no temporary folders left behind


def test_refuses_to_overwrite_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("user data")
    with pytest.raises(FileExistsError):
        generate_world(SMALL, tmp_path)
    assert (tmp_path / "precious.txt").read_text() == "user data"


def test_config_key_is_stable_and_sensitive() -> None:
    assert SMALL.key() == WorldConfig(**SMALL.__dict__).key()
    assert SMALL.key() != WorldConfig(**{**SMALL.__dict__, "rho": 0.5}).key()
    assert len(SMALL.key()) == 12


@pytest.mark.parametrize("rho", [0.25, 0.5, 0.9, 1.0])
def test_planted_probabilities(rho: float) -> None:
    cfg = WorldConfig(n_backgrounds=4, rho=rho)
    for slot in range(cfg.n_classes):
        p = train_background_probs(cfg, slot)
        assert p.sum() == pytest.approx(1.0) and (p >= 0).all()
        common, counter = slot % 4, (slot + 1) % 4
        assert p[common] == pytest.approx(rho)
        if rho == cfg.uniform_rho:
            assert p == pytest.approx(np.full(4, 0.25))
        else:  # the planted counter is the rarest background
            assert p[counter] == p.min() and p[counter] < p[common]


@pytest.mark.parametrize("rho", [1 / 6, 0.5, 0.9])
def test_train_background_frequencies_match_planted_distribution(rho: float) -> None:
    """Exact binomial test of every (class, background) count, Bonferroni-corrected at 1e-3.

    A correct sampler fails this with probability below 1e-3 for any seed; a wrong formula (off
    by even a few points at these sample sizes) fails it for every seed.
    """
    cfg = WorldConfig(rho=rho, n_train_per_class=2000)
    train = plan_world(cfg).query("split == 'train'")
    backgrounds = render.BACKGROUND_NAMES[: cfg.n_backgrounds]
    alpha = 1e-3 / (cfg.n_classes * cfg.n_backgrounds)
    for slot, label in enumerate(COUNTERANIMAL_INDICES[: cfg.n_classes]):
        counts = train.loc[train["label"] == label, "background"].value_counts()
        probs = train_background_probs(cfg, slot)
        for j, bg in enumerate(backgrounds):
            k = int(counts.get(bg, 0))
            pvalue = stats.binomtest(k, cfg.n_train_per_class, probs[j]).pvalue
            assert pvalue > alpha, (label, bg, k, probs[j])
    # and pooled over classes, the groups have the planted mass
    groups = train["group"].value_counts(normalize=True)
    assert groups["common"] == pytest.approx(rho, abs=0.01)


def test_generated_manifest_matches_plan(world: World) -> None:
    planned = plan_world(SMALL)
    assert planned.equals(world.manifest)


def test_captions_name_the_class_and_optionally_the_background() -> None:
    plain = plan_world(SMALL)
    assert all(row.class_name in row.caption for row in plain.itertuples())
    assert not any(f" on {row.background}." in row.caption for row in plain.itertuples())
    with_bg = plan_world(WorldConfig(**{**SMALL.__dict__, "caption_background_fraction": 1.0}))
    assert all(row.caption.endswith(f" on {row.background}.") for row in with_bg.itertuples())


@pytest.mark.parametrize(
    "bad",
    [{"n_classes": 21}, {"n_backgrounds": 2}, {"rho": 1.5}, {"hidden_object_fraction": 1.0}],
)
def test_invalid_configs_are_rejected(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        WorldConfig(**bad)  # type: ignore[arg-type]


def test_badge_concepts_are_independent_of_class_and_background() -> None:
    """The world's concepts carry no information about the label (nor the background): a
    chi-square test of independence on a large plan, where the object's colour is, by
    construction, a function of the class (the contrast the concepts exist for)."""
    from spurbench.synth.world import CONCEPT_COLUMNS

    m = plan_world(WorldConfig(n_train_per_class=300, n_test_per_cell=50, rho=0.9))
    assert set(CONCEPT_COLUMNS) <= set(m.columns)
    for split in ("train", "test"):
        part = m[m["split"] == split]
        for concept in ("badge_colour", "badge_texture"):
            assert part[concept].nunique() == len(
                render.BADGE_COLOURS if concept == "badge_colour" else render.TEXTURES
            )
            for other in ("label", "background"):
                table = pd.crosstab(part[concept], part[other])
                assert stats.chi2_contingency(table).pvalue > 1e-3, (split, concept, other)
        # the object's colour is determined by the class: maximal dependence
        assert (part.groupby("label")["colour"].nunique() == 1).all()
    test = m[m["split"] == "test"]  # balanced cells: the background is independent too
    assert stats.chi2_contingency(pd.crosstab(test["background"], test["label"])).pvalue == 1.0


@pytest.mark.parametrize("texture", render.TEXTURES)
def test_badge_is_drawn_in_a_corner_with_its_colour(texture: str) -> None:
    spec = render.foreground_spec(0)
    size = 40
    rgb = np.asarray(
        render.render_image(spec, "snow", np.random.default_rng(1), size, ("blue", texture)),
        dtype=np.float64,
    ) / 255
    plain = np.asarray(
        render.render_image(spec, "snow", np.random.default_rng(1), size), dtype=np.float64
    ) / 255
    side = round(render.BADGE_SIDE * size)
    changed = np.abs(rgb - plain).sum(axis=2) > 1e-9
    corners = [changed[:side, :side], changed[:side, -side:], changed[-side:, :side],
               changed[-side:, -side:]]  # fmt: skip
    hit = [c.mean() for c in corners]
    assert max(hit) > 0.5 and changed.sum() <= side * side  # one corner, nothing else
    i = int(np.argmax(hit))
    patch = [rgb[:side, :side], rgb[:side, -side:], rgb[-side:, :side], rgb[-side:, -side:]][i]
    pixels = patch.reshape(-1, 3)
    blue = np.asarray(render.COLOURS["blue"])
    # its lightest pixels are the badge colour (textured parts are a darker shade of it)
    bright = pixels[pixels.sum(axis=1) >= np.quantile(pixels.sum(axis=1), 0.75)]
    np.testing.assert_allclose(bright.mean(axis=0), blue, atol=0.1)


def test_hidden_objects_are_background_only_training_images(tmp_path: Path) -> None:
    """A hidden-object image is its background layer alone (badge included), re-drawn here from
    the renderer's primitives; every other image has its object; the test split has no hidden
    object, so the test images are those of a world without the option."""
    cfg = WorldConfig(**{**SMALL.__dict__, "hidden_object_fraction": 0.2})
    world = generate_world(cfg, tmp_path / "w")
    hidden = hidden_object_paths(cfg)
    train = set(world.split("train")["path"])
    assert hidden <= train and len(hidden) == cfg.n_classes * 6  # 0.2 of 30 per class
    seeds = render_seeds(cfg)
    for row in world.manifest.itertuples():
        rng = np.random.default_rng(seeds[row.path])
        spec = render.ForegroundSpec(row.shape, row.colour, row.texture)
        badge = (row.badge_colour, row.badge_texture)
        bg, *_ = render.render_layers(spec, row.background, rng, cfg.image_size, badge=badge)
        stored = np.asarray(Image.open(world.root / row.path))
        alone = np.round(np.clip(bg, 0, 1) * 255).astype(np.uint8)
        assert (stored == alone).all() == (row.path in hidden), row.path
    plain = generate_world(WorldConfig(**{**SMALL.__dict__, "hidden_object_fraction": 0.0}),
                           tmp_path / "plain")  # fmt: skip
    tests = {k: v for k, v in _hashes(world.root).items() if "images/test" in k}
    assert tests and tests == {k: v for k, v in _hashes(plain.root).items() if "images/test" in k}


@pytest.mark.parametrize("rho", [1 / 6, 0.9])
def test_hidden_objects_follow_the_planted_background_distribution(rho: float) -> None:
    """The background alone carries exactly the planted P(class | background): on a large plan
    the hidden images sit on their class's common background with probability rho."""
    cfg = WorldConfig(rho=rho, n_train_per_class=2000, hidden_object_fraction=0.5)
    plan = plan_world(cfg)
    hidden = plan[plan["path"].isin(hidden_object_paths(cfg))]
    assert len(hidden) == cfg.n_classes * 1000 and (hidden["split"] == "train").all()
    assert (hidden["group"] == "common").mean() == pytest.approx(rho, abs=0.015)
    assert WorldConfig().hidden_object_fraction > 0  # on by default
