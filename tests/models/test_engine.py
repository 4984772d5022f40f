"""Image-pass engine: ONNX Runtime against eager PyTorch, exported once, chosen by measurement."""

from __future__ import annotations

import json
import warnings

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
from spurbench.models import engine as E
from spurbench.models.engine import ENGINE_MARGIN, attach_engine, resolve_engine
from spurbench.models.spec import ModelSpec
from spurbench.store.results import ResultsStore
from tests.models.test_precision import FakeClock

pytest.importorskip("onnxruntime")

#: Largest absolute feature difference an exported engine may show against eager fp32 (same
#: weights, same inputs): only the order of float additions differs, ~1e-6 on features of size ~1.
FP32_MAX_ABS = 1e-4
#: The exported engines, and the file each caches its tower in under <cache>/engines/.
EXPORTED = {"onnx": "*.onnx"}


@pytest.fixture()
def model(tiny_clip_dir):
    return create_model(f"local-dir:{tiny_clip_dir}")


def _top1(result) -> np.ndarray:
    return np.array([labels[0] for labels in result.predictions["topk_labels"]])


@pytest.mark.parametrize("engine", list(EXPORTED))
def test_exported_engine_matches_eager_at_fp32_and_is_recorded(
    model, counteranimal_dir, tmp_path, engine
):
    kw = dict(cache_dir=tmp_path / "c", show_progress=False, batch_size=8, n_boot=20)
    store = tmp_path / "s.duckdb"
    runs = {
        e: evaluate(model, counteranimal_dir, ["1v1000"], store=store, engine=e, **kw)[0]
        for e in ("eager", engine)
    }
    assert np.array_equal(_top1(runs["eager"]), _top1(runs[engine]))
    assert runs["eager"].run_id != runs[engine].run_id
    config = ResultsStore(store, read_only=True).runs().set_index("run_id")["config"]
    assert json.loads(config[runs[engine].run_id])["engine"] == engine
    assert json.loads(config[runs["eager"].run_id])["engine"] == "eager"

    ds = open_dataset(counteranimal_dir)
    feats, keys = {}, {}
    for e in ("eager", engine):
        attach_engine(model, e, tmp_path / "c")
        keys[e] = feature_key(model, ds, cache_dir=tmp_path / "c")
        feats[e] = encode_dataset(model, ds, tmp_path / "c", show_progress=False)
    assert keys["eager"] != keys[engine]  # each engine's features are cached on their own
    for part in ("pre_head", "embedding"):
        diff = np.abs(getattr(feats["eager"], part) - getattr(feats[engine], part)).max()
        print(f"{engine} vs eager fp32, {part}: max abs difference {diff:.1e}")
        assert 0 < diff <= FP32_MAX_ABS, part  # > 0: the exported tower really ran, not eager


@pytest.mark.parametrize(("engine", "exporter"), [("onnx", "torch.onnx.export")])
def test_tower_is_exported_once_and_reused(
    tiny_clip_dir, counteranimal_dir, tmp_path, monkeypatch, engine, exporter
):
    kw = dict(cache_dir=tmp_path / "c", show_progress=False, n_boot=20, engine=engine)
    evaluate(create_model(f"local-dir:{tiny_clip_dir}"), counteranimal_dir, ["1vN"], **kw)
    (graph,) = (tmp_path / "c" / "engines").glob(EXPORTED[engine])

    def no_export(*args, **kwargs):
        raise AssertionError("the cached graph should have been used")

    monkeypatch.setattr(exporter, no_export)
    (tmp_path / "c" / "features").rename(tmp_path / "old-features")  # force an image pass
    evaluate(create_model(f"local-dir:{tiny_clip_dir}"), counteranimal_dir, ["1vN"], **kw)
    assert list((tmp_path / "c" / "engines").glob(EXPORTED[engine])) == [graph]
    assert [p.name for p in (tmp_path / "c" / "engines").iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(
    ("onnx_s", "verdict"), [(0.5, "onnx"), (1 - ENGINE_MARGIN, "onnx"), (0.95, "eager")]
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


@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_auto_times_and_exports_a_lazily_built_model(
    tiny_clip_dir, counteranimal_dir, tmp_path, precision
):
    """A rerun by name gets an unbuilt adapter; timing (the precision's, then the engine's) must
    not build it under inference mode: the exporters cannot trace inference tensors, and an
    export failure would be cached as a verdict for eager."""
    name = f"local-dir:{tiny_clip_dir}"
    kw = dict(cache_dir=tmp_path / "c", show_progress=False, n_boot=20)
    evaluate(name, counteranimal_dir, ["1vN"], **kw)  # records the weights' identity
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # an export failure is a UserWarning
        (res,) = evaluate(
            name, counteranimal_dir, ["1vN"], engine="auto", precision=precision, **kw
        )  # real timings
    (verdict,) = (tmp_path / "c" / "engine").glob("*.json")
    seconds = json.loads(verdict.read_text())["seconds_per_batch"]
    assert all(np.isfinite(list(seconds.values()))), seconds  # every engine really ran
    assert len(res.predictions) == 27


@pytest.mark.parametrize(("engine", "label"), [("onnx", "ONNX")])
def test_auto_runs_eager_when_the_tower_cannot_be_exported(model, tmp_path, engine, label):
    """``auto`` is a default: an export failure means eager (warned, verdict cached), no crash."""

    def clock(adapter, name):
        if name == engine:
            raise RuntimeError(f"Converting the operator 'aten::fancy' to {label} failed")
        return 1.0

    with pytest.warns(UserWarning, match=f"{label} export .* failed .*eager"):
        assert resolve_engine("auto", model, tmp_path, timer=clock) == "eager"
    (verdict,) = (tmp_path / "engine").glob("*.json")
    assert json.loads(verdict.read_text())["verdict"] == "eager"


def test_engine_choice_reuses_the_eager_timing_of_the_precision_choice(model, tmp_path):
    """One process times eager at a precision once: the engine's choice compares against the
    pass the precision's choice has just timed instead of running it again."""
    from spurbench.models.precision import TIMED_BATCHES, resolve_precision

    model.precision = resolve_precision("auto", model, tmp_path)
    calls = {"n": 0}
    real = model.encode_images

    def counted(images):
        calls["n"] += 1
        return real(images)

    model.encode_images = counted
    assert E.time_engine(model, "eager", tmp_path) > 0
    assert calls["n"] == 0
    E.time_engine(model, "onnx", tmp_path)  # exported through encode_images, then timed
    before, threads = calls["n"], torch.get_num_threads()
    torch.set_num_threads(1 if threads > 1 else 2)
    try:
        E.time_engine(model, "eager", tmp_path)  # another thread count: timed again
    finally:
        torch.set_num_threads(threads)
    assert calls["n"] - before == 1 + TIMED_BATCHES  # warm-up and timed batches


def test_an_engine_asked_for_by_name_that_cannot_export_is_one_clear_error(
    model, counteranimal_dir, tmp_path, monkeypatch
):
    def fails(adapter, cache_dir):
        raise RuntimeError("Cannot convert aten::fancy\n  long tracer dump\n  more lines")

    monkeypatch.setattr(E, "exported_graph", fails)
    kw = dict(cache_dir=tmp_path / "c", show_progress=False, n_boot=20)
    with pytest.raises(SpurbenchError) as info:
        evaluate(model, counteranimal_dir, ["1vN"], engine="onnx", **kw)
    message = str(info.value)
    assert "ONNX export" in message and "aten::fancy" in message
    assert "\n" not in message and "--engine eager" in message
