"""Ground truth for curation: the synthetic world with a planted shortcut and tiny trained models.

At ``rho = 0.9`` each class sits on its planted common background 90 % of the time in training
and its planted counter background is the rarest, so a tiny CLIP trained there should be best on
the common and worst on the counter background, and spurious discovery should find those pairs.
At ``rho = 1/B`` background and class are independent and discovery should find (almost) nothing.
The worlds are generated with a background-caption fraction of 0.5 for the high-rho world, so the
tiny CLIP has seen background words and zero-shot tagging is learnable (at 0 it never has); the
test images do not depend on ``rho`` or captions, so both worlds share them.

Worlds and models come from the session's ``synth_cache`` (tests/conftest.py), so the uniform
world's tiny CLIP is the one the ground-truth tests already trained, not a second training run.
The numbers quoted in comments were measured with world generator version 3 and seed 0; the
assertions leave room for the ties that groups of 20 images produce (see each test). With
version 5 (badges) and seed 0 discovery keeps 10 of 10, with the planted common for 9 and the
planted counter for 7.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from spurbench.curate import (
    AUTO,
    Discovery,
    DiscoveryConfig,
    discover,
    export_dataset,
    load_pool,
    review_table,
    tag_backgrounds,
)
from spurbench.curate.scoring import ModelCache, predict
from spurbench.evaluate import evaluate
from spurbench.synth.train import (
    TINY_CLIP,
    TINY_CLIP_FT,
    TrainConfig,
)
from spurbench.synth.world import World, WorldConfig
from tests.conftest import trained_world

pytestmark = pytest.mark.slow

HIGH = WorldConfig.fast(rho=0.9, caption_background_fraction=0.5)
UNIFORM = WorldConfig.fast(rho=1 / 6)  # 1 / n_backgrounds: no correlation
#: The paper's prompt, "A photo of {c}." (the world's captions include it).
TEMPLATES = "paper"


@dataclass
class Trained:
    world: World
    models: dict[str, str]  # zoo name -> spurbench model name


def _trained(cache: Path, cfg: WorldConfig, models: tuple[str, ...]) -> Trained:
    world, zoo = trained_world(cache, cfg, TrainConfig.fast(models=models))
    return Trained(world, {k: f"local-dir:{v}" for k, v in zoo.items()})


@pytest.fixture(scope="session")
def high(synth_cache: Path) -> Trained:
    return _trained(synth_cache, HIGH, (TINY_CLIP, TINY_CLIP_FT))


@pytest.fixture(scope="session")
def uniform(synth_cache: Path) -> Trained:
    return _trained(synth_cache, UNIFORM, (TINY_CLIP,))


@pytest.fixture(scope="session")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("curate_cache")


@pytest.fixture(scope="session")
def models() -> ModelCache:
    return ModelCache()


def _config(**kw: object) -> DiscoveryConfig:
    return DiscoveryConfig(protocol="1vN", templates=TEMPLATES, **kw)  # type: ignore[arg-type]


def _truth_pool(world: World):  # type: ignore[no-untyped-def]
    return load_pool(world.root / "manifest.csv", split="test")


@pytest.fixture(scope="session")
def high_found(high: Trained, cache: Path, models: ModelCache) -> Discovery:
    return discover(
        _truth_pool(high.world),
        [high.models[TINY_CLIP]],
        held_out=[high.models[TINY_CLIP_FT]],
        config=_config(),
        cache_dir=cache,
        models=models,
    )


def _with_planted(found: Discovery, world: World) -> pd.DataFrame:
    s = found.selection.copy()
    s["planted_common"] = s["label"].map(lambda y: world.planted[int(y)][0])
    s["planted_counter"] = s["label"].map(lambda y: world.planted[int(y)][1])
    return s


def test_high_rho_selects_the_planted_pairs(high: Trained, high_found: Discovery) -> None:
    s = _with_planted(high_found, high.world)
    n = len(s)
    kept = s[s["kept"]]
    # measured (generator v3, seed 0): 9 of 10 kept; vulture is dropped by the rule itself,
    # its worst background being exactly 5 points below its best (not more)
    assert len(kept) >= 0.8 * n, s
    acc = high_found.cells[high_found.cells["role"] == "reference"].set_index(
        ["label", "background"]
    )["accuracy"]
    # The planted backgrounds are the best and a worst one. Groups of 20 images tie often (many
    # at 100 % or 0 %); ties go to the mean true-class probability, which picked the planted
    # common background for 9 of 9 kept classes and the planted counter for 7 of 9.
    best = [
        acc[(r.label, r.planted_common)] == pytest.approx(r.acc_common) for r in kept.itertuples()
    ]
    worst = [acc[(r.label, r.planted_counter)] == pytest.approx(r.acc_counter)
             for r in kept.itertuples()]  # fmt: skip
    assert sum(best) >= 0.9 * len(kept) and sum(worst) >= 0.8 * len(kept), kept
    assert (kept["common"] == kept["planted_common"]).mean() >= 0.8, kept
    assert (kept["counter"] == kept["planted_counter"]).mean() >= 0.6, kept
    # and what was planted is what the reference model loses: the drop is almost total
    assert high_found.bias.set_index("role").loc["reference", "drop"] > 0.8


def test_high_rho_ci_separation_keeps_most(high: Trained, cache: Path, models: ModelCache) -> None:
    found = discover(_truth_pool(high.world), [high.models[TINY_CLIP]],
                     config=_config(require_ci_separation=True), cache_dir=cache,
                     models=models)  # fmt: skip
    assert found.selection["kept"].sum() >= 0.8 * len(found.selection)  # measured: 9 of 10


def test_selection_bias_of_a_held_out_model(high_found: Discovery) -> None:
    bias = high_found.bias.set_index("role")
    assert bias.loc["reference", "selection_bias"] == 0
    # the fine-tuned twin took no part in the choice. Measured: reference drop 99.4 points,
    # held out 88.3, a selection bias of 11.1 points (an earlier world version gave -1.0): the
    # pairs transfer, and choosing them with the reference flatters it somewhat
    assert bias.loc["held_out", "drop"] > 0.5
    assert abs(bias.loc["held_out", "selection_bias"]) < 0.25
    names = {m["name"]: m["role"] for m in high_found.models}
    assert sorted(names.values()) == ["held_out", "reference"]


def test_uniform_world_classes_are_dropped(
    uniform: Trained, high_found: Discovery, cache: Path, models: ModelCache
) -> None:
    pool = _truth_pool(uniform.world)
    ref = [uniform.models[TINY_CLIP]]
    paper = discover(pool, ref, config=_config(), cache_dir=cache, models=models).selection
    strict = discover(pool, ref, config=_config(require_ci_separation=True), cache_dir=cache,
                      models=models).selection  # fmt: skip
    n = len(paper)
    # Measured: the 5-point rule alone drops 6 of 10 classes (20 images a cell: one image is 5
    # points, so noise alone passes the threshold); requiring the intervals to separate drops 9.
    # The class kept then (box turtle: 8/20 on sand vs 20/20) is a real hard background for
    # this model, not a learned correlation -- a counter group can be hard for other reasons.
    assert (~paper["kept"]).sum() >= n / 2
    assert (~strict["kept"]).sum() >= 0.8 * n
    assert paper["gap"].mean() < 0.5 * high_found.selection["gap"].mean()


def test_tagging_agrees_with_true_backgrounds(
    high: Trained, cache: Path, models: ModelCache
) -> None:
    truth = _truth_pool(high.world).table["background"]
    pool = load_pool(high.world.root / "manifest.csv", split="test", background_column=None)
    result = tag_backgrounds(pool, high.models[TINY_CLIP], vocabulary=high.world.backgrounds,
                             threshold=0.5, cache_dir=cache, models=models)  # fmt: skip
    t = result.dataset.table
    agreement = float((t["background_suggestion"] == truth).mean())
    chance = 1 / len(high.world.backgrounds)
    assert agreement > 2 * chance, agreement  # measured 0.46 (chance 0.17)
    confident = t["background_source"] == AUTO
    assert 0 < confident.sum() < len(t)  # measured: 94 % above the 0.5 threshold
    assert (t.loc[confident, "background"] == truth[confident]).mean() > 2 * chance
    assert len(review_table(result.dataset)) == (~confident).sum()


def test_export_reloads_with_the_same_accuracies(
    high: Trained, high_found: Discovery, cache: Path, tmp_path: Path
) -> None:
    pool = _truth_pool(high.world)
    out = export_dataset(pool, high_found, tmp_path / "SynthCounterAnimal")
    sheet = json.loads((out.root / "datasheet.json").read_text())
    for c in sheet["counts"]["classes"]:
        for group in ("common", "counter"):
            folder = out.root / c["folder"] / f"{group}-{c[group]}"
            assert len(list(folder.iterdir())) == c[f"n_{group}"] == HIGH.n_test_per_cell
    # same model, same images, same label space: 1-vs-1000 (1-vs-N would shrink to the kept
    # classes after export, a different task)
    before = predict(high.models[TINY_CLIP], pool, "1v1000", templates=TEMPLATES, cache_dir=cache)
    (after,) = evaluate(high.models[TINY_CLIP], out.root, ("1v1000",), templates=TEMPLATES,
                        cache_dir=cache, show_progress=False)  # fmt: skip
    merged = before.table.merge(out.manifest, left_on="image_id", right_on="source_image_id")
    expected = merged.groupby(["label_x", "group"])["correct"].mean()
    got = after.per_class.set_index(["label", "group"])["accuracy"]
    assert len(got) == 2 * len(sheet["counts"]["classes"])
    assert got.to_dict() == pytest.approx(expected.to_dict())
