"""One contract, tested once over every model family (timm's test_models.py in spirit).

Each family of the family table is a real architecture at random init and a tiny input size.
The head's logits are checked against an independent forward of the underlying library, not
against our own code. Two kinds share the image side: classifiers build a linear head, answer
scorers (LVLMs) rank candidate answers by likelihood (their numbers: tests/lvlm).
"""

from __future__ import annotations

import numpy as np
import open_clip
import pytest
import torch

from spurbench.data.classes import ClassList, imagenet_classes
from spurbench.errors import SpurbenchError
from spurbench.models import AnswerScorer, Features, LinearHead, ModelAdapter, create_model
from spurbench.models.registry import create_classifier
from spurbench.models.spec import (
    ANSWER_SCORER,
    CLASSIFIER,
    FAMILIES,
    FAMILY_TABLE,
    model_kind,
    parse_model_name,
)


@pytest.fixture(scope="module")
def names(tiny_clip_dir, tiny_hf_clip_dir, tiny_llava_dir):
    """One tiny model name per family of the table."""
    return {
        "open_clip": f"local-dir:{tiny_clip_dir}",
        "hf_clip": f"hf:{tiny_hf_clip_dir}",
        "timm": "timm:test_vit,random",
        "torchvision": "torchvision:resnet18:random",
        "lvlm": f"lvlm:{tiny_llava_dir}",
    }


@pytest.fixture(scope="module")
def adapters(names):
    return {family: create_model(name) for family, name in names.items()}


def test_every_family_has_a_contract_case(names):
    assert set(names) == set(FAMILIES)
    for family, name in names.items():
        spec = parse_model_name(name)
        assert spec.family == family and parse_model_name(spec.name) == spec


def _batch(adapter, n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, *adapter.preprocess_cfg.size, generator=g)


def _classes(adapter):
    if adapter.zero_shot:
        return ClassList(("ostrich", "black swan", "polar bear"), (9, 100, 296), "openai")
    return imagenet_classes().subset([9, 100, 296])


@pytest.mark.parametrize("family", FAMILIES)
def test_contract_shapes_and_determinism(adapters, family):
    adapter = adapters[family]
    assert adapter.spec.family == family
    x = _batch(adapter)
    with torch.inference_mode():
        a, b = adapter.encode_images(x), adapter.encode_images(x)
    assert isinstance(a, Features)
    assert a.pre_head.dtype == torch.float32 and a.embedding.dtype == torch.float32
    assert a.pre_head.shape[0] == a.embedding.shape[0] == 3
    assert torch.equal(a.embedding, b.embedding), "CPU inference must be deterministic"


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_is_the_kind_its_table_row_says(adapters, names, family):
    kind = FAMILY_TABLE[family].kind
    assert kind in (CLASSIFIER, ANSWER_SCORER) and model_kind(names[family]) == kind
    assert isinstance(adapters[family], ModelAdapter) == (kind == CLASSIFIER)
    assert isinstance(adapters[family], AnswerScorer) == (kind == ANSWER_SCORER)


@pytest.mark.parametrize("family", [f for f in FAMILIES if FAMILY_TABLE[f].kind == CLASSIFIER])
def test_classifier_builds_a_linear_head(adapters, family):
    adapter = adapters[family]
    with torch.inference_mode():
        emb = adapter.encode_images(_batch(adapter)).embedding
    head = adapter.head(_classes(adapter), ["a photo of a {c}."])
    assert isinstance(head, LinearHead)
    assert head.weight.shape == (3, emb.shape[1])
    assert head.logits(emb.numpy()).shape == (3, 3)
    proj = adapter.projection()
    if proj is not None:  # embedding = pre_head @ P when the last map is linear
        with torch.inference_mode():
            feats = adapter.encode_images(_batch(adapter))
        np.testing.assert_allclose(
            feats.pre_head.numpy() @ proj, feats.embedding.numpy(), atol=1e-5
        )


@pytest.mark.parametrize("family", [f for f in FAMILIES if FAMILY_TABLE[f].kind == ANSWER_SCORER])
def test_answer_scorer_ranks_each_images_candidates(adapters, family):
    """One loss per (image, candidate), deterministic; ragged candidate lists pad with inf."""
    from PIL import Image

    adapter = adapters[family]
    images = [Image.new("RGB", (40, 30), c) for c in ("red", "navy")]
    per_image = [["ostrich", "black swan", "polar bear"], ["tench", "goldfish"]]
    a = adapter.score_candidates(images, None, per_image)
    b = adapter.score_candidates(images, None, per_image)
    assert a.shape == (2, 3) and np.array_equal(a, b)
    assert np.isfinite(a[0]).all() and np.isfinite(a[1, :2]).all() and a[1, 2] == np.inf
    assert not hasattr(adapter, "head")
    assert len(adapter.chat_template_digest) == 16


