"""``spurbench counterfactual`` end to end on a small world, and its one-line input errors."""

from __future__ import annotations

import importlib
import json

import pytest
from typer.testing import CliRunner

from spurbench.cli import app
from spurbench.synth.world import WorldConfig, generate_world

runner = CliRunner()
SMALL = WorldConfig(n_classes=3, n_backgrounds=3, n_train_per_class=2, n_test_per_cell=3)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return generate_world(SMALL, tmp_path_factory.mktemp("cfcli") / "world")


def _forbid_model_loading(monkeypatch):
    runner_module = importlib.import_module("spurbench.evaluate.runner")

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr(runner_module, "create_model", refuse)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--fill", "inpaint"], "'inpaint' is not one of 'tile', 'blur', 'mean', 'black'"),
        (["--protocol", "1v7"], "1v7"),
        (["--masks", "nowhere"], "does not exist"),
        (["--mask-source", "bogus"], "'bogus' is not one of 'auto', 'world'"),
        (["--mask-source", "folder"], "needs --masks"),
        (["--boxes"], "x0,y0,x1,y1"),
        (["--mask-source", "segmentation:deeplabv3_mobilenet"], "deeplabv3_mobilenet_v3_large"),
    ],
)
def test_bad_input_is_one_error_line_before_any_model_loads(
    world, tmp_path, monkeypatch, extra, message
):
    _forbid_model_loading(monkeypatch)
    monkeypatch.chdir(tmp_path)
    args = [
        "counterfactual",
        str(world.counteranimal_root),
        "-m",
        "local-dir:nowhere",
        "--store",
        str(tmp_path / "s.duckdb"),
        "--cache-dir",
        str(tmp_path / "c"),
        *extra,
    ]
    out = runner.invoke(app, args)
    assert out.exit_code == 2, out.output
    lines = out.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), out.output
    assert message in out.output


def test_no_masks_for_plain_photos_says_what_to_pass(counteranimal_dir, tmp_path, monkeypatch):
    _forbid_model_loading(monkeypatch)
    out = runner.invoke(
        app,
        ["counterfactual", str(counteranimal_dir), "-m", "x", "--cache-dir", str(tmp_path / "c")],
    )
    assert out.exit_code == 2 and out.output.startswith("error:")
    assert "--masks DIR" in out.output and "--boxes" in out.output


def test_library_entry_point_is_top_level():
    import spurbench
    from spurbench.counterfactual.run import counterfactual

    assert spurbench.counterfactual is counterfactual and "counterfactual" in spurbench.__all__


def test_cli_json_on_a_world(world, tiny_clip_dir, tmp_path):
    store = tmp_path / "s.duckdb"
    base = [
        "counterfactual",
        str(world.counteranimal_root),
        "-m",
        f"local-dir:{tiny_clip_dir}",
        "--protocol",
        "1vN",
        "--store",
        str(store),
        "--cache-dir",
        str(tmp_path / "c"),
    ]
    out = runner.invoke(app, [*base, "--json", "--fill", "blur", "--export", str(tmp_path / "x")])
    assert out.exit_code == 0, out.output
    (record,) = json.loads(out.output)
    n_photos = 2 * SMALL.n_classes * SMALL.n_test_per_cell  # common + counter cells
    assert record["fill"] == "blur" and record["mask_sources"] == {"synthetic": n_photos}
    assert record["mask_counts"]["ok"] == n_photos
    s = record["summary"]
    assert s["n_robust"] + s["n_background"] + s["n_object"] == n_photos / 2
    exported = sorted(p.parent.name for p in (tmp_path / "x").rglob("*.png"))
    assert {"original", "only_bg", "mixed_same", "swap_to_common"} <= set(exported)
    assert exported.count("original") == n_photos
    # the table form names the fill and the measures
    out = runner.invoke(app, [*base, "-q"])
    assert out.exit_code == 0, out.output
    assert "BG-gap" in out.output and "fill tile" in out.output
