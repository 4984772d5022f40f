"""DataSpec and Runtime: one typed value each, built from a public function's keywords.

The public functions keep the one-call notebook API (``cache_dir=``, ``classes=`` ...); these
tests pin how keywords become specs: overrides, the renamed worker options, typos refused with
the closest name, and options a stage does not apply refused rather than ignored.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import spurbench
from spurbench.curate.scoring import curation_runtime
from spurbench.data.spec import DataSpec
from spurbench.errors import SpurbenchError
from spurbench.runtime import Runtime, run_specs, runtime_from


def test_keywords_fill_the_two_specs_and_override_a_given_runtime():
    base = Runtime(batch_size=8, device="cpu", precision="bf16")
    spec, runtime = run_specs(
        "data/m.csv", base, {"classes": "c.txt", "split": "test", "batch_size": 4}, "evaluate"
    )
    assert spec == DataSpec("data/m.csv", split="test", classes="c.txt")
    assert runtime == Runtime(batch_size=4, precision="bf16")
    assert base.batch_size == 8  # the caller's object is not changed
    with pytest.raises(dataclasses.FrozenInstanceError):
        base.batch_size = 2  # type: ignore[misc]


def test_a_dataspec_given_keeps_its_fields_unless_a_keyword_overrides_them():
    given = DataSpec("d", name_set="folder", classes="c.txt")
    spec, _ = run_specs(given, None, {"split": "val"}, "probe")
    assert spec == DataSpec("d", name_set="folder", split="val", classes="c.txt")


def test_the_two_worker_options_have_distinct_names_and_the_old_ones_still_work():
    with pytest.warns(DeprecationWarning, match="num_workers= is now decode_workers="):
        assert runtime_from(None, {"num_workers": 0}, "evaluate").decode_workers == 0
    with pytest.warns(DeprecationWarning, match="workers= is now ray_workers="):
        assert runtime_from(None, {"workers": 3}, "evaluate").ray_workers == 3
    with pytest.raises(TypeError, match="both 'num_workers' and its new name"):
        runtime_from(None, {"num_workers": 0, "decode_workers": 1}, "evaluate")


def test_a_mistyped_keyword_names_the_closest_option_before_anything_is_read(tmp_path: Path):
    with pytest.raises(TypeError, match=r"evaluate\(\) got an unexpected keyword argument "
                       r"'clases'; did you mean 'classes'\?"):  # fmt: skip
        spurbench.evaluate("no-such-model", tmp_path / "missing", clases="x")
    with pytest.raises(TypeError, match="'batchsize'; did you mean 'batch_size'"):
        spurbench.probe("no-such-model", tmp_path / "missing", batchsize=4)
    with pytest.raises(TypeError, match=r"run_suite.*'split'"):  # the suite opens its own data
        spurbench.run_suite("no-such-model", tmp_path, split="val")


def test_the_cache_folder_default_and_user_home(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("SPURBENCH_CACHE", str(tmp_path / "env"))
    assert Runtime().cache == tmp_path / "env"
    monkeypatch.setenv("HOME", str(tmp_path))
    assert Runtime(cache_dir="~/c").cache == tmp_path / "c"


def test_stages_refuse_options_they_do_not_apply(tmp_path: Path):
    # the probes and curation run the exact eager image pass: refused, not silently ignored
    with pytest.raises(SpurbenchError, match="probe\\(\\) runs with engine='eager' only"):
        spurbench.probe("no-such-model", tmp_path, engine="onnx")
    with pytest.raises(SpurbenchError, match="predict\\(\\) runs with precision='fp32' only"):
        curation_runtime(None, {"precision": "bf16"}, "predict")
    assert curation_runtime(None, {}, "predict").show_progress is False  # curation is quiet


def test_precision_and_engine_default_to_auto_unless_the_environment_pins_them(monkeypatch):
    """The image pass picks the fastest of the exact pass and its alternative on this machine by
    default (issue 18); ``$SPURBENCH_PRECISION`` / ``$SPURBENCH_ENGINE`` pin it (the test suite
    pins fp32 / eager in tests/conftest.py, so that every number it checks is exact)."""
    monkeypatch.delenv("SPURBENCH_PRECISION", raising=False)
    monkeypatch.delenv("SPURBENCH_ENGINE", raising=False)
    assert (Runtime().precision, Runtime().engine) == ("auto", "auto")
    monkeypatch.setenv("SPURBENCH_PRECISION", "fp32")
    monkeypatch.setenv("SPURBENCH_ENGINE", "eager")
    assert (Runtime().precision, Runtime().engine) == ("fp32", "eager")
    assert Runtime(precision="bf16").precision == "bf16"  # an explicit choice wins


def test_exact_only_stages_take_auto_as_the_exact_pass():
    runtime = Runtime(precision="auto", engine="auto")
    runtime.refuse_changed(("precision", "engine"), "predict")  # auto: the exact pass there
    with pytest.raises(SpurbenchError, match="engine='eager' only, not 'onnx'"):
        runtime.replace(engine="onnx").refuse_changed(("engine",), "probe")
