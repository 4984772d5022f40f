"""Zero-shot text heads: prompts encoded only up to their EOT token equal full-context CLIP.

open_clip's ``CLIP.encode_text`` runs every prompt through the whole context (77 tokens), then
reads the output at the end-of-text token. Attention is causal, so that output does not depend
on the padding after it; the adapter cuts each length-sorted batch after its longest prompt.
"""

from __future__ import annotations

import numpy as np
import open_clip
import pytest
import torch

from spurbench.models import create_model
from spurbench.models import open_clip_adapter as oca

#: Prompts of very different lengths, one longer than the 77-token context (cut by the
#: tokenizer, which then puts EOT at the last position).
PROMPTS = [
    "A photo of goldfish.",
    "A photo of a great white shark, the large predatory fish of temperate oceans.",
    "tench",
    "A photo of " + "very " * 90 + "long name.",
    "A photo of a hen.",
    "itap of a American black bear.",
]


def full_context(module: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return module.encode_text(tokens, normalize=True).float()


@pytest.fixture(scope="module")
def vit_b32():
    """The real ViT-B-32 architecture (77-token context, width 512) at random init."""
    return create_model("ViT-B-32,random")


@pytest.fixture(scope="module")
def tiny(tiny_clip_dir):
    return create_model(f"local-dir:{tiny_clip_dir}")


@pytest.mark.parametrize("which", ["vit_b32", "tiny"])
def test_truncated_prompts_equal_full_context_encode_text(which, request):
    adapter = request.getfixturevalue(which)
    tokens = adapter.tokenizer(PROMPTS)
    assert oca._prefix_encodable(adapter.module, tokens)
    got = adapter.encode_prompts(tokens)
    assert adapter._prefix_ok is True
    torch.testing.assert_close(got, full_context(adapter.module, tokens), atol=1e-5, rtol=0)
    # and the batches really are cut: the shortest prompts run on a few tokens only
    ends = tokens.argmax(dim=-1)
    assert int(ends.min()) + 1 < tokens.shape[1]


def test_text_classifier_matches_the_full_context_reference(vit_b32, monkeypatch):
    names = ["goldfish", "great white shark", "American black bear", "hen"]
    templates = ["A photo of {c}.", "a bad photo of the {c}.", "itap of a {c}."]
    monkeypatch.setattr(oca, "TEXT_BATCH", 5)  # several length-sorted batches, unsorted back
    got = vit_b32.text_classifier(names, templates)
    prompts = [t.format(c=n) for n in names for t in templates]
    ref = full_context(vit_b32.module, vit_b32.tokenizer(prompts))
    ref = ref.reshape(len(names), len(templates), -1).mean(dim=1)
    ref = (ref / ref.norm(dim=1, keepdim=True)).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)


def _tiny_cfg(**text):
    return {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16,
                       "head_width": 16},
        "text_cfg": {"context_length": 12, "vocab_size": 49408, "width": 32, "heads": 2,
                     "layers": 1, **text},
    }  # fmt: skip


@pytest.mark.parametrize(
    "text",
    [
        {"no_causal_mask": True},  # bidirectional attention: padding reaches the EOT token
        {"pool_type": "last"},  # pooled at the last position, which truncation would move
    ],
)
def test_towers_that_are_not_causal_argmax_use_the_full_context(text):
    torch.manual_seed(0)
    module = open_clip.CLIP(**_tiny_cfg(**text)).eval()
    tokens = open_clip.get_tokenizer("ViT-B-32", context_length=12)(PROMPTS[:3])
    assert not oca._prefix_encodable(module, tokens)
    assert oca._prefix_encodable(open_clip.CLIP(**_tiny_cfg()), tokens)


def test_custom_text_towers_are_not_truncated():
    torch.manual_seed(0)
    module = open_clip.CustomTextCLIP(**_tiny_cfg())
    tokens = open_clip.get_tokenizer("ViT-B-32", context_length=12)(PROMPTS[:3])
    assert not oca._prefix_encodable(module, tokens)


def test_a_truncation_that_disagrees_falls_back_to_full_contexts(tiny, monkeypatch):
    tokens = tiny.tokenizer(PROMPTS)
    monkeypatch.setattr(tiny, "_prefix_ok", None)
    real = oca._encode_text_prefix
    monkeypatch.setattr(oca, "_encode_text_prefix", lambda m, t: real(m, t) * -1.0)
    with pytest.warns(RuntimeWarning, match="full 77-token contexts"):
        got = tiny.encode_prompts(tokens)
    assert tiny._prefix_ok is False
    torch.testing.assert_close(got, full_context(tiny.module, tokens), atol=1e-6, rtol=0)
