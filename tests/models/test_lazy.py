"""A fully cached rerun never builds the model; changed weights are noticed and recomputed."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from spurbench.evaluate import evaluate
from spurbench.models.lazy import LazyAdapter, checkpoint_files, weights_identity
from spurbench.models.open_clip_adapter import OpenClipAdapter
from spurbench.models.registry import create_model
from spurbench.models.spec import parse_model_name
from tests.conftest import save_tiny_clip


@pytest.fixture()
def clip_dir(tiny_clip_dir, tmp_path):
    return shutil.copytree(tiny_clip_dir, tmp_path / "clip")  # ours to rewrite


def _forbid_building(monkeypatch):
    def refuse(self, *args, **kwargs):
        raise AssertionError("the model was built")

    monkeypatch.setattr(OpenClipAdapter, "__init__", refuse)


def _run(clip_dir, data, tmp_path, **kw):
    return evaluate(
        f"local-dir:{clip_dir}",
        data,
        ["1vN"],
        cache_dir=tmp_path / "cache",
        store=tmp_path / "s.duckdb",
        show_progress=False,
        batch_size=8,
        n_boot=50,
        **kw,
    )


def test_cached_rerun_never_builds_the_model(clip_dir, counteranimal_dir, tmp_path, monkeypatch):
    (first,) = _run(clip_dir, counteranimal_dir, tmp_path)
    _forbid_building(monkeypatch)
    (again,) = _run(clip_dir, counteranimal_dir, tmp_path)
    assert again.run_id == first.run_id
    top = [np.stack(r.predictions.topk_labels) for r in (first, again)]
    assert (top[0] == top[1]).all()
    assert again.summary["value"].equals(first.summary["value"])


def test_changed_checkpoint_is_recomputed(clip_dir, counteranimal_dir, tmp_path, monkeypatch):
    (first,) = _run(clip_dir, counteranimal_dir, tmp_path)
    save_tiny_clip(clip_dir, seed=1)  # same path, other weights
    with monkeypatch.context() as m:
        _forbid_building(m)
        with pytest.raises(AssertionError, match="built"):
            _run(clip_dir, counteranimal_dir, tmp_path)
    (second,) = _run(clip_dir, counteranimal_dir, tmp_path)
    assert second.run_id != first.run_id  # new fingerprint: new features and run


def test_a_cache_miss_builds_the_model_once(clip_dir, tmp_path):
    name = f"local-dir:{clip_dir}"
    eager = create_model(name, cache_dir=tmp_path)
    assert not isinstance(eager, LazyAdapter)  # first sight: built, identity recorded
    lazy = create_model(name, cache_dir=tmp_path)
    assert isinstance(lazy, LazyAdapter) and lazy._built is None
    assert lazy.fingerprint == eager.fingerprint
    assert lazy.preprocess_cfg.digest() == eager.preprocess_cfg.digest()
    lazy.module  # noqa: B018 - any other attribute builds the real model
    assert lazy._built is not None and lazy._built.fingerprint == eager.fingerprint


def test_random_weights_are_identified_by_architecture_and_seed(tmp_path):
    spec = parse_model_name("ViT-B-32,random")
    a, b = weights_identity(spec, 0, tmp_path), weights_identity(spec, 1, tmp_path)
    assert a and b and a != b
    assert weights_identity(spec, 0, tmp_path) == a


def test_pretrained_tag_resolves_to_the_cached_hub_file(tmp_path, monkeypatch):
    """``ARCH,tag`` uses the file open_clip would load when it is already in the HF cache."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg("ViT-B-32", "laion400m_e31")
    repo = cfg["hf_hub"].rstrip("/").split("/")
    folder = tmp_path / "hub" / f"models--{repo[0]}--{repo[1]}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("abc123")
    snapshot = folder / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub"))
    spec = parse_model_name("ViT-B-32,laion400m_e31")
    assert checkpoint_files(spec) is None  # not cached: built eagerly (and downloaded) as before
    (snapshot / "open_clip_pytorch_model.bin").write_bytes(b"weights")
    (found,) = checkpoint_files(spec)
    assert found.name == "open_clip_pytorch_model.bin"
    first = weights_identity(spec, 0, tmp_path)
    (snapshot / "open_clip_model.safetensors").write_bytes(b"safer")  # open_clip prefers it
    (found,) = checkpoint_files(spec)
    assert found.name == "open_clip_model.safetensors"
    assert weights_identity(spec, 0, tmp_path) != first
