"""The report's analysis fits the trends; the figures draw the fits they are given."""

from __future__ import annotations

import numpy as np
import pandas as pd

from spurbench.evaluate.effective_robustness import fit_baseline, transform_accuracy
from spurbench.report.analysis import own_trends, published_trends
from spurbench.report.figures import plot_counter_vs_common_linear
from spurbench.report.plots import plot_counter_vs_common


def _points() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    common = rng.uniform(0.5, 0.9, 9)
    counter = common - rng.uniform(0.05, 0.2, 9)
    families = ["clip"] * 4 + ["imagenet"] * 3 + ["lvlm"] * 2
    return pd.DataFrame(
        {"family": families, "model_name": [f"m{i}" for i in range(9)], "common": common,
         "counter": counter, "common_lo": common - 0.05, "common_hi": common + 0.05,
         "counter_lo": counter - 0.05, "counter_hi": counter + 0.05}
    )  # fmt: skip


def test_own_trends_fit_families_of_three_or_more_on_the_logit_scale():
    pts = _points()
    fits = own_trends(pts, "logit")
    assert list(fits) == ["clip", "imagenet"]  # two LVLMs make no trend
    clip = pts[pts["family"] == "clip"]
    slope, intercept = np.polyfit(
        transform_accuracy(clip["common"]), transform_accuracy(clip["counter"]), 1
    )  # an independent least-squares line
    assert np.isclose(fits["clip"].slope, slope) and np.isclose(fits["clip"].intercept, intercept)
    flat = pts.assign(common=0.7)  # no spread in common accuracy: no trend
    assert own_trends(flat, "logit") == {}


def test_published_trends_leave_the_users_models_out():
    pts = _points().assign(source="published")
    ours = pts.iloc[:1].assign(source="ours", counter=0.01)
    with_ours = published_trends(pd.concat([pts, ours], ignore_index=True), "logit", ("clip",), 1)
    alone = published_trends(pts, "logit", ("clip",), 1)
    assert with_ours["clip"].slope == alone["clip"].slope and with_ours["clip"].n == 4


def test_figures_draw_the_fits_they_are_given(tmp_path):
    pts = _points()
    given = {"clip": fit_baseline(pts["common"][:4], pts["counter"][:4], transform="probit")}
    _, drawn = plot_counter_vs_common_linear(pts, tmp_path / "own", title="t", n_boot=20,
                                             fits=given)  # fmt: skip
    assert drawn is given
    res = plot_counter_vs_common(pts, tmp_path / "pub", acc_scale=1, n_boot=20, fits=given)
    assert res.fits is given
