"""The report's counterfactual section: shown only when the store has counterfactual results."""

from __future__ import annotations

import re

import pytest

from spurbench.counterfactual import counterfactual
from spurbench.report.html import ReportOptions, build_report
from spurbench.synth.world import WorldConfig, generate_world

SMALL = WorldConfig(n_classes=3, n_backgrounds=3, n_train_per_class=2, n_test_per_cell=3)


@pytest.fixture(scope="module")
def cf_store(tmp_path_factory, tiny_clip_dir):
    tmp = tmp_path_factory.mktemp("cfreport")
    world = generate_world(SMALL, tmp / "world")
    store = tmp / "s.duckdb"
    r = counterfactual(
        f"local-dir:{tiny_clip_dir}",
        world.counteranimal_root,
        protocol="1vN",
        store=store,
        cache_dir=tmp / "c",
        fill="blur",
        seed=3,
        n_boot=50,
        show_progress=False,
    )
    return store, r


def test_section_numbers_thumbnails_and_methods(cf_store, tmp_path):
    store, r = cf_store
    html = build_report(store, tmp_path / "rep", ReportOptions(n_boot=50)).html.read_text()
    section = html[html.index('<section id="counterfactuals">') :]
    section = section[: section.index("</section>")]
    s = r.summary
    gap = (
        f"{100 * s['bg_gap']:.1f} [{100 * s['bg_gap_ci_low']:.1f}, {100 * s['bg_gap_ci_high']:.1f}]"
    )
    assert gap in section
    for kind in ("background", "object", "robust"):
        assert f">{s[f'n_{kind}']}<" in section  # the per-model counts
    # per class: one row per class, counts summing to its counter photos
    counts = r.images[r.images["group"] == "counter"].groupby("class_name").size()
    for name in counts.index:
        assert name in section
    n_thumbs = len(re.findall(r'<img src="data:image/jpeg;base64,', section))
    shown = sum(min(3, s[f"n_{k}"]) for k in ("background", "object", "robust"))
    assert n_thumbs == 2 * shown  # each counter photo beside its SWAP-TO-COMMON twin
    methods = html[html.index('<section id="methods">') :]
    assert "Xiao et al." in methods and "synthetic (18)" in methods
    assert "Fill of the object box: blur" in methods and "Donor seeds: 3" in methods
    assert 'href="#counterfactuals"' in html


def test_no_section_without_counterfactual_results(tiny_clip_dir, counteranimal_dir, tmp_path):
    from spurbench.evaluate import evaluate

    store = tmp_path / "plain.duckdb"
    evaluate(
        f"local-dir:{tiny_clip_dir}",
        counteranimal_dir,
        ["1vN"],
        store=store,
        cache_dir=tmp_path / "c",
        n_boot=50,
        show_progress=False,
    )
    html = build_report(store, tmp_path / "rep", ReportOptions(n_boot=50)).html.read_text()
    assert 'id="counterfactuals"' not in html and "Xiao et al." not in html
