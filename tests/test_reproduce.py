"""``spurbench reproduce counteranimal`` on tiny stand-ins mapped onto the paper's names."""

from __future__ import annotations

import json
from importlib import resources

import pandas as pd
import pytest
from typer.testing import CliRunner

from spurbench.cli import app
from spurbench.store import ResultsStore
from tests.conftest import save_tiny_clip

runner = CliRunner()
PAPER = ["ViT-B-32,laion400m_e31", "RN50,openai"]
UNMAPPED = "ViT-L-14,laion400m_e31"


def _published() -> pd.DataFrame:
    """The paper's rows read straight from the shipped CSV (not through spurbench's loader)."""
    with resources.files("spurbench.reference").joinpath("counteranimal_models.csv").open() as f:
        df = pd.read_csv(f)
    return df[df["balanced"].astype(str).str.lower() == "true"].set_index(
        ["model_name", "protocol"]
    )


@pytest.fixture()
def offline(monkeypatch):
    def unreachable(*args, **kwargs):
        raise OSError("Cannot reach https://huggingface.co: offline mode is enabled.")

    monkeypatch.setattr("open_clip.pretrained.hf_hub_download", unreachable)


def test_reproduce_maps_runs_compares_and_lists_the_rest(
    tmp_path, tiny_clip_dir, counteranimal_dir, offline
):
    other = save_tiny_clip(tmp_path / "other", seed=3)
    wmap = tmp_path / "weights.json"
    wmap.write_text(
        json.dumps({PAPER[0]: f"local-dir:{tiny_clip_dir}", PAPER[1]: f"local-dir:{other}"})
    )
    store = tmp_path / "r.duckdb"
    base = ["reproduce", "counteranimal", "-d", str(counteranimal_dir), "--weights-map", str(wmap),
            "--store", str(store), "--cache-dir", str(tmp_path / "c")]  # fmt: skip
    picks = [a for m in (*PAPER, UNMAPPED) for a in ("--models", m)]
    out = runner.invoke(app, [*base, *picks, "--json"])
    assert out.exit_code == 0, out.output
    printed = json.loads(out.stdout)
    comparison = pd.DataFrame(printed["comparison"])
    published = _published()
    expected = {(m, p) for m, p in published.index if m in PAPER}
    assert set(zip(comparison["model"], comparison["protocol"], strict=True)) == expected
    summary = ResultsStore(store).summary().set_index("run_id")
    for r in comparison.itertuples():
        pub = published.loc[(r.model, r.protocol), r.quantity]
        assert r.published == pytest.approx(pub)
        assert r.ours == pytest.approx(100 * summary.loc[r.run_id, r.quantity])
        assert r.difference == pytest.approx(r.ours - pub)
        assert r.flagged == (not r.ci_low <= pub <= r.ci_high)
    # random-init stand-ins are nowhere near CLIP's published 60-90 % common accuracy
    assert comparison.loc[comparison["quantity"] == "common", "flagged"].all()
    assert set(printed["unavailable"]) == {UNMAPPED}
    assert "local file" in printed["unavailable"][UNMAPPED]

    n_runs = len(ResultsStore(store).runs())
    table = runner.invoke(app, ["--width", "80", *base, "--models", PAPER[0]])
    assert table.exit_code == 0, table.output
    assert "…" not in table.output and PAPER[0] in table.output and " / " in table.output
    assert len(ResultsStore(store).runs()) == n_runs  # rerun replaces its runs


def test_weights_map_of_unknown_names_is_an_error(tmp_path, counteranimal_dir):
    wmap = tmp_path / "w.csv"
    wmap.write_text('name,weights\n"ViT-B-99,nowhere",local-dir:/x\n')
    out = runner.invoke(app, ["reproduce", "counteranimal", "-d", str(counteranimal_dir),
                              "--weights-map", str(wmap)])  # fmt: skip
    assert out.exit_code == 2 and out.output.startswith("error:") and "ViT-B-99" in out.output
    bad = runner.invoke(app, ["reproduce", "counteranimal", "-d", str(counteranimal_dir),
                              "--models", "NoSuchNet*"])  # fmt: skip
    assert bad.exit_code == 2 and "No model of the paper matches" in bad.output


def test_reproduce_imagenet_shifts_against_open_clip_published(tmp_path, tiny_clip_dir, offline):
    from tests.suite import standins as F
    from tests.suite.test_loaders import R_WNIDS, WNIDS

    root = tmp_path / "data"
    F.make_val(root, [WNIDS[i] for i in (1, 2, 409, 954)])
    F.make_r(root, R_WNIDS[:4])
    wmap = tmp_path / "w.csv"
    wmap.write_text(f'name,weights\n"ViT-B-32,openai",local-dir:{tiny_clip_dir}\n')
    store = tmp_path / "r.duckdb"
    args = ["reproduce", "imagenet-shifts", "--root", str(root), "--weights-map", str(wmap),
            "--models", "ViT-B-32,openai", "--models", "ViT-B-16,openai", "--templates", "paper",
            "--store", str(store), "--cache-dir", str(tmp_path / "c")]  # fmt: skip
    printed = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
    comparison = pd.DataFrame(printed["comparison"])
    assert set(comparison["quantity"]) == {"imagenet", "imagenet-r"}
    with resources.files("spurbench.reference").joinpath("openclip_results.csv").open() as f:
        ref = pd.read_csv(f).set_index(["name", "pretrained"]).loc[("ViT-B-32", "openai")]
    columns = {"imagenet": "imagenet1k", "imagenet-r": "imagenet_r"}
    rs = ResultsStore(store)
    for r in comparison.itertuples():
        assert r.model == "ViT-B-32,openai"
        assert r.published == pytest.approx(100 * ref[columns[r.quantity]])
        assert r.ours == pytest.approx(100 * rs.predictions(r.run_id)["correct"].mean())
    assert set(printed["unavailable"]) == {"ViT-B-16,openai"}
    table = runner.invoke(app, ["--width", "80", *args])
    assert table.exit_code == 0 and "imagenet-r" in table.output and "…" not in table.output
