"""Seed plots of the reference testbed: counter- vs common-background accuracy.

The layout follows imagenet-testbed (Taori et al., *Measuring Robustness to Natural Distribution
Shifts in Image Classification*, NeurIPS 2020, ``plotting/plotter.py``): both axes are on the
logit (or probit) scale with tick labels in percent, the dashed line is y = x, and each baseline
trend is an OLS line on the transformed scale with a bootstrap 95 % band. On these axes a
baseline trend is a straight line, so "below y = x everywhere in the data range" can be read
off the plot and is exactly what :meth:`BaselineFit.below_identity` checks.

The CounterAnimal paper (Wang et al. 2024, Fig. 1/5) draws the same comparison on linear axes;
the transformed axes are used here because the effective-robustness numbers reported alongside
are defined on them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.text import Text

from spurbench.evaluate.effective_robustness import (
    DEFAULT_N_BOOT,
    BaselineFit,
    Transform,
    inverse_transform_accuracy,
    transform_accuracy,
)
from spurbench.report.analysis import published_trends


def save_literal(fig: Figure, png: Path, svg: Path, **svg_kwargs: object) -> None:
    """Save ``fig`` as PNG and SVG with every text drawn as written, never as mathtext.

    Model, class and dataset names are user strings: a ``$`` pair in one would render as
    maths and an odd one (``$x``) makes matplotlib's mathtext parser fail mid-report. Every
    figure is saved through here, so no label needs escaping at its call site; tick labels
    made while drawing are covered by the rc setting.
    """
    with mpl.rc_context({"text.parse_math": False}):
        for text in fig.findobj(Text):
            text.set_parse_math(False)
        fig.savefig(png, dpi=150)
        fig.savefig(svg, **svg_kwargs)


# family -> (colour, marker, legend label); unknown families fall back to grey circles.
FAMILY_STYLE: dict[str, tuple[str, str, str]] = {
    "clip": ("tab:blue", "o", "CLIP (zero-shot)"),
    "imagenet": ("tab:orange", "s", "ImageNet-1k supervised"),
    "lvlm": ("tab:green", "D", "LVLM"),
}
_FIT_COLOUR: dict[str, str] = {k: v[0] for k, v in FAMILY_STYLE.items()}
_PERCENT_TICKS = np.array(
    [0.1, 0.5, 1, 2, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 98, 99, 99.5, 99.9]
)
_GRID = 200


@dataclass(frozen=True)
class CounterVsCommonPlot:
    """What :func:`plot_counter_vs_common` drew: files, fitted baselines and the data range.

    ``x_range`` is the (min, max) common accuracy over all plotted models, as fractions; it is the
    range over which the CounterAnimal claim "robustness trends lie below y = x" is checked.
    """

    png: Path
    svg: Path
    fits: dict[str, BaselineFit]
    x_range: tuple[float, float]


def _limits(values_t: np.ndarray, pad: float = 0.06) -> tuple[float, float]:
    lo, hi = float(np.min(values_t)), float(np.max(values_t))
    span = max(hi - lo, 1e-6)
    return lo - pad * span, hi + pad * span


def _set_percent_ticks(ax_set_ticks, limits_t: tuple[float, float], transform: Transform) -> None:
    """Put ticks at round percentages inside the transformed axis limits, as imagenet-testbed."""
    ticks_t = transform_accuracy(_PERCENT_TICKS / 100.0, transform)
    keep = (ticks_t >= limits_t[0]) & (ticks_t <= limits_t[1])
    ax_set_ticks(ticks_t[keep], [f"{p:g}" for p in _PERCENT_TICKS[keep]])


def plot_counter_vs_common(
    df: pd.DataFrame,
    path: str | Path,
    fit_groups: Sequence[str] = ("clip", "imagenet"),
    highlight: Iterable[str] | None = None,
    *,
    transform: Transform = "logit",
    acc_scale: float = 100.0,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    level: float = 0.95,
    title: str | None = None,
    fits: dict[str, BaselineFit] | None = None,
) -> CounterVsCommonPlot:
    """Scatter counter- vs common-background accuracy with per-family baseline trends.

    ``df`` needs columns family, model_name, common, counter (accuracies in percent by default,
    as published; set ``acc_scale=1`` for fractions). An optional ``source`` column marks the
    user's own models with "ours": they are drawn as stars, labelled, and kept out of the baseline
    fits, because the point of the baseline is to judge them against published models.
    ``highlight`` lists further model_names to label (e.g. the CounterAnimal reference model).
    One trend with a bootstrap band is drawn per family of ``fits`` (the report passes those of
    :mod:`spurbench.report.analysis`); without them, each family in ``fit_groups`` with at least
    three models is fitted here. Writes ``path`` with suffix .png and .svg and returns the fits.
    """
    required = {"family", "model_name", "common", "counter"}
    missing = required - set(df.columns)
    if missing:
        raise ValueError(f"df lacks columns {sorted(missing)}")
    if df.empty:
        raise ValueError("df has no rows to plot")
    data = df.reset_index(drop=True)
    data["x"] = data["common"].to_numpy(dtype=float) / acc_scale
    data["y"] = data["counter"].to_numpy(dtype=float) / acc_scale
    data["ours"] = data["source"].astype(str).eq("ours") if "source" in data.columns else False
    data["x_t"] = transform_accuracy(data["x"], transform)
    data["y_t"] = transform_accuracy(data["y"], transform)
    labelled = set(highlight or ())

    xlim = _limits(data["x_t"].to_numpy())
    ylim = _limits(data["y_t"].to_numpy())
    fig = Figure(figsize=(7.5, 7.0), layout="constrained")
    ax = fig.add_subplot()
    ax.grid(True, color="0.88", linewidth=0.8, zorder=0)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    _set_percent_ticks(ax.set_xticks, xlim, transform)
    _set_percent_ticks(ax.set_yticks, ylim, transform)

    # y = x over the whole visible range (drawn on transformed axes it is still the diagonal).
    diag = np.linspace(min(xlim[0], ylim[0]), max(xlim[1], ylim[1]), 2)
    ax.plot(diag, diag, linestyle="--", color="black", linewidth=1.2, label="y = x", zorder=2)

    x_grid = inverse_transform_accuracy(np.linspace(*xlim, _GRID), transform)
    x_grid_t = transform_accuracy(x_grid, transform)
    if fits is None:
        fits = published_trends(data, transform, tuple(fit_groups), acc_scale)
    for group, fit in fits.items():
        colour = _FIT_COLOUR.get(group, "0.3")
        lo, hi = fit.band(x_grid, level=level, n_boot=n_boot, seed=seed)
        ax.fill_between(
            x_grid_t,
            transform_accuracy(lo, transform),
            transform_accuracy(hi, transform),
            color=colour,
            alpha=0.18,
            linewidth=0,
            zorder=3,
        )
        name = FAMILY_STYLE.get(group, ("", "", group))[2].split(" (")[0]
        ax.plot(
            x_grid_t,
            fit.predict_transformed(x_grid),
            color=colour,
            linewidth=1.8,
            zorder=4,
            label=f"{name} trend (n={fit.n}, r={fit.r:.2f}, {level:.0%} band)",
        )

    for family, group in data.groupby("family", sort=False):
        colour, marker, label = FAMILY_STYLE.get(family, ("0.5", "o", str(family)))
        pub = group[~group["ours"]]
        if len(pub):
            ax.scatter(
                pub["x_t"],
                pub["y_t"],
                s=36,
                color=colour,
                marker=marker,
                alpha=0.8,
                edgecolors="white",
                linewidths=0.5,
                label=label,
                zorder=5,
            )
        mine = group[group["ours"]]
        if len(mine):
            ax.scatter(
                mine["x_t"],
                mine["y_t"],
                s=220,
                color=colour,
                marker="*",
                edgecolors="black",
                linewidths=0.9,
                label=f"{label}: ours",
                zorder=7,
            )
            labelled.update(mine["model_name"])
    for _, row in data[data["model_name"].isin(labelled)].iterrows():
        ax.annotate(
            str(row["model_name"]),
            (row["x_t"], row["y_t"]),
            xytext=(6, -10),
            textcoords="offset points",
            fontsize=7.5,
            zorder=8,
        )

    unit = "top-1, %, " + transform + " scale"
    ax.set_xlabel(f"Common-background accuracy ({unit})")
    ax.set_ylabel(f"Counter-background accuracy ({unit})")
    if title is None:
        protocols = sorted(set(data["protocol"])) if "protocol" in data.columns else []
        title = "CounterAnimal: counter vs common" + (
            f" ({', '.join(protocols)})" if protocols else ""
        )
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8, framealpha=0.9)

    base = Path(path)
    base.parent.mkdir(parents=True, exist_ok=True)
    png, svg = base.with_suffix(".png"), base.with_suffix(".svg")
    save_literal(fig, png, svg)
    x_all = data["x"].to_numpy()
    return CounterVsCommonPlot(
        png=png, svg=svg, fits=fits, x_range=(float(x_all.min()), float(x_all.max()))
    )
