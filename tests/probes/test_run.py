"""The probes wired into the product: feature-cache reuse, the pre-head head, the store, the CLI.

Ground truth comes from outside the probe code: the evaluation path's predictions (computed on
embeddings through the model's own head), ``scipy.stats.kurtosis`` on the cached features, and a
dataset whose concept labels are planted in the pixels.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from scipy.stats import kurtosis
from typer.testing import CliRunner

from spurbench.cli.probe import probe_cmd
from spurbench.data.layouts import open_dataset
from spurbench.evaluate import evaluate
from spurbench.features.cache import encode_dataset
from spurbench.heads.cached import head_for
from spurbench.models import create_model
from spurbench.probes import PROBES, ProbeConfigError, probe
from spurbench.store import ResultsStore
from tests.conftest import save_tiny_clip, write_image


class Counter:
    """Count calls to an adapter's image encoder and head builder (the adapter stays real)."""

    def __init__(self, adapter) -> None:
        self.encode = self.head = 0
        encode, head = adapter.encode_images, adapter.head

        def counted_encode(x):
            self.encode += 1
            return encode(x)

        def counted_head(*a, **k):
            self.head += 1
            return head(*a, **k)

        adapter.encode_images, adapter.head = counted_encode, counted_head


@pytest.fixture(scope="module")
def probed(tiny_clip_dir, tmp_path_factory):
    """Evaluate a tiny CLIP on a CounterAnimal folder, then probe it on the same cache."""
    from tests.conftest import make_counteranimal

    tmp = tmp_path_factory.mktemp("probed")
    data = make_counteranimal(tmp / "CounterAnimal", n_common=8, n_counter=7)
    model = create_model(f"local-dir:{tiny_clip_dir}")
    kw = dict(cache_dir=tmp / "cache", show_progress=False, batch_size=16)
    (evaluated,) = evaluate(model, data, ["1vN"], n_boot=20, **kw)
    counter = Counter(model)
    store = ResultsStore(tmp / "r.duckdb")
    result = probe(model, data, store=store, protocol="1vN", **kw)
    return dict(
        model=model, data=data, kw=kw, evaluated=evaluated, counter=counter, store=store,
        result=result, tmp=tmp,
    )  # fmt: skip


def test_probe_after_evaluation_does_not_run_the_model(probed):
    assert probed["counter"].encode == 0  # features from the evaluation's cache
    assert probed["counter"].head == 0  # text head from the evaluation's head cache
    assert probed["result"].probes == PROBES
    assert probed["result"].n_images == 3 * 15


def test_pre_head_logits_give_the_evaluation_predictions(probed):
    model, result = probed["model"], probed["result"]
    ds = open_dataset(probed["data"])
    feats = encode_dataset(model, ds, probed["kw"]["cache_dir"], show_progress=False)
    H = feats.pre_head[feats.ok]
    head = result.head
    assert head.composed and head.normalized and head.weight.shape == (3, H.shape[1])
    # W_H = s·W·Pᵀ, built here independently from the adapter's own head and projection
    own = head_for(model, ds.classes.subset(head.labels), ("A photo of {c}.",), None)
    W_H = own.scale * own.weight.astype(np.float64) @ model.projection().T.astype(np.float64)
    np.testing.assert_allclose(head.weight, W_H, rtol=1e-6, atol=1e-8)
    pre_head_pred = head.labels[(H @ W_H.T).argmax(axis=1)]
    evaluated = np.stack(probed["evaluated"].predictions["topk_labels"])[:, 0]
    np.testing.assert_array_equal(pre_head_pred, evaluated)
    assert result.value("directions", "head_argmax_agreement") == 1.0
    # the full-rank pruning row is the evaluation's accuracy on the held-out images
    curve = result.pruning[result.pruning["keep"] == "most"]
    full = curve.loc[curve["k"] == curve["n_directions"], "accuracy"].iloc[0]
    held = result.pruning_split.evaluation
    assert held.size == 23 and result.pruning_split.importance.size == 22
    correct = probed["evaluated"].predictions["correct"].to_numpy()
    assert full == pytest.approx(correct[held].mean())


