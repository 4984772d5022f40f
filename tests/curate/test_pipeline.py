"""The curation pipeline end to end on a small generated world with a random-init tiny CLIP.

Models here are untrained, so these tests check mechanics (labels, files, layouts, reloading,
equal accuracies before and after export); the ground truth of what is *selected* is checked
against trained models in ``test_world.py``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from spurbench.cli.curate import curate_app
from spurbench.curate import (
    AUTO,
    MANUAL,
    Discovery,
    DiscoveryConfig,
    PoolSpec,
    Runtime,
    clean_pool,
    curate,
    diagnose,
    discover,
    export_dataset,
    load_pool,
    select_pairs,
    tag_backgrounds,
)
from spurbench.curate.discovery import pair_drops
from spurbench.curate.pool import LOW_CONFIDENCE, in_dataset
from spurbench.curate.scoring import ModelCache, predict
from spurbench.data.layouts import open_dataset
from spurbench.evaluate import evaluate
from spurbench.synth.world import World, WorldConfig, generate_world

SMALL = WorldConfig(n_classes=3, n_backgrounds=3, n_train_per_class=1, n_test_per_cell=6)
runner = CliRunner()


@pytest.fixture(scope="module")
def small_world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return generate_world(SMALL, tmp_path_factory.mktemp("curate") / "world")


@pytest.fixture(scope="module")
def clip(tiny_clip_dir: Path) -> str:
    return f"local-dir:{tiny_clip_dir}"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _pool(world: World, **kw):  # type: ignore[no-untyped-def]
    return load_pool(world.root / "manifest.csv", split="test", **kw)


def test_given_labels_skip_tagging(small_world: World) -> None:
    pool = _pool(small_world)
    assert (pool.table["background_source"] == MANUAL).all()
    # no model is needed, and none is loaded: a name that does not exist is never resolved
    result = tag_backgrounds(pool, "local-dir:/nonexistent/model")
    assert result.skipped and result.model is None
    assert result.dataset.table["background"].equals(pool.table["background"])
    assert (result.dataset.table["background_source"] == MANUAL).all()


def test_tagging_confidence_threshold(small_world: World, clip: str, tmp_path: Path) -> None:
    pool = _pool(small_world, background_column=None)
    vocab = small_world.backgrounds
    low = tag_backgrounds(pool, clip, vocabulary=vocab, threshold=1.0, cache_dir=tmp_path)
    t = low.dataset.table
    assert (t["background"] == "").all() and (t["background_source"] == "").all()
    assert t["flags"].str.contains(LOW_CONFIDENCE).all()
    assert t["background_suggestion"].isin(vocab).all()
    assert len(low.probabilities) == len(t)
    assert low.probabilities[list(vocab)].sum(axis=1).round(5).eq(1).all()
    high = tag_backgrounds(pool, clip, vocabulary=vocab, threshold=0.0, cache_dir=tmp_path)
    h = high.dataset.table
    assert (h["background_source"] == AUTO).all() and h["background"].isin(vocab).all()
    assert (h["background"] == t["background_suggestion"]).all()  # same features, same argmax


def test_cleaning_finds_duplicates_and_unreadable(small_world: World, tmp_path: Path) -> None:
    root = tmp_path / "pool"
    shutil.copytree(small_world.root / "images" / "test", root)
    first = sorted(root.rglob("*.png"))[0]
    shutil.copyfile(first, first.with_name("zz_exact_copy.png"))
    Image.open(first).convert("RGB").save(first.with_name("zz_reencoded.jpg"), quality=90)
    Image.open(first).resize((34, 34)).save(first.with_name("zz_resized.png"))
    (first.parent / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    manifest = pd.DataFrame({"path": [p.relative_to(root).as_posix() for p in
                                      sorted(root.rglob("*")) if p.is_file()]})  # fmt: skip
    manifest["label"] = manifest["path"].str.split("/").str[0].astype(int)
    manifest.to_csv(root / "pool.csv", index=False)
    report = clean_pool(load_pool(root / "pool.csv"))
    d = report.dropped.set_index("image_id")
    folder = first.parent.relative_to(root).as_posix()
    assert d.loc[f"{folder}/zz_exact_copy.png", "reason"] == "exact duplicate"
    assert d.loc[f"{folder}/zz_reencoded.jpg", "reason"] == "near duplicate"
    assert d.loc[f"{folder}/zz_resized.png", "reason"] == "near duplicate"
    assert d.loc[f"{folder}/zz_broken.png", "reason"] == "unreadable"
    assert len(d) == 4  # no distinct world image is taken for a duplicate
    kept_id = f"{folder}/{first.name}"
    assert d.loc[f"{folder}/zz_exact_copy.png", "detail"] == f"of {kept_id}"
    t = report.dataset.table.set_index("image_id")
    assert t.loc[kept_id, "excluded"] == ""
    assert t.loc[f"{folder}/zz_broken.png", "excluded"].startswith("unreadable")
    assert (t["excluded"] != "").sum() == 4


def test_export_layout_datasheet_and_same_accuracies(
    small_world: World, clip: str, tmp_path: Path
) -> None:
    pool = _pool(small_world)
    config = DiscoveryConfig(threshold=0.0, min_group_size=1, protocol="1vN")
    found = discover(pool, [clip], config=config, cache_dir=tmp_path / "cache")
    kept = found.selection["kept"]
    assert kept.any() and (found.selection["common"] != found.selection["counter"]).all()
    out = export_dataset(pool, found, tmp_path / "export", provenance={"test": True})
    root = out.root
    sheet = json.loads((root / "datasheet.json").read_text())
    assert (root / "DATASHEET.md").read_text().startswith("# Datasheet")
    assert sheet["counts"]["n_classes"] == kept.sum()
    # the layout is CounterAnimal's, and the datasheet's counts are the files on disk
    for c in sheet["counts"]["classes"]:
        assert c["folder"] == f"{c['label']} {c['class_name']}"
        for group in ("common", "counter"):
            files = list((root / c["folder"] / f"{group}-{c[group]}").iterdir())
            assert len(files) == c[f"n_{group}"] > 0
    on_disk = [p for p in root.rglob("*") if p.is_file() and p.parent != root]
    assert sheet["counts"]["n_images"] == len(on_disk) == len(out.manifest)
    assert sorted(d.name for d in root.iterdir() if d.is_dir()) == sorted(
        c["folder"] for c in sheet["counts"]["classes"]
    )
    digest = {p.relative_to(root).as_posix(): _sha256(p) for p in on_disk}
    assert digest == dict(zip(out.manifest["path"], out.manifest["sha256"], strict=True))
    # reload through the evaluation loaders: same images, groups and backgrounds
    ds = open_dataset(root)
    assert len(ds) == len(out.manifest)
    assert sorted(ds.table["group"].unique()) == ["common", "counter"]
    # same model, same images, same label space (1v1000): the same top-5 for every image and
    # so the same accuracies as before export
    before = predict(clip, pool, "1v1000", cache_dir=tmp_path / "cache").table
    (after,) = evaluate(clip, root, ("1v1000",), cache_dir=tmp_path / "cache", show_progress=False)
    source = dict(zip(out.manifest["path"], out.manifest["source_image_id"], strict=True))
    top_before = {
        i: list(t) for i, t in zip(before["image_id"], before["topk_labels"], strict=True)
    }
    for image_id, top in zip(after.predictions["image_id"], after.predictions["topk_labels"],
                             strict=True):  # fmt: skip
        assert list(top) == top_before[source[image_id]]
    acc_before = before.merge(out.manifest, left_on="image_id", right_on="source_image_id")
    acc_before = acc_before.groupby(["label_x", "group"])["correct"].mean()
    pc = after.per_class.set_index(["label", "group"])["accuracy"]
    assert pc.to_dict() == pytest.approx(acc_before.to_dict())
    # an export never overwrites something else, and replaces itself only when asked
    with pytest.raises(Exception, match="--overwrite"):
        export_dataset(pool, found, root)
    export_dataset(pool, found, root, overwrite=True)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(Exception, match="not a spurbench curate export"):
        export_dataset(pool, found, tmp_path / "other")


def test_diagnose_full_matrix(small_world: World, clip: str, tmp_path: Path) -> None:
    d = diagnose(clip, small_world.root / "manifest.csv", split="test", protocol="1vN",
                 cache_dir=tmp_path)  # fmt: skip
    assert len(d.cells) == SMALL.n_classes * SMALL.n_backgrounds  # every background, not 2
    assert (d.cells["n"] == SMALL.n_test_per_cell).all()
    assert (
        (d.cells["ci_low"] <= d.cells["accuracy"]) & (d.cells["accuracy"] <= d.cells["ci_high"])
    ).all()
    assert d.matrix().shape == (SMALL.n_classes, SMALL.n_backgrounds)
    # it agrees with the runner's own per-image predictions
    pred = predict(clip, _pool(small_world), "1vN", cache_dir=tmp_path)
    assert d.cells["correct"].sum() == pred.table["correct"].sum()
    d.to_csv(tmp_path / "m.csv")
    assert len(pd.read_csv(tmp_path / "m.csv")) == len(d.cells)


def test_cli_run_review_export_diagnose(small_world: World, clip: str, tmp_path: Path) -> None:
    work, out, cache = tmp_path / "work", tmp_path / "out", tmp_path / "cache"
    common = ["--cache-dir", str(cache), "-q"]
    res = runner.invoke(
        curate_app,
        ["run", "--pool", str(small_world.root / "manifest.csv"), "--split", "test",
         "--background-column", "none", "--work", str(work), "-r", clip, "--out", str(out),
         "--vocabulary", ",".join(small_world.backgrounds), "--threshold", "1",
         "--gap", "0", "--min-group-size", "1", "--protocol", "1vN", *common],
    )  # fmt: skip
    # a random CLIP is never sure: every image goes to review and discovery has nothing yet
    assert res.exit_code == 2 and "review" in res.output, res.output
    assert (work / "curation.json").is_file() and (work / "review.csv").is_file()
    review = pd.read_csv(work / "review.csv", dtype=str, keep_default_na=False)
    # the person labels every image in the review file
    truth = _pool(small_world).table.set_index("image_id")["background"]
    review["background"] = review["image_id"].map(truth)
    review.to_csv(work / "review.csv", index=False)
    res = runner.invoke(
        curate_app, ["review", "--work", str(work), "--apply", str(work / "review.csv")]
    )
    assert res.exit_code == 0, res.output
    labels = pd.read_csv(work / "labels.csv", keep_default_na=False)
    assert len(review) == len(labels) and (labels["background_source"] == "reviewed").all()
    res = runner.invoke(
        curate_app,
        ["discover", "--work", str(work), "-r", clip, "--gap", "0", "--min-group-size", "1",
         "--protocol", "1vN", *common],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "Spurious discovery" in res.output and "selection bias" in res.output
    res = runner.invoke(
        curate_app, ["export", "--work", str(work), "--out", str(out), "--overwrite"]
    )
    assert res.exit_code == 0, res.output
    sheet = json.loads((out / "datasheet.json").read_text())
    steps = [s["step"] for s in sheet["provenance"]["steps"]]
    assert steps[:2] == ["clean", "tag"] and "review" in steps and "discover" in steps
    assert any("curate discover" in " ".join(s["command"]) for s in sheet["provenance"]["steps"])
    sources = sheet["backgrounds"]["label_sources"]
    assert sum(sum(v.values()) for v in sources.values()) == sheet["counts"]["n_images"]
    res = runner.invoke(
        curate_app,
        [
            "diagnose",
            "-m",
            clip,
            "--work",
            str(work),
            "--protocol",
            "1vN",
            "-o",
            str(tmp_path / "diag"),
            *common,
        ],
    )
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "diag").glob("diagnosis-*.csv"))) == 1
    # label-noise check, tagging, discovery and diagnosis encoded the pool once, together
    assert len(list((cache / "features").iterdir())) == 1
    bad = runner.invoke(
        curate_app, ["export", "--work", str(tmp_path / "nowhere"), "--out", str(out)]
    )
    assert bad.exit_code == 2 and "not a curation folder" in bad.output


def test_library_curate_with_manual_labels(small_world: World, clip: str, tmp_path: Path) -> None:
    result = curate(
        PoolSpec(str(small_world.root / "manifest.csv"), split="test"),
        tmp_path / "work",
        tmp_path / "out",
        [clip],
        config=DiscoveryConfig(threshold=0.0, min_group_size=1, protocol="1vN"),
        runtime=Runtime(cache_dir=tmp_path / "cache", show_progress=False),
        models=ModelCache(),
    )
    assert result.tagging.skipped  # the manifest's background column is ground truth
    kept = in_dataset(result.tagging.dataset)
    assert kept.sum() == len(result.tagging.dataset)  # no duplicate, nothing unreadable
    assert result.export is not None
    assert set(result.export.manifest["background_source"]) == {MANUAL}


def test_custom_class_folders_export_by_name(small_world: World, clip: str, tmp_path: Path) -> None:
    """A pool of '<class>/<background>/' folders with non-ImageNet names: 1-vs-N throughout,
    exported as '<name>/common-<bg>/' and reloaded with the same custom class names."""
    pool_dir = tmp_path / "birds"
    names = {9: "heron", 10: "kestrel", 16: "wren"}
    test = small_world.split("test")
    for rel, label, bg in zip(test["path"], test["label"], test["background"], strict=True):
        dst = pool_dir / names[int(label)] / bg / Path(rel).name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(small_world.root / rel, dst)
    pool = load_pool(pool_dir)
    assert not pool.classes.is_imagenet and (pool.table["background_source"] == MANUAL).all()
    found = discover(pool, [clip], config=DiscoveryConfig(threshold=0.0, min_group_size=1),
                     cache_dir=tmp_path / "cache")  # fmt: skip
    assert found.models[0]["protocol"] == "1vN"  # auto: custom classes
    # whatever the random model found, make every class differ across backgrounds so that all
    # are exported: the layout, not the selection, is under test here
    cells = found.cells.copy()
    rank = {bg: i for i, bg in enumerate(sorted(cells["background"].unique()))}
    cells["accuracy"] = [0.2 + 0.3 * rank[b] for b in cells["background"]]
    selection = select_pairs(cells, [found.models[0]["name"]], found.config)
    found = Discovery(cells, selection, pair_drops(cells, selection), found.bias, found.models,
                      found.config)  # fmt: skip
    out = export_dataset(pool, found, tmp_path / "export")
    kept = found.kept
    assert sorted(p.name for p in out.root.iterdir() if p.is_dir()) == sorted(kept["class_name"])
    for r in kept.itertuples():
        assert (out.root / r.class_name / f"common-{r.common}").is_dir()
        assert (out.root / r.class_name / f"counter-{r.counter}").is_dir()
    again = open_dataset(out.root)
    assert set(again.classes.names) == set(kept["class_name"])


def test_mounts_under_the_main_cli() -> None:
    """The lead mounts it with ``app.add_typer(curate_app, name="curate")``."""
    import typer

    app = typer.Typer()
    app.add_typer(curate_app, name="curate")
    res = runner.invoke(app, ["curate", "--help"])
    assert res.exit_code == 0
    for command in ("tag", "review", "clean", "discover", "export", "diagnose", "run"):
        assert command in res.output
