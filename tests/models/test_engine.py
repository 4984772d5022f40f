"""Image-pass engines: ONNX Runtime and OpenVINO against eager PyTorch, exported once, chosen by
measurement."""

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
from tests.models.test_precision import (
    BF16_MIN_COSINE,
    BF16_MIN_TOP1_RANDOM,
    FakeClock,
)

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")

#: Largest absolute feature difference an exported engine may show against eager fp32 (same
#: weights, same inputs): only the order of float additions differs, ~1e-6 on features of size ~1.
FP32_MAX_ABS = 1e-4
#: The exported engines, and the file each caches its tower in under <cache>/engines/.
EXPORTED = {"onnx": "*.onnx", "openvino": "openvino-*/tower.xml"}


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


def _openvino_has_bf16() -> bool:
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def test_openvino_at_bf16_is_held_to_the_bounds_of_eager_bf16(model, counteranimal_dir, tmp_path):
    """OpenVINO's bf16 inference agrees with fp32 as closely as eager bf16 autocast must, and
    really runs in bf16 (its features are not fp32's)."""
    if not _openvino_has_bf16():
        pytest.skip("this CPU has no bf16 instructions: OpenVINO would not run bf16")
    ds = open_dataset(counteranimal_dir)
    feats = {}
    for precision, engine in (("fp32", "eager"), ("bf16", "openvino"), ("fp32", "openvino")):
        model.precision = precision
        attach_engine(model, engine, tmp_path / "c")
        feats[precision, engine] = torch.from_numpy(
            encode_dataset(model, ds, tmp_path / "c", show_progress=False).embedding
        )
    exact, bf16 = feats["fp32", "eager"], feats["bf16", "openvino"]
    cosine = torch.nn.functional.cosine_similarity(exact, bf16, dim=1)
    head = torch.randn(100, exact.shape[1], generator=torch.Generator().manual_seed(2))
    top1 = ((exact @ head.T).argmax(1) == (bf16 @ head.T).argmax(1)).float().mean()
    print(f"openvino bf16 vs eager fp32: min cosine {cosine.min():.5f}, top-1 {top1:.3f}")
    assert cosine.min() >= BF16_MIN_COSINE
    assert top1 >= BF16_MIN_TOP1_RANDOM
    assert (bf16 - feats["fp32", "openvino"]).abs().max() > FP32_MAX_ABS  # bf16 really ran


def test_openvino_refuses_bf16_where_it_would_silently_run_fp32(model, tmp_path, monkeypatch):
    monkeypatch.setattr(E, "_openvino_runs_bf16", lambda: False)
    model.precision = "bf16"
    with pytest.raises(SpurbenchError, match="bf16 instructions"):
        resolve_engine("openvino", model, tmp_path)
    assert resolve_engine("auto", model, tmp_path, timer=FakeClock(eager=1.0)) == "eager"


@pytest.mark.parametrize(
    ("engine", "exporter"), [("onnx", "torch.onnx.export"), ("openvino", "openvino.convert_model")]
)
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
    ("onnx_s", "openvino_s", "verdict"),
    [
        (0.5, 0.7, "onnx"),
        (0.7, 0.5, "openvino"),
        (1 - ENGINE_MARGIN, 1.0, "onnx"),
        (0.95, 0.95, "eager"),
    ],
)
def test_auto_picks_the_fastest_engine_beyond_the_margin_and_caches_the_verdict(
    model, tmp_path, onnx_s, openvino_s, verdict
):
    clock = FakeClock(eager=1.0, onnx=onnx_s, openvino=openvino_s)
    assert resolve_engine("auto", model, tmp_path, timer=clock) == verdict
    assert resolve_engine("auto", model, tmp_path, timer=clock) == verdict
    assert clock.calls == 3  # timed once, then read from <cache>/engine/
    model.spec = ModelSpec(model.spec.family, "other-arch")
    resolve_engine("auto", model, tmp_path, timer=clock)
    assert clock.calls == 6


def test_auto_under_bf16_times_openvino_only(model, tmp_path, monkeypatch):
    """ONNX Runtime runs fp32 only, so at bf16 the choice is between eager autocast and
    OpenVINO's bf16 inference; at fp16 no exported engine applies and nothing is timed."""
    monkeypatch.setattr(E, "_openvino_runs_bf16", lambda: True)
    model.precision = "bf16"
    clock = FakeClock(eager=1.0, openvino=0.5)  # timing onnx would be a KeyError
    assert resolve_engine("auto", model, tmp_path, timer=clock) == "openvino"

    def not_again():
        raise AssertionError("a cached verdict needs no look at the CPU (no OpenVINO import)")

    monkeypatch.setattr(E, "_openvino_runs_bf16", not_again)
    assert resolve_engine("auto", model, tmp_path, timer=clock) == "openvino"
    with pytest.raises(SpurbenchError, match="fp32"):
        resolve_engine("onnx", model, tmp_path)

    def no_timing(adapter, engine):
        raise AssertionError("nothing to measure at fp16")

    model.precision = "fp16"
    assert resolve_engine("auto", model, tmp_path, timer=no_timing) == "eager"
    with pytest.raises(SpurbenchError, match="fp32 or bf16"):
        resolve_engine("openvino", model, tmp_path)


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


@pytest.mark.parametrize(("engine", "label"), [("onnx", "ONNX"), ("openvino", "OpenVINO")])
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
    E.time_engine(model, "openvino", tmp_path)  # traced through encode_images, then timed
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

    monkeypatch.setattr(E, "openvino_model", fails)
    kw = dict(cache_dir=tmp_path / "c", show_progress=False, n_boot=20)
    with pytest.raises(SpurbenchError) as info:
        evaluate(model, counteranimal_dir, ["1vN"], engine="openvino", **kw)
    message = str(info.value)
    assert "OpenVINO export" in message and "aten::fancy" in message
    assert "\n" not in message and "--engine eager" in message
