"""Which models effective robustness is measured from: ImageNet-1k-only ones, published unless the
store holds a real baseline, and imagenet-testbed's for ObjectNet and the five-shift mean.

Expected values are fitted here with numpy.polyfit on logit values, from the shipped CSV read
with the csv module (not the loader) or from the store's planted numbers.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from typer import Typer
from typer.testing import CliRunner

from spurbench.cli import suite as suite_command
from spurbench.cli.suite import suite_cmd
from spurbench.data.imagenet_shifts import SHIFTS
from spurbench.reference.testbed import load_openclip_results, load_timm_results
from spurbench.store import ResultsStore
from spurbench.suite import MIN_STORE_BASELINE, suite_table
from tests.suite.test_timm_baseline import _expected_er, _write

TESTBED_CSV = Path(__file__).resolve().parents[2] / "src/spurbench/reference/testbed_results.csv"
CLIP = "ViT-B-32,openai"
#: suite dataset -> (open_clip column, testbed_results.csv column)
COLUMNS = {
    "imagenet": ("imagenet1k", "imagenet_top1"),
    "imagenet-v2": ("imagenetv2", "imagenetv2_top1"),
    "imagenet-sketch": ("imagenet_sketch", "sketch_top1"),
    "imagenet-r": ("imagenet_r", "imagenet_r_top1"),
    "imagenet-a": ("imagenet_a", "imagenet_a_top1"),
    "objectnet": ("objectnet", "objectnet_top1"),
}


def _standard_rows(datasets: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """ImageNet and the mean over ``datasets`` of the testbed's STANDARD models having all."""
    with TESTBED_CSV.open(encoding="utf-8", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["model_type"] == "STANDARD"]
    cols = [COLUMNS[d][1] for d in datasets]
    rows = [r for r in rows if all(r[c] for c in ["imagenet_top1", *cols])]
    x = np.array([float(r["imagenet_top1"]) for r in rows]) / 100
    y = np.array([[float(r[c]) for c in cols] for r in rows]).mean(axis=1) / 100
    return x, y


@pytest.fixture()
def clip_on_all_six(tmp_path) -> tuple[ResultsStore, dict[str, float]]:
    """A store with one CLIP model on all six datasets, at open_clip's published accuracies."""
    row = load_openclip_results().set_index("model_name").loc[CLIP]
    acc = {name: float(row[oc]) for name, (oc, _) in COLUMNS.items()}
    store = ResultsStore(tmp_path / "clip.duckdb")
    for t, (dataset, value) in enumerate(acc.items()):
        _write(store, CLIP, True, dataset, value, t)
    return store, acc


def test_objectnet_and_the_five_shift_mean_are_measured_from_testbed_standard_models(
    clip_on_all_six,
):
    store, acc = clip_on_all_six
    report = suite_table(store)
    row = report.table.set_index("model").loc[CLIP]
    xb, yb = _standard_rows(["objectnet"])
    assert row["er_objectnet"] == pytest.approx(
        _expected_er(xb, yb, acc["imagenet"], acc["objectnet"]), abs=1e-9
    )
    assert row["er_objectnet"] > 0  # zero-shot CLIP lies above the ImageNet-model trend
    assert row["er_objectnet_baseline"] == f"testbed n={len(xb)}"
    # er_mean: all five shifts, against the testbed trend of the same five-shift mean
    assert row["n_shifts"] == len(SHIFTS) == 5
    xm, ym = _standard_rows(list(SHIFTS))
    mean = float(np.mean([acc[s] for s in SHIFTS]))
    assert row["er_mean"] == pytest.approx(_expected_er(xm, ym, acc["imagenet"], mean), abs=1e-9)
    assert row["er_mean_baseline"] == f"testbed n={len(xm)}"
    assert len(xm) < len(xb)  # five standard models have no ImageNet-R number
    # the other shifts keep timm's larger published baseline
    assert row["er_imagenet-r_baseline"].startswith("timm n=")
    note = next(n for n in report.notes() if n.startswith("ER objectnet:"))
    assert "imagenet-testbed" in note and f"n={len(xb)}" in note
    assert not [c for c in report.table.columns if c.startswith("gap_vs_clip_trend_")]