def test_store_round_trip_and_kurtosis_matches_scipy(probed):
    model, result, store = probed["model"], probed["result"], probed["store"]
    ds = open_dataset(probed["data"])
    feats = encode_dataset(model, ds, probed["kw"]["cache_dir"], show_progress=False)
    stored = store.probe_results()
    assert set(stored["probe"]) == set(PROBES)
    assert (stored["fingerprint"] == model.fingerprint).all()
    assert set(stored["probe_id"]) == set(result.probe_ids.values())
    # every tidy row round-trips (value, and extra as JSON)
    cols = ["probe", "metric", "key"]
    merged = result.rows.merge(stored, on=cols, suffixes=("", "_db"), validate="one_to_one")
    assert len(merged) == len(result.rows) == len(stored)
    np.testing.assert_allclose(merged["value_db"], merged["value"], equal_nan=True)
    for mine, theirs in zip(merged["extra"], merged["extra_db"], strict=True):
        assert json.loads(mine) == json.loads(theirs)
    # kurtosis in the store equals scipy's on the cached features, in both spaces
    kurt = store.probe_results("kurtosis").set_index(["metric", "key"])["value"]
    for space, X in (("pre_head", feats.pre_head), ("embedding", feats.embedding)):
        expected = kurtosis(X[feats.ok].astype(np.float64), axis=1, fisher=False).mean()
        assert kurt[("mean_image_kurtosis", space)] == pytest.approx(expected, rel=1e-6)
    # the tidy rows carry what the issue asks for
    rows = result.rows.set_index(["probe", "metric", "key"])["value"]
    assert ("directions", "concentration_top1", "") in rows
    assert ("pruning", "max_prunable_fraction", "") in rows
    assert ("concepts", "n_encoded", "directions") in rows
    assert rows[("pruning", "accuracy", "3")] == rows[("pruning", "unpruned_accuracy", "")]
    assert rows[("pruning", "n_evaluation_images", "")] == 23
    # rerunning replaces the probe runs instead of duplicating them
    probe(model, probed["data"], store=store, probes=["kurtosis"], protocol="1vN", **probed["kw"])
    assert len(store.probe_results()) == len(stored)
    assert len(store.query("SELECT * FROM probe_runs")) == len(PROBES)


def test_supervised_head_keeps_its_bias_and_exact_logits(counteranimal_dir, tmp_path):
    model = create_model("timm:test_vit,random")
    kw = dict(cache_dir=tmp_path / "cache", show_progress=False, batch_size=32)
    (evaluated,) = evaluate(model, counteranimal_dir, ["1v1000"], n_boot=20, **kw)
    result = probe(model, counteranimal_dir, protocol="1v1000", probes=["pruning"], **kw)
    head = result.head
    assert not head.composed and head.bias is not None and len(head.labels) == 1000
    ds = open_dataset(counteranimal_dir)
    feats = encode_dataset(model, ds, kw["cache_dir"], show_progress=False)
    own = head_for(model, ds.classes, (), None)
    np.testing.assert_allclose(
        head.logits(feats.pre_head), own.logits(feats.embedding), rtol=1e-5, atol=1e-5
    )
    held = result.pruning_split.evaluation
    assert result.pruning["unpruned_accuracy"].iloc[0] == pytest.approx(
        evaluated.predictions["correct"].to_numpy()[held].mean()
    )
    assert set(result.probe_ids) == {"pruning"}  # directions computed, not stored


def _few_class_classifier(folder: Path) -> Path:
    """A random-init timm classifier over the three CounterAnimal fixture classes only."""
    import timm
    from timm.models import save_for_hf

    from tests.conftest import COUNTERANIMAL_CLASSES

    model = timm.create_model("test_vit", pretrained=False, num_classes=3)
    save_for_hf(
        model,
        str(folder),
        model_config={
            "label_names": [f.split(" ", 1)[1] for f, _, _ in COUNTERANIMAL_CLASSES.values()],
            "imagenet_indices": list(COUNTERANIMAL_CLASSES),
            "pretrained_cfg": {"tag": "three_classes"},
        },
        safe_serialization=True,
    )
    return folder


