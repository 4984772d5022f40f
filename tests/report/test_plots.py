"""The counter-vs-common seed plot, drawn from the published data files alone."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from spurbench.reference.testbed import load_counteranimal_models
from spurbench.report.plots import CounterVsCommonPlot, plot_counter_vs_common

REFERENCE = "ViT-B-32,laion400m_e31"


@pytest.fixture(scope="module")
def published_plot(tmp_path_factory: pytest.TempPathFactory) -> CounterVsCommonPlot:
    df = load_counteranimal_models("1v1000", balanced=True)
    out = tmp_path_factory.mktemp("plots") / "counter_vs_common"
    return plot_counter_vs_common(df, out, highlight=[REFERENCE], n_boot=300)


def test_writes_non_empty_png_and_svg(published_plot: CounterVsCommonPlot) -> None:
    assert published_plot.png.suffix == ".png" and published_plot.svg.suffix == ".svg"
    png = published_plot.png.read_bytes()
    assert len(png) > 10_000 and png.startswith(b"\x89PNG")
    svg = published_plot.svg.read_text(encoding="utf-8")
    assert "<svg" in svg and len(svg) > 10_000


def test_one_fit_per_family(published_plot: CounterVsCommonPlot) -> None:
    assert set(published_plot.fits) == {"clip", "imagenet"}
    assert published_plot.fits["clip"].n == 28
    assert published_plot.fits["imagenet"].n == 15
    lo, hi = published_plot.x_range
    assert (lo, hi) == (pytest.approx(0.5956), pytest.approx(0.9077))


def test_both_trends_lie_below_identity(published_plot: CounterVsCommonPlot) -> None:
    """The CounterAnimal claim: counter accuracy trails common accuracy for CLIP and ImageNet
    models alike, at every common accuracy the testbed spans."""
    for family, fit in published_plot.fits.items():
        assert fit.below_identity(*published_plot.x_range), family


def test_user_models_are_marked_not_fitted(tmp_path: Path) -> None:
    pub = load_counteranimal_models("1v1000", balanced=True).assign(source="published")
    ours = pd.DataFrame(
        {
            "family": ["clip"],
            "model_name": ["ViT-B-32,laion400m_e31 (ours)"],
            "protocol": ["1v1000"],
            "common": [66.0],
            "counter": [38.0],
            "source": ["ours"],
        }
    )
    res = plot_counter_vs_common(pd.concat([pub, ours]), tmp_path / "ours.png", n_boot=100)
    assert res.fits["clip"].n == 28  # the user's model is judged against, not part of, the trend
    assert res.png.stat().st_size > 0 and res.svg.stat().st_size > 0


def test_small_groups_are_not_fitted_and_fractions_work(tmp_path: Path) -> None:
    df = load_counteranimal_models("1v20")
    frac = df.assign(common=df["common"] / 100, counter=df["counter"] / 100)
    res = plot_counter_vs_common(
        frac, tmp_path / "v20", fit_groups=("clip", "imagenet", "lvlm"), acc_scale=1.0, n_boot=100
    )
    assert set(res.fits) == {"clip", "imagenet"}  # two LVLMs are too few for a trend
    assert res.fits["imagenet"].n == 3


def test_missing_columns_raise(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="lacks columns"):
        plot_counter_vs_common(pd.DataFrame({"common": [50.0]}), tmp_path / "x")
