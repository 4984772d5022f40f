"""imagenet-testbed's published results: the shipped CSV equals what its import script makes of
the testbed's files, and the ImageNet-1k-only rule follows the testbed's own metadata.

Numbers are never typed in here: they are read from the verbatim excerpt in
``data/testbed_excerpt`` (see its README) or from the shipped CSV with the csv module.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from types import ModuleType

import pytest

from spurbench.reference import testbed  # its testbed_* names would be collected as tests
from spurbench.reference.testbed import (
    TESTBED_ACCURACY_COLUMNS,
    load_testbed_results,
    store_model_in1k_only,
    timm_in1k_only,
)
from tests.reference.scripts import REFERENCE, load_script

EXCERPT = Path(__file__).parent / "data" / "testbed_excerpt"
SHIPPED = REFERENCE / "testbed_results.csv"
SOURCES = REFERENCE / "SOURCES.md"


def _script() -> ModuleType:
    return load_script("import_testbed_results")


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_script_on_excerpt_gives_the_shipped_rows():
    script = _script()
    rows = script.extract(script.folder_reader(EXCERPT))
    shipped = {r["model"]: r for r in _csv(SHIPPED)}
    raw = {r["model"]: r for r in _csv(EXCERPT / "robustness_top1s.csv")}
    assert [r["model"] for r in rows] == list(raw)
    for row in rows:
        assert shipped[row["model"]] == row
        src = raw[row["model"]]
        assert row["objectnet_top1"] == src["objectnet-1.0-beta"]
        assert row["imagenet_top1"] == src["val"]
        # the release spurbench reads, not the older one
        assert row["imagenetv2_top1"] == src["imagenetv2-matched-frequency-format-val"]
    types = {r["model"]: r["model_type"] for r in rows}
    assert types["resnet50"] == "STANDARD" and types["instagram-resnext101_32x8d"] == "MORE_DATA"
    assert types["resnet18_50k_3_epochs"] == "LOW_ACCURACY_CNN"  # added by the loop
    assert shipped["resnet50-vtab"]["imagenet_r_top1"] == ""  # not evaluated: stays empty


def test_script_check_mode_compares_without_writing(tmp_path):
    script = _script()
    out = tmp_path / "t.csv"
    assert script.main(["--from", str(EXCERPT), "--out", str(out)]) == 0
    written = out.read_text()
    assert script.main(["--from", str(EXCERPT), "--out", str(out), "--check"]) == 0
    out.write_text(written.replace("STANDARD", "MORE_DATA", 1))
    assert script.main(["--from", str(EXCERPT), "--out", str(out), "--check"]) == 1
    assert out.read_text() != written  # --check wrote nothing


def test_sources_md_names_the_commit_and_the_script():
    text = SOURCES.read_text()
    section = text[text.index("## `testbed_results.csv`") :]
    assert re.search(r"modestyachts/imagenet-testbed.*?`[0-9a-f]{40}`", section, re.S)
    assert "scripts/import_testbed_results.py" in section


def test_loader_in1k_only_is_the_testbeds_standard_models():
    rows = _csv(SHIPPED)
    standard = {r["model"] for r in rows if r["model_type"] == "STANDARD"}
    loaded = load_testbed_results(in1k_only=True)
    assert set(loaded["model"]) == standard
    assert len(load_testbed_results()) == len(rows)
    raw = {r["model"]: r for r in rows}
    for r in loaded.itertuples():
        for col in TESTBED_ACCURACY_COLUMNS:
            text = raw[r.model][col]
            got = getattr(r, col)
            assert (text == "" and got != got) or got == pytest.approx(float(text), abs=0)
    assert not testbed.testbed_in1k_only("MORE_DATA")
    assert not testbed.testbed_in1k_only("ROBUST_INTV") and not testbed.testbed_in1k_only("")


@pytest.mark.parametrize(
    ("model", "timm_name"),
    [
        ("timm:resnet50.a1_in1k", "resnet50.a1_in1k"),
        ("timm:resnet50,a1_in1k", "resnet50.a1_in1k"),
        ("timm:vit_base_patch16_224.augreg2_in21k_ft_in1k", None),
        ("timm:vit_base_patch16_clip_224.openai_ft_in1k", None),
        ("timm:convnext_base.fb_in22k_ft_in1k", None),
        ("torchvision:resnet50:IMAGENET1K_V1", "resnet50.tv_in1k"),
        ("torchvision:resnet50:IMAGENET1K_V2", "resnet50.tv_in1k"),
        ("torchvision:regnet_y_16gf:IMAGENET1K_SWAG_E2E_V1", None),
    ],
)
def test_store_models_follow_timms_rule(model, timm_name):
    """The store rule is timm's rule on the equivalent timm name (None: not ImageNet-1k only)."""
    expected = timm_name is not None and timm_in1k_only(timm_name)
    assert store_model_in1k_only(model) is expected
    if timm_name is not None:
        assert expected  # the cases above that name a timm model are ImageNet-1k only


@pytest.mark.parametrize(
    "model",
    ["ViT-B-32,openai", "hf:openai/clip-vit-base-patch32", "timm:resnet50", "resnet50:random"],
)
def test_store_models_without_stated_in1k_training_are_excluded(model):
    assert not store_model_in1k_only(model)