def test_stages_needing_a_head_refuse_an_answer_scorer_before_it_loads(names, monkeypatch):
    from spurbench.models import registry

    monkeypatch.setattr(registry, "create_model", lambda *a, **k: pytest.fail("loaded"))
    with pytest.raises(SpurbenchError, match="no linear head"):
        create_classifier(names["lvlm"])


@pytest.mark.parametrize("family", FAMILIES)
def test_fingerprint_is_the_weights_identity(adapters, names, family):
    """A second load of a name hashes to the same 32 hex digits; a changed weight does not."""
    adapter = adapters[family]
    assert len(adapter.fingerprint) == 32
    again = create_model(names[family])
    assert again.fingerprint == adapter.fingerprint
    with torch.no_grad():
        next(iter(again.module.parameters())).add_(1.0)
    again._fingerprint = None  # the hash is memoised per adapter
    assert again.fingerprint != adapter.fingerprint


@pytest.mark.parametrize("family", ["timm", "torchvision"])
def test_supervised_logits_equal_direct_forward(adapters, family):
    adapter = adapters[family]
    x = _batch(adapter)
    with torch.inference_mode():
        direct = adapter.module(x).numpy()
        feats = adapter.encode_images(x)
    head = adapter.head(imagenet_classes(), [])
    np.testing.assert_allclose(head.logits(feats.embedding.numpy()), direct, rtol=1e-4, atol=1e-4)
    # a class subset picks exactly those rows, by ImageNet index
    sub = adapter.head(imagenet_classes("wordnet").subset([296, 9]), [])
    np.testing.assert_allclose(
        sub.logits(feats.embedding.numpy()), direct[:, [296, 9]], rtol=1e-4, atol=1e-4
    )


def test_open_clip_zero_shot_equals_build_zero_shot_classifier(adapters):
    adapter = adapters["open_clip"]
    names = ["ostrich", "black swan", "polar bear", "tench"]
    templates = ["a photo of a {c}.", "a sketch of the {c}.", "itap of a {c}."]
    x = _batch(adapter, 5)
    with torch.inference_mode():
        ref_w = open_clip.build_zero_shot_classifier(
            adapter.module,
            adapter.tokenizer,
            names,
            [t.replace("{c}", "{}") for t in templates],
            num_classes_per_batch=2,
        )
        img = adapter.module.encode_image(x, normalize=True)
        ref_logits = (adapter.module.logit_scale.exp() * img @ ref_w).numpy()
        feats = adapter.encode_images(x)
    head = adapter.head(ClassList(tuple(names)), templates)
    np.testing.assert_allclose(head.weight, ref_w.T.numpy(), atol=1e-5)
    np.testing.assert_allclose(head.logits(feats.embedding.numpy()), ref_logits, atol=1e-4)
    assert (head.logits(feats.embedding.numpy()).argmax(1) == ref_logits.argmax(1)).all()


def test_hf_clip_logits_equal_transformers_forward(adapters):
    adapter = adapters["hf_clip"]
    names = ("cat", "dog", "ostrich")
    x = _batch(adapter, 4)
    tok = adapter.tokenizer(
        [f"a photo of a {n}." for n in names], return_tensors="pt", padding=True
    )
    with torch.inference_mode():
        out = adapter.module(
            input_ids=tok.input_ids, attention_mask=tok.attention_mask, pixel_values=x
        )
        feats = adapter.encode_images(x)
    head = adapter.head(ClassList(names), ["a photo of a {c}."])
    np.testing.assert_allclose(
        head.logits(feats.embedding.numpy()), out.logits_per_image.numpy(), atol=1e-4
    )


def test_fingerprint_changes_with_weights(tiny_clip_dir, tmp_path):
    from tests.conftest import save_tiny_clip

    other = save_tiny_clip(tmp_path / "other", seed=1)
    a = create_model(f"local-dir:{tiny_clip_dir}")
    b = create_model(f"local-dir:{tiny_clip_dir}")
    c = create_model(f"local-dir:{other}")
    assert a.fingerprint == b.fingerprint != c.fingerprint


def test_open_clip_local_checkpoint_path(tmp_path):
    """'ARCH,/path/to/ckpt' loads a user's checkpoint file, as clip_benchmark users write it."""
    from safetensors.torch import save_file

    torch.manual_seed(3)
    model = open_clip.create_model("RN50")
    ckpt = tmp_path / "rn50.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(ckpt))
    adapter = create_model(f"RN50,{ckpt}")
    x = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        assert torch.allclose(
            adapter.encode_images(x).embedding, model.eval().encode_image(x), atol=1e-5
        )