def test_a_mean_over_fewer_shifts_says_so(clip_on_all_six):
    """timm alone has no ObjectNet: its er_mean averages the four shifts it has, and says so."""
    store, acc = clip_on_all_six
    row = suite_table(store, baseline="timm").table.set_index("model").loc[CLIP]
    assert np.isnan(row["er_objectnet"])
    four = [s for s in SHIFTS if s != "objectnet"]
    assert row["er_mean_baseline"].endswith(", mean of 4 of 5 shifts")
    rows = load_timm_results(in1k_only=True).sort_values(["model", "img_size"])
    rows = rows.drop_duplicates("model", keep="last")
    cols = [COLUMNS[s][1] for s in four]
    rows = rows.dropna(subset=["imagenet_top1", *cols])
    x = rows["imagenet_top1"].to_numpy() / 100
    y = rows[cols].to_numpy().mean(axis=1) / 100
    mean = float(np.mean([acc[s] for s in four]))
    assert row["er_mean"] == pytest.approx(_expected_er(x, y, acc["imagenet"], mean), abs=1e-9)


def _in1k_names(n: int) -> list[str]:
    names = load_timm_results(in1k_only=True)["model_name"].drop_duplicates()
    return names.head(n).tolist()


def _store_with(tmp_path, n_in1k: int, clip: dict[str, float]) -> tuple[ResultsStore, list]:
    """``n_in1k`` ImageNet-1k-only models on a planted trend, three more-data supervised models
    far off it (which must never enter the baseline), and the CLIP model."""
    store = ResultsStore(tmp_path / f"s{n_in1k}.duckdb")
    rng = np.random.default_rng(n_in1k)
    points = []
    t = 0
    for name in _in1k_names(n_in1k):
        x = float(rng.uniform(0.6, 0.85))
        y = float(np.clip(x - 0.4 + rng.normal(0, 0.02), 0.01, 0.99))
        points.append((x, y))
        _write(store, name, False, "imagenet", x, t := t + 1)
        _write(store, name, False, "imagenet-r", y, t := t + 1)
    for name in (
        "timm:convnext_base.fb_in22k_ft_in1k",
        "timm:vit_base_patch16_clip_224.openai_ft_in1k",
        "torchvision:regnet_y_16gf:IMAGENET1K_SWAG_E2E_V1",
    ):
        _write(store, name, False, "imagenet", 0.85, t := t + 1)
        _write(store, name, False, "imagenet-r", 0.80, t := t + 1)
    _write(store, CLIP, True, "imagenet", clip["imagenet"], t := t + 1)
    _write(store, CLIP, True, "imagenet-r", clip["imagenet-r"], t + 1)
    return store, points


def test_auto_uses_the_store_only_once_it_holds_a_real_in1k_baseline(tmp_path, clip_on_all_six):
    _, acc = clip_on_all_six
    small, _ = _store_with(tmp_path, MIN_STORE_BASELINE - 1, acc)
    assert {b.source for b in suite_table(small).baselines} == {"timm"}
    forced = suite_table(small, baseline="store")
    row = forced.table.set_index("model").loc[CLIP]
    assert row["er_imagenet-r_baseline"] == f"store n={MIN_STORE_BASELINE - 1}"

    big, points = _store_with(tmp_path, MIN_STORE_BASELINE, acc)
    report = suite_table(big)
    row = report.table.set_index("model").loc[CLIP]
    assert row["er_imagenet-r_baseline"] == f"store n={MIN_STORE_BASELINE}"
    x, y = np.array(points).T  # the in1k models alone: the three more-data ones are left out
    expected = _expected_er(x, y, acc["imagenet"], acc["imagenet-r"])
    assert row["er_imagenet-r"] == pytest.approx(expected, abs=1e-9)


def test_command_prints_the_baseline_beside_every_er(clip_on_all_six, monkeypatch):
    store, _ = clip_on_all_six
    monkeypatch.setattr(suite_command, "console", Console(width=250))  # no wrapped cells
    app = Typer()
    app.command("suite")(suite_cmd)
    app.command("other")(lambda: None)
    out = CliRunner().invoke(app, ["suite", "--store", str(store.path)])
    assert out.exit_code == 0, out.output
    xm, _ = _standard_rows(list(SHIFTS))
    header = next(line for line in out.output.splitlines() if "ER mean" in line)
    assert "baseline" in header
    assert f"testbed n={len(xm)}" in out.output
    assert "ER objectnet: imagenet-testbed" in out.output
    gap = CliRunner().invoke(app, ["suite", "--store", str(store.path), "--baseline", "openclip"])
    assert gap.exit_code == 0, gap.output
    assert "gap vs CLIP trend" in gap.output and "ER mean" not in gap.output


def test_standing_names_the_trend(clip_on_all_six):
    store, _ = clip_on_all_six
    report = suite_table(store)
    line = next(s for s in report.standing(CLIP) if " ER objectnet " in s)
    xb, _ = _standard_rows(["objectnet"])
    assert f"(testbed n={len(xb)})" in line and "testbed ImageNet-1k-only" in line
