"""The suite end to end with a tiny random-init CLIP, and the effective-robustness table."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pytest
import scipy.special
import scipy.stats
import torch
from PIL import Image
from typer import Typer
from typer.testing import CliRunner

from spurbench.cli.suite import suite_cmd
from spurbench.data.classes import imagenet_classes
from spurbench.data.imagenet_shifts import load_shift, objectnet_indices
from spurbench.errors import DatasetError
from spurbench.evaluate.effective_robustness import effective_robustness, fit_baseline
from spurbench.features.cache import encode_dataset
from spurbench.heads.cached import head_for
from spurbench.models.registry import create_model
from spurbench.reference.testbed import load_openclip_results
from spurbench.store import ResultsStore
from spurbench.suite import BorderCropped, locate_datasets, run_suite, suite_table
from tests.suite import standins as F
from tests.suite.test_loaders import A_WNIDS, ON_FOLDERS, R_INDICES, R_WNIDS, WNIDS

TEMPLATES = ["a photo of a {c}."]


@pytest.fixture(scope="module")
def suite_root(tmp_path_factory):
    base = tmp_path_factory.mktemp("suite")
    F.make_val(base, [WNIDS[i] for i in (1, 2, 409, 954)])
    F.make_r(base, R_WNIDS[:4])
    F.make_a(base, A_WNIDS[:3])
    F.make_objectnet(base, ON_FOLDERS)
    return base  # no ImageNetV2 and no Sketch: those are reported missing


@pytest.fixture(scope="module")
def model(tiny_clip_dir):
    return create_model(f"local-dir:{tiny_clip_dir}")


@pytest.fixture(scope="module")
def ran(model, suite_root, tmp_path_factory):
    work = tmp_path_factory.mktemp("work")
    store = ResultsStore(work / "r.duckdb")
    result = run_suite(
        model,
        suite_root,
        store=store,
        cache_dir=work / "cache",
        templates=TEMPLATES,
        n_boot=50,
        show_progress=False,
    )
    return result, store, work / "cache"


def test_present_datasets_evaluated_and_missing_listed(ran):
    result, store, _ = ran
    assert set(result.accuracy) == {"imagenet", "imagenet-r", "imagenet-a", "objectnet"}
    assert set(result.missing) == {"imagenet-v2", "imagenet-sketch"}
    message = result.missing["imagenet-v2"]
    assert "imagenetv2-matched-frequency-format-val/" in message and "never downloads" in message
    assert "github.com/modestyachts/ImageNetV2" in message
    runs = store.runs()
    assert sorted(runs["dataset"]) == ["imagenet", "imagenet-a", "imagenet-r", "objectnet"]
    assert (runs["protocol"] == "1v1000").all()


@pytest.mark.parametrize("name", ["imagenet-r", "imagenet-a", "imagenet"])
def test_masked_predictions_equal_full_logits_argmaxed_over_subset(ran, model, suite_root, name):
    result, store, cache = ran
    run = result.runs[name]
    stored = store.predictions(run.run_id).set_index("image_id")
    subset = {
        "imagenet-r": R_INDICES,
        "imagenet-a": [int(i) for i in F.timm_info("imagenet_a_indices.txt")],
        "imagenet": list(range(1000)),
    }[name]
    ds = load_shift(name, locate_datasets(suite_root, [name])[0][name])
    feats = encode_dataset(model, ds, cache, show_progress=False)
    full = head_for(model, imagenet_classes(), TEMPLATES, None).logits(feats.embedding)
    _check_restricted_argmax(full, subset, stored.loc[ds.table["image_id"]])


def _check_restricted_argmax(full: np.ndarray, subset: list[int], stored: pd.DataFrame) -> None:
    """Stored top-1 == argmax of the full 1000-way logits over the subset columns (numpy)."""
    cols = np.array(sorted(subset))
    sub = full[:, cols]
    expected = cols[np.argmax(sub, axis=1)]
    top1 = np.array([int(t[0]) for t in stored["topk_labels"]])
    srt = np.sort(sub, axis=1)
    clear = (srt[:, -1] - srt[:, -2]) > 1e-4  # where float noise could swap a near-tie
    np.testing.assert_array_equal(top1[clear], expected[clear])
    np.testing.assert_allclose([t[0] for t in stored["topk_scores"]], sub.max(axis=1), atol=1e-4)
    assert set(top1) <= set(subset)


def test_objectnet_border_crop_mask_and_rule(ran, model, suite_root):
    result, store, _ = ran
    run = result.runs["objectnet"]
    stored = store.predictions(run.run_id).set_index("image_id")
    folder = suite_root / "objectnet-1.0" / "images"
    ids = sorted(stored.index)
    # independent pipeline: PIL crop (2, 2, w-2, h-2) as wise-ft does, then the model's preprocess
    crops = []
    for image_id in ids:
        with Image.open(folder / image_id) as im:
            rgb = im.convert("RGB")
        assert rgb.getpixel((0, 0)) == (255, 0, 0)  # the stand-in has the red frame
        crops.append(model.preprocess(rgb.crop((2, 2, rgb.width - 2, rgb.height - 2))))
    with torch.inference_mode():
        emb = model.encode_images(torch.stack(crops)).embedding.numpy()
    full = head_for(model, imagenet_classes(), TEMPLATES, None).logits(emb)
    _check_restricted_argmax(full, list(objectnet_indices()), stored.loc[ids])
    top1 = [int(t[0]) for t in stored.loc[ids, "topk_labels"]]
    sets = {409: {409, 530}, 414: {414}, 954: {954}}
    by_rule = np.mean([p in sets[y] for p, y in zip(top1, stored.loc[ids, "label"], strict=True)])
    assert result.accuracy["objectnet"] == pytest.approx(by_rule)
    cropped = BorderCropped(model)
    assert cropped.preprocess_cfg.digest() != model.preprocess_cfg.digest()  # own cache key
    assert cropped.fingerprint == model.fingerprint


def test_missing_everything_and_bad_layout_fail_before_model(tmp_path):
    with pytest.raises(DatasetError, match="None of the suite's datasets") as err:
        run_suite("no-such-model", tmp_path)
    assert err.value.args[0].count("never downloads") == 6
    F.class_folders(tmp_path / "imagenet-r", ["goldfish"], ".jpg", n=1)
    with pytest.raises(DatasetError, match="published layout"):
        run_suite("no-such-model", tmp_path)  # the layout fails first, not the model name
    with pytest.raises(DatasetError, match="does not exist"):
        locate_datasets(tmp_path, paths={"objectnet": tmp_path / "nope"})


# --- the table: effective robustness against the same numbers fitted with scipy ----------------


def _logit_er(x_base, y_base, x, y):
    fit = scipy.stats.linregress(scipy.special.logit(x_base), scipy.special.logit(y_base))
    return y - scipy.special.expit(fit.intercept + fit.slope * scipy.special.logit(x))


def _write(store, model, zero_shot, dataset, acc, when, predictions=None):
    run_id = f"{model}-{dataset}"
    store.write_run(
        {
            "run_id": run_id,
            "created_at": datetime(2024, 1, 1, 0, 0, when),
            "model": model,
            "zero_shot": zero_shot,
            "dataset": dataset,
            "protocol": "1v1000",
        },
        predictions.assign(run_id=run_id) if predictions is not None else pd.DataFrame(),
        pd.DataFrame(
            [(run_id, "overall", -1, "", dataset, "accuracy", acc, 0.0, 1.0, 10)],
            columns=[
                *("run_id", "scope", "label", "class_name", "group_name", "metric"),
                *("value", "ci_low", "ci_high", "n"),
            ],
        ),
    )


BASE = {  # ImageNet-1k-only supervised models: imagenet, imagenet-r, imagenet-a
    "timm:resnet18.tv_in1k": (0.70, 0.30, 0.02),
    "timm:resnet34.tv_in1k": (0.76, 0.36, 0.05),
    "timm:resnet50.a1_in1k": (0.80, 0.41, 0.10),
    "torchvision:resnet101:IMAGENET1K_V2": (0.84, 0.47, 0.21),
}
SUP2 = "timm:resnet34.tv_in1k"


@pytest.fixture()
def synthetic_store(tmp_path):
    store = ResultsStore(tmp_path / "s.duckdb")
    t = 0
    for name, accs in BASE.items():
        for dataset, acc in zip(["imagenet", "imagenet-r", "imagenet-a"], accs, strict=True):
            _write(store, name, False, dataset, acc, t := t + 1)
    _write(store, "clip", True, "imagenet", 0.65, t := t + 1)
    _write(store, "clip", True, "imagenet-r", 0.1, t := t + 1)  # replaced by the later run
    _write(store, "clip", True, "imagenet-r", 0.70, t := t + 1)
    predictions = pd.DataFrame(  # 409 = alarm clock {409 analog, 530 digital}
        {
            "image_id": ["a", "b", "c", "d"],
            "label": [409, 409, 414, 954],
            "topk_labels": [[530, 409], [409, 530], [409, 414], [954, 409]],
            "correct": [True, True, False, True],  # the runner applies ObjectNet's set rule
        }
    )
    _write(store, "clip", True, "objectnet", 0.75, t + 1, predictions)
    return store


def test_suite_table_er_equals_scipy_fit_on_store_baseline(synthetic_store):
    report = suite_table(synthetic_store, baseline="store")
    row = report.table.set_index("model").loc["clip"]
    assert row["imagenet-r"] == pytest.approx(0.70)
    assert row["objectnet"] == pytest.approx(0.75)
    x = np.array([v[0] for v in BASE.values()])
    y_r = np.array([v[1] for v in BASE.values()])
    assert row["er_imagenet-r"] == pytest.approx(_logit_er(x, y_r, 0.65, 0.70))
    fit = fit_baseline(x, y_r)
    assert row["er_imagenet-r"] == pytest.approx(float(effective_robustness(fit, 0.65, 0.70)))
    # objectnet: no supervised model has it, so there is no store trend for it; the mean is
    # over the shift that has one, and its label says so
    assert np.isnan(row["er_objectnet"])
    assert row["er_mean"] == pytest.approx(row["er_imagenet-r"])
    assert row["er_mean_baseline"] == "store n=4, mean of 1 of 2 shifts"
    assert row["mean_shift"] == pytest.approx((0.70 + 0.75) / 2) and row["n_shifts"] == 2
    sup = report.table.set_index("model").loc[SUP2]
    y_mean = np.array([(v[1] + v[2]) / 2 for v in BASE.values()])
    assert sup["er_mean"] == pytest.approx(_logit_er(x, y_mean, 0.76, (0.36 + 0.05) / 2))
    assert row["er_imagenet-r_baseline"] == "store n=4" and row["er_objectnet_baseline"] == ""
    notes = "\n".join(report.notes())
    assert "ImageNet-1k-only models in this store" in notes and "n=4" in notes
    assert "no fit" in notes


def test_clip_trend_is_named_a_gap_not_effective_robustness(synthetic_store):
    report = suite_table(synthetic_store, baseline="openclip")
    assert not [c for c in report.table.columns if c.startswith("er_")]
    row = report.table.set_index("model").loc["clip"]
    ref = load_openclip_results()
    ok = ref[["imagenet1k", "objectnet"]].notna().all(axis=1)
    expected = _logit_er(ref.loc[ok, "imagenet1k"], ref.loc[ok, "objectnet"], 0.65, 0.75)
    assert row["gap_vs_clip_trend_objectnet"] == pytest.approx(expected)
    assert row["gap_vs_clip_trend_objectnet_baseline"] == f"openclip n={int(ok.sum())}"
    on = next(n for n in report.notes() if n.startswith("Gap vs CLIP trend objectnet"))
    assert "open_clip" in on and "not ImageNet-trained" in on


def test_suite_command(tiny_clip_dir, suite_root, tmp_path):
    app = Typer()
    app.command("suite")(suite_cmd)
    app.command("other")(lambda: None)  # two commands, so typer keeps the "suite" name
    store = tmp_path / "c.duckdb"
    args = ["suite", "-m", f"local-dir:{tiny_clip_dir}", "--root", str(suite_root)]
    args += ["--datasets", "imagenet,imagenet-r,imagenet-v2", "--templates", "paper"]
    args += ["--store", str(store), "--cache-dir", str(tmp_path / "cache"), "-q"]
    out = CliRunner().invoke(app, args, terminal_width=200)
    assert out.exit_code == 0, out.output
    assert "skipped" in out.output and "ImageNetV2" in out.output
    assert "effective robustness" in out.output and "ER imagenet-r" in out.output
    assert "timm's published results" in out.output  # no ImageNet-trained model in the store
    assert "timm ImageNet-1k-only" in out.output  # the model placed among the published ones
    assert sorted(ResultsStore(store).runs()["dataset"]) == ["imagenet", "imagenet-r"]
    bad = CliRunner().invoke(app, ["suite", "--root", str(suite_root), "--path", "imagenet-r"])
    assert bad.exit_code == 2 and "NAME=DIR" in bad.output
