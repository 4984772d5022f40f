"""timm's published results: the shipped CSV equals what its import script makes of timm's files,
the ImageNet-1k-only rule, and the ImageNet-model trend those models give.

Numbers are never typed in here: they are read from the verbatim excerpt of timm's files in
``data/timm_excerpt`` (see its README), from the full files when the local timm mirror is
present, or from open_clip's published table.
"""

from __future__ import annotations

import csv
import re
import subprocess
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest
import scipy.special
import scipy.stats

from spurbench.reference import testbed
from spurbench.reference.testbed import (
    TIMM_ACCURACY_COLUMNS,
    load_openclip_results,
    load_timm_results,
    timm_in1k_only,
    timm_training_data,
)
from tests.reference.scripts import REFERENCE, load_script

EXCERPT = Path(__file__).parent / "data" / "timm_excerpt"
SHIPPED = REFERENCE / "timm_results.csv"
SOURCES = REFERENCE / "SOURCES.md"
MIRROR = Path("/work/.mirror/huggingface+pytorch-image-models/repo")


def _script() -> ModuleType:
    return load_script("import_timm_results")


def _commit() -> str:
    """The timm commit SOURCES.md says the CSV was taken from."""
    m = re.search(
        r"## `timm_results.csv`.*?at commit\s+`([0-9a-f]{40})`", SOURCES.read_text(), re.S
    )
    assert m, "SOURCES.md names no timm commit"
    return m.group(1)


def _shipped_rows() -> dict[tuple[str, str], dict[str, str]]:
    with SHIPPED.open(encoding="utf-8", newline="") as fh:
        return {(r["model"], r["img_size"]): r for r in csv.DictReader(fh)}


def _raw(folder: Path, name: str) -> pd.DataFrame:
    """One of timm's files, parsed independently of the import script."""
    return pd.read_csv(folder / name, thousands=",", dtype={"model": str})


# --- the CSV against timm's files ---------------------------------------------------------------


def test_script_on_excerpt_gives_the_shipped_rows():
    script = _script()
    rows = script.join(script.folder_reader(EXCERPT))
    shipped = _shipped_rows()
    keys = [(r["model"], r["img_size"]) for r in rows]
    assert len(keys) == len(set(keys))
    for row in rows:
        assert shipped[(row["model"], row["img_size"])] == row
    # the join's edge cases, read off the raw excerpt rather than typed in
    imagenet = _raw(EXCERPT, "results-imagenet.csv")
    only_a = set(_raw(EXCERPT, "results-imagenet-a.csv")["model"]) - set(imagenet["model"])
    no_a = set(imagenet["model"]) - set(_raw(EXCERPT, "results-imagenet-a.csv")["model"])
    assert len(rows) == len(imagenet) + len(only_a)
    by_model = {r["model"]: r for r in rows}
    for m in only_a:
        assert by_model[m]["imagenet_top1"] == "" and by_model[m]["imagenet_a_top1"] != ""
    for m in no_a:
        assert by_model[m]["imagenet_a_top1"] == "" and by_model[m]["imagenet_top1"] != ""
    assert any(
        "," in line for line in (EXCERPT / "results-imagenet.csv").read_text().splitlines()[1:]
    )
    assert all("," not in r["param_count"] for r in rows)


def test_loader_values_equal_raw_excerpt():
    """Every excerpt number, parsed by pandas on its own, equals the loaded value."""
    loaded = load_timm_results().set_index(["model", "img_size"])
    script = _script()
    for column, name in script.FILES.items():
        raw = _raw(EXCERPT, name)
        for r in raw.itertuples():
            got = loaded.loc[(r.model, r.img_size)]
            assert got[column] == pytest.approx(r.top1, abs=0)
            assert got["param_count"] == pytest.approx(r.param_count, abs=0)
            assert got["crop_pct"] == pytest.approx(r.crop_pct, abs=0)


