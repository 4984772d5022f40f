"""The suite's effective robustness on timm's published ImageNet-1k models as the baseline.

The case the baseline exists for: a store holding one zero-shot CLIP model and some of the
datasets, no ImageNet-trained model. Its accuracies are open_clip's published ones for that model
(so no number is made up here), and every ER is recomputed independently with numpy.polyfit on
logit values of the shipped CSV, read with the csv module rather than the loader.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pytest
import scipy.special
from typer import Typer
from typer.testing import CliRunner

from spurbench.cli.suite import suite_cmd
from spurbench.reference.testbed import load_openclip_results
from spurbench.store import ResultsStore
from spurbench.suite import suite_table, timm_published
from tests.reference.test_timm_results import _baseline_points

CLIP = "ViT-B-32,openai"
#: suite dataset -> open_clip column -> timm_results.csv column
COLUMNS = {
    "imagenet": ("imagenet1k", "imagenet_top1"),
    "imagenet-r": ("imagenet_r", "imagenet_r_top1"),
    "imagenet-sketch": ("imagenet_sketch", "sketch_top1"),
}


def _write(store: ResultsStore, model: str, zero_shot: bool, dataset: str, acc: float, t: int):
    run_id = f"{model}-{dataset}"
    store.write_run(
        {
            "run_id": run_id,
            "created_at": datetime(2024, 1, 1, 0, 0, t),
            "model": model,
            "zero_shot": zero_shot,
            "dataset": dataset,
            "protocol": "1v1000",
        },
        pd.DataFrame(),
        pd.DataFrame(
            [(run_id, "overall", -1, "", dataset, "accuracy", acc, 0.0, 1.0, 10)],
            columns=[
                *("run_id", "scope", "label", "class_name", "group_name", "metric"),
                *("value", "ci_low", "ci_high", "n"),
            ],
        ),
    )


@pytest.fixture()
def published_clip() -> dict[str, float]:
    row = load_openclip_results().set_index("model_name").loc[CLIP]
    return {name: float(row[oc]) for name, (oc, _) in COLUMNS.items()}


@pytest.fixture()
def one_clip_store(tmp_path, published_clip):
    store = ResultsStore(tmp_path / "one.duckdb")
    for t, (dataset, acc) in enumerate(published_clip.items()):
        _write(store, CLIP, True, dataset, acc, t)
    return store


def _expected_er(x_base, y_base, x, y):
    slope, intercept = np.polyfit(scipy.special.logit(x_base), scipy.special.logit(y_base), 1)
    return y - scipy.special.expit(intercept + slope * scipy.special.logit(x))


def test_one_clip_model_gets_er_against_timm_in1k_models(one_clip_store, published_clip):
    report = suite_table(one_clip_store)  # auto: no ImageNet-trained model in the store
    row = report.table.set_index("model").loc[CLIP]
    x = published_clip["imagenet"]
    for dataset in ("imagenet-r", "imagenet-sketch"):
        xb, yb = _baseline_points(COLUMNS[dataset][1])
        expected = _expected_er(xb, yb, x, published_clip[dataset])
        assert row[f"er_{dataset}"] == pytest.approx(expected, abs=1e-9)
        assert row[f"er_{dataset}"] > 0  # zero-shot CLIP lies above the ImageNet trend
        base = next(b for b in report.baselines if b.shifts == (dataset,))
        assert base.source == "timm" and base.n == len(xb)
        note = next(n for n in report.notes() if n.startswith(f"ER {dataset}:"))
        assert "timm" in note and "ImageNet-1k only" in note and f"n={len(xb)}" in note
    # the mean over the model's two shifts, against the trend of the same mean
    xr, yr = _baseline_points("imagenet_r_top1")
    xs, ys = _baseline_points("sketch_top1")
    assert np.array_equal(xr, xs)  # every in1k-only model has both numbers
    mean = (published_clip["imagenet-r"] + published_clip["imagenet-sketch"]) / 2
    assert row["er_mean"] == pytest.approx(_expected_er(xr, (yr + ys) / 2, x, mean), abs=1e-9)
    # datasets the store lacks have no ER
    assert np.isnan(row["er_imagenet-a"]) and np.isnan(row["er_objectnet"])


def test_the_model_is_placed_among_the_published_ones(one_clip_store):
    report = suite_table(one_clip_store)
    pub = report.published
    assert set(pub["group"]) == {
        "timm ImageNet-1k-only",
        "timm other",
        "testbed ImageNet-1k-only",
        "testbed other",
        "open_clip zero-shot",
    }
    assert pub.loc[pub["source"] == "timm", "model"].is_unique
    ours = report.table.set_index("model").loc[CLIP, "er_imagenet-r"]
    in1k = pub.loc[pub["group"] == "timm ImageNet-1k-only", "er_imagenet-r"].dropna()
    share = float((in1k < ours).mean())
    lines = report.standing(CLIP)
    line = next(s for s in lines if " ER imagenet-r " in s)
    assert f"{share:.0%} of {len(in1k)} timm ImageNet-1k-only" in line
    assert share > 0.95
    # the published CLIP model itself (the same numbers) has the same ER as ours
    same = pub.loc[pub["model"] == CLIP, "er_imagenet-r"]
    assert same.iloc[0] == pytest.approx(ours)
    assert report.standing("not-in-store") == []


def test_timm_published_is_one_row_per_model_at_the_larger_size():
    pub = timm_published(in1k_only=True)
    assert pub["model"].is_unique and pub["in1k_only"].all()
    assert pub["objectnet"].isna().all()
    x, y = _baseline_points("imagenet_r_top1")
    assert len(pub) == len(x)
    assert sorted(pub["imagenet"]) == pytest.approx(sorted(x))
    assert sorted(pub["imagenet-r"]) == pytest.approx(sorted(y))


def test_a_few_store_models_do_not_replace_timm_unless_asked(tmp_path, published_clip):
    store = ResultsStore(tmp_path / "s.duckdb")
    t = 0
    # three ImageNet-1k-only supervised models: too few to replace the published trend in auto
    for i, scale in enumerate((0.8, 0.9, 1.0)):
        for dataset in ("imagenet", "imagenet-r"):
            name = f"timm:resnet{18 + 16 * i}.tv_in1k"
            _write(store, name, False, dataset, published_clip[dataset] * scale, t := t + 1)
    _write(store, CLIP, True, "imagenet", published_clip["imagenet"], t := t + 1)
    _write(store, CLIP, True, "imagenet-r", published_clip["imagenet-r"], t + 1)
    auto = suite_table(store)
    assert {b.source for b in auto.baselines} == {"timm"}
    assert {b.source for b in suite_table(store, baseline="store").baselines} == {"store"}
    forced = suite_table(store, baseline="timm")
    assert {b.source for b in forced.baselines} == {"timm"}
    xb, yb = _baseline_points("imagenet_r_top1")
    row = forced.table.set_index("model").loc[CLIP]
    expected = _expected_er(xb, yb, published_clip["imagenet"], published_clip["imagenet-r"])
    assert row["er_imagenet-r"] == pytest.approx(expected, abs=1e-9)
    with pytest.raises(ValueError, match="timm"):
        suite_table(store, baseline="nope")  # type: ignore[arg-type]


def test_command_accepts_timm_baseline_and_says_so(one_clip_store, tmp_path):
    app = Typer()
    app.command("suite")(suite_cmd)
    app.command("other")(lambda: None)
    store = one_clip_store.path
    out = CliRunner().invoke(
        app, ["suite", "--store", str(store), "--baseline", "timm"], terminal_width=200
    )
    assert out.exit_code == 0, out.output
    assert "timm's published results" in out.output
    bad = CliRunner().invoke(app, ["suite", "--store", str(store), "--baseline", "x"])
    assert bad.exit_code == 2 and "timm" in bad.output