def test_default_head_is_the_papers_1v1000_and_1vN_is_labelled(probed, tmp_path):
    """ImageNet labels: the default head is all 1000 classes (Crabbé et al.), named everywhere."""
    model, data, kw = probed["model"], probed["data"], probed["kw"]
    store = ResultsStore(tmp_path / "h.duckdb")
    paper = probe(model, data, probes=["pruning"], store=store, **kw)
    assert paper.protocol == "1v1000" and paper.head_label == "1v1000"
    assert len(paper.head.labels) == 1000 and paper.pruning["n_directions"].iloc[0] == min(
        1000, paper.head.weight.shape[1]
    )
    assert set(paper.rows["head"]) == {"1v1000"}
    stored = store.probe_results("pruning").set_index("metric")
    assert stored.loc["head", "key"] == "1v1000" and stored.loc["head", "value"] == 1000
    # the dataset's own classes are an option, labelled as such
    own = probe(model, data, probes=["pruning", "kurtosis"], protocol="1vN", **kw)
    assert own.head_label == "1vN (3 classes)" and len(own.head.labels) == 3
    head_rows = own.rows[own.rows["probe"] == "pruning"]
    assert set(head_rows["head"]) == {"1vN (3 classes)"}
    assert set(own.rows.loc[own.rows["probe"] == "kurtosis", "head"]) == {""}


def test_supervised_model_without_1000_class_head(counteranimal_dir, tmp_path):
    """auto falls back to 1vN with a visible note; an explicit 1v1000 is a clear error."""
    from spurbench.errors import ClassListError

    folder = _few_class_classifier(tmp_path / "three")
    kw = dict(probes=["pruning"], cache_dir=tmp_path / "cache", show_progress=False)
    result = probe(f"local-dir:{folder}", counteranimal_dir, **kw)
    assert result.protocol == "1vN" and len(result.head.labels) == 3
    assert result.head_label == "1vN (3 classes, no 1000-class head)"
    assert any("no 1000-class ImageNet head" in n for n in result.notes)
    with pytest.raises(ClassListError, match="--protocol 1vN"):
        probe(f"local-dir:{folder}", counteranimal_dir, protocol="1v1000", **kw)