@pytest.mark.skipif(
    not MIRROR.is_dir(), reason="no local mirror of huggingface/pytorch-image-models"
)
def test_shipped_csv_is_the_script_output_at_the_cited_commit(tmp_path):
    commit = _commit()
    has = subprocess.run(
        ["git", f"--git-dir={MIRROR}", "cat-file", "-e", f"{commit}^{{commit}}"],
        capture_output=True,
    )
    if has.returncode != 0:
        pytest.skip(f"mirror lacks commit {commit}")
    script = _script()
    read = script.git_reader(MIRROR, commit)
    assert script.to_csv(script.join(read)) == SHIPPED.read_text(encoding="utf-8")
    loaded = load_timm_results()
    for column, name in script.FILES.items():
        (tmp_path / name).write_text(read(name), encoding="utf-8")
        raw = _raw(tmp_path, name)
        assert loaded[column].notna().sum() == len(raw)  # every published row, once
        merged = raw.merge(loaded, on=["model", "img_size"], how="left", validate="1:1")
        assert np.array_equal(merged["top1"].to_numpy(), merged[column].to_numpy())


def test_loader_schema_and_documented_counts():
    df = load_timm_results()
    assert set(TIMM_ACCURACY_COLUMNS) <= set(df.columns)
    assert not df.duplicated(["model", "img_size"]).any()
    assert (df["family"] == "timm").all()
    assert (df["model_name"] == "timm:" + df["arch"] + "," + df["pretrained"]).all()
    acc = df[list(TIMM_ACCURACY_COLUMNS)]
    assert ((acc >= 0) & (acc <= 100) | acc.isna()).all().all()  # percent, as published
    assert df["in1k_only"].dtype == bool
    assert (df["in1k_only"] == (df["training_data"] == "ImageNet-1k")).all()
    # the counts SOURCES.md states are the file's
    text = SOURCES.read_text()
    m = re.search(r"\*\*Rows\.\*\* ([\d,]+) rows = ([\d,]+) distinct models", text)
    assert m and (len(df), df["model"].nunique()) == tuple(
        int(g.replace(",", "")) for g in m.groups()
    )
    m = re.search(r"Result: ([\d,]+) of [\d,]+ rows, ([\d,]+) of\s+[\d,]+ models", text)
    only = df[df["in1k_only"]]
    assert m and (len(only), only["model"].nunique()) == tuple(
        int(g.replace(",", "")) for g in m.groups()
    )
    assert len(load_timm_results(in1k_only=True)) == len(only)
    assert len(load_timm_results(in1k_only=False)) == len(df) - len(only)


# --- which models are ImageNet-1k-only ----------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("resnet50.tv_in1k", True),
        ("resnet50.a1_in1k", True),
        ("mobilenetv4_conv_large.e600_r384_in1k", True),
        ("tf_efficientnet_b0.ap_in1k", True),
        ("vit_base_patch16_224.augreg_in1k", True),
        ("convnext_tiny.fb_in22k_ft_in1k", False),
        ("vit_base_patch16_224.augreg_in21k_ft_in1k", False),
        ("convnext_base.clip_laion2b_augreg_ft_in12k_in1k", False),
        ("vit_base_patch16_clip_224.openai_ft_in1k", False),
        ("vit_base_patch16_clip_224.laion2b_ft_in1k", False),
        ("beit_base_patch16_224.in22k_ft_in22k_in1k", False),
        ("tf_efficientnet_b0.ns_jft_in1k", False),
        ("resnet50.fb_swsl_ig1b_ft_in1k", False),
        ("convnextv2_tiny.fcmae_ft_in1k", False),  # self-supervised stage, tag names no data
        ("deit_base_distilled_patch16_224.fb_in1k", False),  # a teacher
        ("levit_128.fb_dist_in1k", False),
        ("resmlp_24_224.fb_dino", False),  # no in1k at all
        ("hrnet_w18_ssld.paddle_in1k", False),  # the architecture name says distillation
        ("resnet50", False),  # no tag
        ("resnet50.xyz_in1k", False),  # a token nobody reviewed
    ],
)
def test_in1k_only_rule(model, expected):
    assert timm_in1k_only(model) is expected
    assert (timm_training_data(model) == "ImageNet-1k") is expected


