"""Model names: parsing, closest-name errors, and the offline weights message."""

from __future__ import annotations

import pytest

from spurbench.errors import UnknownModelError, WeightsUnavailableError
from spurbench.models import create_model, list_models, parse_model_name


@pytest.mark.parametrize(
    ("name", "family", "arch", "pretrained"),
    [
        ("ViT-B-32,laion2b_s34b_b79k", "open_clip", "ViT-B-32", "laion2b_s34b_b79k"),
        ("ViT-B-32,/ckpt/x.pt", "open_clip", "ViT-B-32", "/ckpt/x.pt"),
        ("hf-hub:timm/ViT-B-16-SigLIP", "open_clip", "hf-hub:timm/ViT-B-16-SigLIP", None),
        ("hf:openai/clip-vit-base-patch32", "hf_clip", "openai/clip-vit-base-patch32", None),
        ("timm:resnet50,a1_in1k", "timm", "resnet50", "a1_in1k"),
        ("timm:resnet50.a1_in1k", "timm", "resnet50", "a1_in1k"),
        ("resnet50.a1_in1k", "timm", "resnet50", "a1_in1k"),
        ("timm:local-dir:/ckpt/v1.2", "timm", "local-dir:/ckpt/v1.2", None),
        ("torchvision:resnet50:IMAGENET1K_V2", "torchvision", "resnet50", "IMAGENET1K_V2"),
        ("resnet50:IMAGENET1K_V2", "torchvision", "resnet50", "IMAGENET1K_V2"),
        ("torchvision:vit_b_16", "torchvision", "vit_b_16", None),
    ],
)
def test_parse(name, family, arch, pretrained):
    spec = parse_model_name(name)
    assert (spec.family, spec.arch, spec.pretrained) == (family, arch, pretrained)
    assert parse_model_name(spec.name) == spec


def test_both_timm_spellings_store_under_one_name(tmp_path):
    """``arch,tag`` and timm's ``arch.tag`` load one weight, so they must give one store row."""
    from typer.testing import CliRunner

    from spurbench.cli import app
    from spurbench.store import ResultsStore
    from tests.reliability.conftest import make_grouped

    data, store = make_grouped(tmp_path / "data", per_group=2), tmp_path / "r.duckdb"
    for i, model in enumerate(["timm:test_resnet,random", "timm:test_resnet.random"]):
        out = CliRunner().invoke(
            app,
            [
                "eval", "-m", model, "-d", str(data), "--protocol", "1vN", "--store", str(store),
                "--cache-dir", str(tmp_path / f"cache{i}"), "--batch-size", "8", "-q",
            ],
        )  # fmt: skip
        assert out.exit_code == 0, out.output
    runs = ResultsStore(store).runs()
    assert runs["model"].tolist() == ["timm:test_resnet,random"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ViT-B-33,openai", "ViT-B-32"),
        ("ViT-B-32,laion2b_s34b_b78k", "laion2b_s34b_b79k"),
        ("timm:resnet51,random", "resnet50"),
        ("torchvision:resnet50:IMAGENET1K_V3", "IMAGENET1K_V2"),
        ("torchvision:resnet5:random", "resnet50"),
    ],
)
def test_unknown_names_suggest_closest(name, expected):
    with pytest.raises(UnknownModelError, match=expected):
        create_model(name)


def test_arch_without_weights_explains_how_to_name_them():
    with pytest.raises(UnknownModelError, match="ViT-B-32,random"):
        create_model("ViT-B-32")


def test_unreachable_weights_give_actionable_error(monkeypatch, tmp_path):
    """No network: the user learns how to pass a local file, not a hub traceback."""
    import open_clip

    def offline(*args, **kwargs):
        raise RuntimeError(
            "Failed to download file (open_clip_pytorch_model.bin): Name or service not known"
        )

    monkeypatch.setattr(open_clip, "create_model_and_transforms", offline)
    with pytest.raises(WeightsUnavailableError, match="local file"):
        create_model("ViT-B-32,laion400m_e31")


def test_list_models_covers_every_open_clip_pair(tmp_path):
    import open_clip

    df = list_models(family="open_clip", cache_dir=tmp_path)
    assert len(df) == len(open_clip.list_pretrained())
    assert "ViT-B-32,laion400m_e31" in set(df["name"])
    tv = list_models("resnet50*", family="torchvision", cache_dir=tmp_path)
    assert set(tv["name"]) == {
        "torchvision:resnet50:IMAGENET1K_V1",
        "torchvision:resnet50:IMAGENET1K_V2",
    }


def test_listed_names_are_kept_per_library_version(tmp_path, monkeypatch):
    """The second listing reads the cache; another installed version lists afresh."""
    import importlib.metadata

    from spurbench.models.listing import known_pairs
    from spurbench.models.spec import FAMILY_TABLE, Family

    calls = []

    def lister():
        calls.append(1)
        return [("RN50", "openai"), ("resnet50", None)]

    family = Family("open_clip", "open_clip:", str, str, "x:Y", lister, dist="open_clip_torch")
    expected = [("RN50", "openai"), ("resnet50", "")]
    assert known_pairs(family, tmp_path) == expected
    assert known_pairs(family, tmp_path) == expected and len(calls) == 1
    version = importlib.metadata.version("open_clip_torch")
    assert (tmp_path / "model_names" / f"open_clip-{version}.json").is_file()
    monkeypatch.setattr(importlib.metadata, "version", lambda dist: "0.0.0-other")
    assert known_pairs(family, tmp_path) == expected and len(calls) == 2
    # the real table's lister gives the same pairs whether read from the library or the cache
    real = FAMILY_TABLE["torchvision"]
    monkeypatch.undo()
    direct = [(arch, tag or "") for arch, tag in real.lister()]
    assert known_pairs(real, tmp_path) == direct == known_pairs(real, tmp_path)


def test_quick_gelu_tags_are_built_with_quick_gelu(monkeypatch):
    """Tags trained with QuickGELU must not silently get GELU (open_clip only warns)."""
    import open_clip

    seen = {}

    def fake(name, pretrained=None, **kwargs):
        seen[(name, pretrained)] = kwargs["force_quick_gelu"]
        raise RuntimeError("Failed to download (test stops here)")

    monkeypatch.setattr(open_clip, "create_model_and_transforms", fake)
    for name in ("ViT-B-32,laion400m_e31", "ViT-B-32,laion2b_s34b_b79k", "RN50,openai"):
        with pytest.raises(WeightsUnavailableError):
            create_model(name)
    assert seen == {("ViT-B-32", "laion400m_e31"): True,
                    ("ViT-B-32", "laion2b_s34b_b79k"): False, ("RN50", "openai"): True}
