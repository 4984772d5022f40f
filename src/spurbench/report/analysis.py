"""The report's numbers that need a model of the data: baseline trends and effective robustness.

Computed once per panel, before any figure is drawn, so the figures only draw the fitted trends
and the tables read effective robustness from the runs table. A panel that joins the published
testbed is judged against trends over the published models; a panel of a store's own models
(its own classes, 1vN) against trends over the store's models of each family.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from spurbench.evaluate.effective_robustness import (
    BaselineFit,
    Transform,
    effective_robustness_ci,
    fit_baseline,
)
from spurbench.report.collect import Panel, ReportData, panel_points
from spurbench.report.view import Fit

__all__ = [
    "FIT_FAMILIES",
    "MIN_TREND_MODELS",
    "PanelTrends",
    "own_points",
    "own_trends",
    "panel_trends",
    "published_trends",
    "with_effective_robustness",
]

#: Published families that get a trend: CLIPs and ImageNet-trained models, as in the paper.
FIT_FAMILIES = ("clip", "imagenet")
#: Fewer models than this make no trend.
MIN_TREND_MODELS = 3


@dataclass(frozen=True)
class PanelTrends:
    """The baseline trends of one panel, per family, and what they were fitted over."""

    panel: Panel
    #: "published" (the testbed's models) or "this store" (the store's own models)
    baseline: str
    #: the points the panel's scatter draws (published: percent with a source column)
    points: pd.DataFrame
    fits: dict[str, BaselineFit]


def published_trends(
    points: pd.DataFrame,
    transform: Transform,
    families: tuple[str, ...] = FIT_FAMILIES,
    acc_scale: float = 100.0,
) -> dict[str, BaselineFit]:
    """A trend per family over the published points (``source != "ours"``), ≥ 3 models each."""
    if "source" in points:
        ours = points["source"].astype(str).eq("ours")
    else:
        ours = pd.Series(False, index=points.index)
    fits = {}
    for family in families:
        members = points[(points["family"] == family) & ~ours]
        if len(members) >= MIN_TREND_MODELS:
            x = members["common"].to_numpy(dtype=float) / acc_scale
            y = members["counter"].to_numpy(dtype=float) / acc_scale
            fits[family] = fit_baseline(x, y, transform=transform)
    return fits


def own_points(data: ReportData, panel: Panel) -> pd.DataFrame:
    """The store's runs of a panel as scatter points (fractions, with their intervals)."""
    runs = data.panel_runs(panel).dropna(subset=["common", "counter"])
    return runs.drop(columns="family").rename(columns={"kind": "family", "display": "model_name"})


def own_trends(points: pd.DataFrame, transform: Transform) -> dict[str, BaselineFit]:
    """A trend per family of the store's models with ≥ 3 models of differing common accuracy."""
    fits = {}
    for family, group in points.groupby("family", sort=False):
        if len(group) >= MIN_TREND_MODELS and np.ptp(group["common"]) > 0:
            fits[str(family)] = fit_baseline(group["common"], group["counter"], transform=transform)
    return fits


def panel_trends(data: ReportData, panel: Panel, transform: Transform) -> PanelTrends | None:
    """The panel's trends, or None when it has no point of this store to judge."""
    if panel.published is not None:
        points = panel_points(data, panel)
        if not (points["source"] == "ours").any():
            return None
        return PanelTrends(panel, "published", points, published_trends(points, transform))
    points = own_points(data, panel)
    if points.empty:
        return None
    return PanelTrends(panel, "this store", points, own_trends(points, transform))


def with_effective_robustness(
    data: ReportData,
    trends: list[PanelTrends],
    *,
    n_boot: int,
    seed: int,
) -> tuple[ReportData, list[Fit]]:
    """A copy of ``data`` whose runs carry ER against each trend, and the trends described.

    Columns ``er_<family>``, ``_lo``, ``_hi`` (points above the trend, with a bootstrap interval)
    and ``er_<family>_baseline`` ("published n=40"); runs outside a panel with that trend get NaN.
    """
    runs = data.runs.copy()
    fits: list[Fit] = []
    for t in trends:
        sel = (
            runs["run_id"].isin(t.panel.run_ids) & runs["common"].notna() & runs["counter"].notna()
        )
        for family, fit in t.fits.items():
            fits.append(
                Fit(t.panel.title, family, t.baseline, fit.n, fit.slope, fit.intercept, fit.r,
                    fit.transform)
            )  # fmt: skip
            col = f"er_{family}"
            for c in (col, col + "_lo", col + "_hi"):
                if c not in runs:
                    runs[c] = np.nan
            if col + "_baseline" not in runs:
                runs[col + "_baseline"] = ""
            if not sel.any():
                continue
            runs.loc[sel, col + "_baseline"] = f"{t.baseline} n={fit.n}"
            er, lo, hi = effective_robustness_ci(
                fit,
                runs.loc[sel, "common"],
                runs.loc[sel, "counter"],
                level=data.level,
                n_boot=n_boot,
                seed=seed,
            )
            runs.loc[sel, col], runs.loc[sel, col + "_lo"], runs.loc[sel, col + "_hi"] = er, lo, hi
    return replace(data, runs=runs), fits