def _planted_manifest(root: Path, n: int = 160, seed: int = 0) -> Path:
    """Images whose background colour is the concept 'colour'; 'noise' is a random label.

    'noise' is balanced within each colour, so it carries no information about the pixels.
    """
    rng = np.random.default_rng(seed)
    colours = {"red": (230, 30, 30), "blue": (30, 30, 230)}
    noise = np.concatenate([rng.permutation(np.arange(n // 2) % 2) for _ in range(2)])
    rows = []
    for i in range(n):
        colour = "red" if i < n // 2 else "blue"
        path = root / "images" / f"{i:03d}.png"
        write_image(path, rng, size=32, base=colours[colour])
        rows.append(
            {
                "path": f"images/{i:03d}.png",
                "label": ["cat", "dog"][int(rng.integers(2))],
                "colour": colour,
                "noise": "ab"[noise[i]],
            }
        )
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root / "manifest.csv"


def test_planted_concept_is_found_random_concept_is_not(tiny_clip_dir, tmp_path):
    manifest = _planted_manifest(tmp_path / "planted")
    result = probe(
        f"local-dir:{tiny_clip_dir}",
        manifest,
        probes=["concepts"],
        concept_columns=["colour", "noise"],
        cache_dir=tmp_path / "cache",
        show_progress=False,
    )
    c = result.concepts.set_index("concept")
    assert set(c.index) == {"colour=blue", "colour=red", "noise=a", "noise=b"}
    assert c.loc["colour=red", "probe_ap"] >= 0.95 and c.loc["colour=blue", "probe_ap"] >= 0.95
    assert {"colour=red", "colour=blue"} <= result.encoded_concepts("linear_probe")
    # AP averaged over small folds sits above prevalence even for a random ranking (by about
    # (1 − p)·ln(n₊)/n₊ with n₊ positives per fold), hence a loose band.
    for name in ("noise=a", "noise=b"):
        assert abs(c.loc[name, "probe_ap"] - c.loc[name, "prevalence"]) < 0.2
        assert not c.loc[name, "encoded_by_probe"]
    # the direction view ran too, over the 2-class head's directions
    assert c["direction"].notna().all() and result.concept_direction_scores["direction"].max() < 2


def test_bad_requests_are_user_errors(counteranimal_dir, tiny_clip_dir, tmp_path):
    from spurbench.errors import DatasetError

    with pytest.raises(ProbeConfigError, match="Unknown probe"):
        probe(f"local-dir:{tiny_clip_dir}", counteranimal_dir, probes=["kurtoses"])
    with pytest.raises(DatasetError, match="no concept column"):
        probe(
            f"local-dir:{tiny_clip_dir}",
            counteranimal_dir,
            probes=["concepts"],
            concept_columns=["shape"],
            cache_dir=tmp_path,
        )


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.command("probe")(probe_cmd)

    @app.callback()
    def main() -> None:  # a group, so the command is invoked by name as in spurbench
        pass

    return app


def test_cli_two_models_tables_store_and_export(probed, tiny_clip_dir, tmp_path):
    other = save_tiny_clip(tmp_path / "other_clip", seed=1)
    store, out = tmp_path / "p.duckdb", tmp_path / "out"
    common = ["-d", str(probed["data"]), "--store", str(store),
              "--cache-dir", str(probed["kw"]["cache_dir"]), "-q"]  # fmt: skip
    models = ["-m", f"local-dir:{tiny_clip_dir}", "-m", f"local-dir:{other}"]
    res = CliRunner().invoke(_cli(), ["probe", *models, *common, "--out", str(out)])
    assert res.exit_code == 0, res.output
    for title in ("Outlier features", "Privileged directions", "Pruning", "Concepts encoded"):
        assert title in res.output
    assert "rotated" in res.output and "unique" in res.output
    assert "1v1000" in res.output  # the head (the paper's by default) is named in the tables
    stored = ResultsStore(store).probe_results()
    assert stored["fingerprint"].nunique() == 2 and set(stored["probe"]) == set(PROBES)
    rows = json.loads((out / "probe_rows.json").read_text())
    assert {r["model"] for r in rows} == {f"local-dir:{other}", f"local-dir:{tiny_clip_dir}"}
    assert isinstance(rows[0]["extra"], dict)
    assert len(pd.read_csv(out / "probe_rows.csv")) == len(rows) == len(stored)
    assert set(pd.read_csv(out / "pruning_curve.csv")["keep"]) == {"most", "least"}
    assert (out / "concepts.json").is_file()

    bad = CliRunner().invoke(_cli(), ["probe", *models, *common, "--probe", "kurtosis,nope"])
    assert bad.exit_code == 2 and "Unknown probe" in bad.output
    bad = CliRunner().invoke(_cli(), ["probe", *models, *common, "--concepts", "shape"])
    assert bad.exit_code == 2 and "no concept column" in bad.output


def _random_init_twin(trained: Path, folder: Path, seed: int = 1) -> Path:
    """The trained model's architecture at random init, in the same local-dir layout."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    config = json.loads((trained / "open_clip_config.json").read_text())
    torch.manual_seed(seed)
    model = open_clip.CLIP(**config["model_cfg"])
    folder.mkdir(parents=True)
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        str(folder / "open_clip_model.safetensors"),
    )
    return folder


@pytest.mark.slow
def test_background_concept_encoded_in_trained_tiny_clip(tmp_path, synth_cache):
    from spurbench.synth import train as train_mod
    from spurbench.synth import world as world_mod
    from tests.conftest import trained_world

    cfg = train_mod.TrainConfig.fast(models=("tiny_clip",))
    world, zoo = trained_world(synth_cache, world_mod.WorldConfig.fast(rho=0.9), cfg)
    trained = zoo["tiny_clip"]
    control = _random_init_twin(trained, tmp_path / "random_clip")
    kw = dict(
        split="test",
        probes=["concepts"],
        concept_columns=["background", "shape"],
        cache_dir=tmp_path / "cache",
        show_progress=False,
    )
    result = probe(f"local-dir:{trained}", world.root / "manifest.csv", **kw)
    c = result.concepts.set_index("concept")
    backgrounds = [f"background={b}" for b in world.backgrounds]
    # every background is linearly decodable from the trained CLIP's representation
    assert set(backgrounds) <= result.encoded_concepts("linear_probe")
    assert (c.loc[backgrounds, "probe_ap"] >= 0.9).all()
    # ... and training is what the probe sees: the class shapes are encoded after training,
    # not at random init (a random ViT already separates background textures, so backgrounds
    # alone cannot tell the two apart)
    shapes = lambda r: {x for x in r.encoded_concepts("linear_probe") if x.startswith("shape=")}  # noqa: E731
    random_init = probe(f"local-dir:{control}", world.root / "manifest.csv", **kw)
    assert len(shapes(result)) >= len(shapes(random_init)) + 5


def test_default_concepts_are_the_worlds_class_independent_ones(tmp_path):
    from spurbench.probes.run import CONCEPT_COLUMNS, default_concept_columns
    from spurbench.synth.world import CONCEPT_COLUMNS as WORLD_CONCEPTS
    from spurbench.synth.world import WorldConfig, plan_world

    assert CONCEPT_COLUMNS == WORLD_CONCEPTS
    plan_world(WorldConfig.fast()).to_csv(tmp_path / "manifest.csv", index=False)
    ds = open_dataset(tmp_path / "manifest.csv", split="test")
    assert default_concept_columns(ds) == list(WORLD_CONCEPTS)
    # none of them is a function of the class (the object's shape/colour/texture are)
    t = ds.table
    for col in WORLD_CONCEPTS:
        assert (t.groupby("label")[col].nunique() > 1).all(), col


def _indexed_manifest(root: Path, names: tuple[str, ...], per_class: int = 6) -> tuple[Path, Path]:
    """Integer labels into a class list of the user's: readable only with that list."""
    rng = np.random.default_rng(3)
    rows = []
    for label in range(len(names)):
        for i in range(per_class):
            rel = f"img/{label}_{i}.png"
            write_image(root / rel, rng, size=32)
            rows.append((rel, label, "common" if i % 2 else "counter"))
    pd.DataFrame(rows, columns=["path", "label", "group"]).to_csv(root / "m.csv", index=False)
    (root / "classes.txt").write_text("\n".join(names) + "\n")
    return root / "m.csv", root / "classes.txt"


def test_probe_takes_the_class_list_a_manifest_needs(tiny_clip_dir, tmp_path):
    """A manifest whose labels index ``--classes`` is probed on that list's head, as evaluated."""
    names = ("red cube", "blue sphere", "green cone")
    manifest, classes = _indexed_manifest(tmp_path / "d", names)
    model = create_model(f"local-dir:{tiny_clip_dir}")
    kw = dict(cache_dir=tmp_path / "cache", show_progress=False, batch_size=8)
    (evaluated,) = evaluate(model, manifest, ["1vN"], classes=classes, n_boot=10, **kw)
    result = probe(model, manifest, probes=["directions"], protocol="1vN", classes=classes, **kw)
    assert result.head_label == "1vN (3 classes)"
    ds = open_dataset(manifest, classes=classes)
    assert ds.classes.names == names  # without the list, 0..2 would be ImageNet's first classes
    # the probe's head is the text head of *these* names, rebuilt here independently
    own = head_for(model, ds.classes, ("A photo of {c}.",), None)
    W_H = own.scale * own.weight.astype(np.float64) @ model.projection().T.astype(np.float64)
    np.testing.assert_allclose(result.head.weight, W_H, rtol=1e-6, atol=1e-8)
    feats = encode_dataset(model, ds, kw["cache_dir"], show_progress=False)
    pred = result.head.labels[(feats.pre_head[feats.ok] @ W_H.T).argmax(axis=1)]
    np.testing.assert_array_equal(pred, np.stack(evaluated.predictions["topk_labels"])[:, 0])

    args = ["probe", "-m", f"local-dir:{tiny_clip_dir}", "-d", str(manifest), "--classes",
            str(classes), "--protocol", "1vN", "--probe", "directions", "--cache-dir",
            str(kw["cache_dir"]), "--store", str(tmp_path / "p.duckdb"), "--json"]  # fmt: skip
    res = CliRunner().invoke(_cli(), args)
    assert res.exit_code == 0, res.output
    assert {r["head"] for r in json.loads(res.output)} == {"1vN (3 classes)"}
