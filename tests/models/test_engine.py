"""Image-pass engine: ONNX Runtime against eager PyTorch, exported once, chosen by measurement."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from spurbench.cli import app
from spurbench.data.layouts import open_dataset
from spurbench.errors import SpurbenchError
from spurbench.evaluate import evaluate
from spurbench.features.cache import encode_dataset, feature_key
from spurbench.models import create_model
from spurbench.models.engine import ONNX_MARGIN, attach_engine, resolve_engine
from spurbench.models.spec import ModelSpec
from spurbench.store.results import ResultsStore
from tests.models.test_precision import FakeClock

pytest.importorskip("onnxruntime")

#: Largest absolute feature difference ONNX Runtime may show against eager fp32 (same weights,
#: same inputs): only the order of float additions differs, ~1e-6 on features of size ~1.
ONNX_MAX_ABS = 1e-4


@pytest.fixture()
def model(tiny_clip_dir):
    return create_model(f"local-dir:{tiny_clip_dir}")


def _top1(result) -> np.ndarray:
    return np.array([labels[0] for labels in result.predictions["topk_labels"]])


def test_onnx_matches_eager_and_is_recorded(model, counteranimal_dir, tmp_path):
    kw = dict(cache_dir=tmp_path / "c", show_progress=False, batch_size=8, n_boot=20)
    store = tmp_path / "s.duckdb"
    runs = {
        e: evaluate(model, counteranimal_dir, ["1v1000"], store=store, engine=e, **kw)[0]
        for e in ("eager", "onnx")
    }
    assert np.array_equal(_top1(runs["eager"]), _top1(runs["onnx"]))
    assert runs["eager"].run_id != runs["onnx"].run_id
    config = ResultsStore(store, read_only=True).runs().set_index("run_id")["config"]
    assert json.loads(config[runs["onnx"].run_id])["engine"] == "onnx"
    assert json.loads(config[runs["eager"].run_id])["engine"] == "eager"

    ds = open_dataset(counteranimal_dir)
    feats, keys = {}, {}
    for e in ("eager", "onnx"):
        attach_engine(model, e, tmp_path / "c")
        keys[e] = feature_key(model, ds, cache_dir=tmp_path / "c")
        feats[e] = encode_dataset(model, ds, tmp_path / "c", show_progress=False)
    assert keys["eager"] != keys["onnx"]  # each engine's features are cached on their own
    for part in ("pre_head", "embedding"):
        diff = np.abs(getattr(feats["eager"], part) - getattr(feats["onnx"], part)).max()
        assert 0 < diff <= ONNX_MAX_ABS, part  # > 0: the graph really ran, not eager


def test_graph_is_exported_once_and_reused(tiny_clip_dir, counteranimal_dir, tmp_path, monkeypatch):
    kw = dict(cache_dir=tmp_path / "c", show_progress=False, n_boot=20, engine="onnx")
    evaluate(create_model(f"local-dir:{tiny_clip_dir}"), counteranimal_dir, ["1vN"], **kw)
    (graph,) = (tmp_path / "c" / "engines").glob("*.onnx")

    def no_export(*args, **kwargs):
        raise AssertionError("the cached graph should have been used")

    monkeypatch.setattr(torch.onnx, "export", no_export)
    (tmp_path / "c" / "features").rename(tmp_path / "old-features")  # force an image pass
    evaluate(create_model(f"local-dir:{tiny_clip_dir}"), counteranimal_dir, ["1vN"], **kw)
    assert list((tmp_path / "c" / "engines").glob("*.onnx")) == [graph]


@pytest.mark.parametrize(
    ("onnx_s", "verdict"), [(0.5, "onnx"), (1 - ONNX_MARGIN, "onnx"), (0.95, "eager")]
)
def test_auto_picks_onnx_only_when_faster_and_caches_the_verdict(model, tmp_path, onnx_s, verdict):
    clock = FakeClock(eager=1.0, onnx=onnx_s)
    assert resolve_engine("auto", model, tmp_path, timer=clock) == verdict
    assert resolve_engine("auto", model, tmp_path, timer=clock) == verdict
    assert clock.calls == 2  # timed once, then read from <cache>/engine/
    model.spec = ModelSpec(model.spec.family, "other-arch")
    resolve_engine("auto", model, tmp_path, timer=clock)
    assert clock.calls == 4


def test_auto_stays_eager_under_autocast_and_onnx_refuses_it(model, tmp_path):
    def no_timing(adapter, engine):
        raise AssertionError("nothing to measure: ONNX Runtime runs fp32 only")

    model.precision = "bf16"
    assert resolve_engine("auto", model, tmp_path, timer=no_timing) == "eager"
    with pytest.raises(SpurbenchError, match="fp32"):
        resolve_engine("onnx", model, tmp_path)


def test_cli_refuses_an_unknown_engine(tiny_clip_dir, counteranimal_dir, tmp_path):
    args = ["eval", "-m", f"local-dir:{tiny_clip_dir}", "-d", str(counteranimal_dir)]
    res = CliRunner().invoke(app, [*args, "--engine", "tensorrt"])
    assert res.exit_code == 2
    assert "error:" in res.output and "tensorrt" in res.output


def test_auto_times_and_exports_a_lazily_built_model(tiny_clip_dir, counteranimal_dir, tmp_path):
    """A rerun by name gets an unbuilt adapter; timing must not build it under inference mode
    (the exporter cannot trace inference tensors)."""
    name = f"local-dir:{tiny_clip_dir}"
    kw = dict(cache_dir=tmp_path / "c", show_progress=False, n_boot=20)
    evaluate(name, counteranimal_dir, ["1vN"], **kw)  # records the weights' identity
    (res,) = evaluate(name, counteranimal_dir, ["1vN"], engine="auto", **kw)  # real timings
    (verdict,) = (tmp_path / "c" / "engine").glob("*.json")
    assert json.loads(verdict.read_text())["verdict"] in ("eager", "onnx")
    assert len(res.predictions) == 27


def test_auto_runs_eager_when_the_tower_cannot_be_exported(model, tmp_path):
    """``auto`` is a default: an export failure means eager (warned, verdict cached), no crash."""

    def clock(adapter, engine):
        if engine == "onnx":
            raise RuntimeError("Exporting the operator 'aten::fancy' to ONNX is not supported")
        return 1.0

    with pytest.warns(UserWarning, match="ONNX export .* failed .*eager"):
        assert resolve_engine("auto", model, tmp_path, timer=clock) == "eager"
    (verdict,) = (tmp_path / "engine").glob("*.json")
    assert json.loads(verdict.read_text())["verdict"] == "eager"