def test_training_data_names_what_the_tag_says():
    assert timm_training_data("convnext_tiny.fb_in22k_ft_in1k") == "ImageNet-22k → ImageNet-1k"
    assert timm_training_data("vit_base_patch16_clip_224.openai_ft_in12k_in1k") == (
        "OpenAI CLIP (WIT-400M) → ImageNet-12k → ImageNet-1k (+ arch: clip)"
    )
    assert timm_training_data("convnextv2_tiny.fcmae_ft_in1k") == "ImageNet-1k (+ fcmae, ft)"


def test_no_in1k_only_model_names_other_data():
    """An independent substring check over the whole file, not the rule's own token lists."""
    df = load_timm_results()
    other = re.compile(
        r"in21k|in22k|in12k|laion|openai|clip|webli|jft|ig1b|yfcc|swag|seer|m30m|m38m|"
        r"swsl|ssl|wsl|mim|mae|dist|teacher|usi|dino|(?:^|[._])ft(?:[._]|$)"
    )
    named = df["model"].str.contains(other)
    assert not (named & df["in1k_only"]).any()
    # and every tag the rule admits ends in in1k (optionally a resolution)
    assert df.loc[df["in1k_only"], "pretrained"].str.fullmatch(r"(.+_)?in1k(_\d+)?").all()


def test_recipe_tokens_have_no_data_tokens():
    assert not set(testbed._TIMM_DATA) & testbed._TIMM_RECIPE_TOKENS


# --- the ImageNet-model trend from timm's published numbers -------------------------------------


def _baseline_points(shift_column: str) -> tuple[np.ndarray, np.ndarray]:
    """x, y (fractions) of the in1k-only models, one row per model (the larger img_size),
    rebuilt from the CSV with the csv module rather than through the loader."""
    best: dict[str, tuple[int, float, float]] = {}
    with SHIPPED.open(encoding="utf-8", newline="") as fh:
        for r in csv.DictReader(fh):
            if not timm_in1k_only(r["model"]) or not r["imagenet_top1"] or not r[shift_column]:
                continue
            size = int(r["img_size"])
            if r["model"] not in best or size > best[r["model"]][0]:
                best[r["model"]] = (size, float(r["imagenet_top1"]), float(r[shift_column]))
    pts = np.array([(x, y) for _, x, y in best.values()]) / 100.0
    return pts[:, 0], pts[:, 1]


def _fit(shift_column: str) -> tuple[float, float]:
    x, y = _baseline_points(shift_column)
    slope, intercept = np.polyfit(scipy.special.logit(x), scipy.special.logit(y), 1)
    return float(slope), float(intercept)


@pytest.mark.parametrize(
    ("shift_column", "openclip_column"),
    [("imagenet_r_top1", "imagenet_r"), ("sketch_top1", "imagenet_sketch")],
)
def test_clip_zero_shot_models_lie_above_the_imagenet_trend(shift_column, openclip_column):
    """Taori et al. (2020) / Radford et al. (2021): ImageNet models' shift accuracy rises with
    ImageNet accuracy on a logit-linear trend, and zero-shot CLIP models lie above it."""
    slope, intercept = _fit(shift_column)
    assert slope > 0
    x, y = _baseline_points(shift_column)
    assert scipy.stats.linregress(scipy.special.logit(x), scipy.special.logit(y)).rvalue > 0.9
    clip = load_openclip_results().dropna(subset=["imagenet1k", openclip_column])
    predicted = scipy.special.expit(intercept + slope * scipy.special.logit(clip["imagenet1k"]))
    assert (clip[openclip_column] - predicted > 0).all()
