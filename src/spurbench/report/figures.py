"""The report's figures other than the counter-vs-common scatter (which is :mod:`.plots`).

Every figure is written twice, PNG for slides and SVG for papers, and the SVG is also inlined
into the HTML page (:func:`inline_svg`), so the page needs no image files to be viewed and its
text stays sharp at any zoom. Figures use matplotlib's object API (no pyplot state), so building
a report never opens a window or touches a global figure registry.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from spurbench.evaluate.effective_robustness import DEFAULT_N_BOOT, BaselineFit, Transform
from spurbench.report.analysis import own_trends
from spurbench.report.plots import FAMILY_STYLE, save_literal

__all__ = [
    "FigureFiles",
    "class_drop_chunks",
    "inline_svg",
    "model_colours",
    "plot_class_drops",
    "plot_counter_vs_common_linear",
    "plot_directions",
    "plot_kurtosis",
    "plot_kurtosis_vs_robustness",
    "plot_pruning",
    "save_figure",
]

#: Models per class-drop figure: more columns would make each bar too thin to read in print.
MODELS_PER_DROP_FIGURE = 4
_DROP_COLOUR = "#c0504d"  # common > counter: the spurious background helps
_GAIN_COLOUR = "#4f81bd"  # counter > common
_SVG_ATTR_REF = re.compile(r'((?:xlink:)?href="#|url\(#)([^")]+)')
_SVG_ID = re.compile(r'\bid="([^"]+)"')


@dataclass(frozen=True)
class FigureFiles:
    """A figure written as PNG and SVG beside the report."""

    png: Path
    svg: Path


def save_figure(fig: Figure, base: Path) -> FigureFiles:
    """Write ``base``.png and ``base``.svg (no timestamp in the SVG, so reruns diff cleanly)."""
    base.parent.mkdir(parents=True, exist_ok=True)
    png, svg = base.with_suffix(".png"), base.with_suffix(".svg")
    save_literal(fig, png, svg, metadata={"Date": None})
    return FigureFiles(png, svg)


def inline_svg(path: Path, prefix: str) -> str:
    """An SVG file as markup to paste into HTML, its ids made unique with ``prefix``.

    matplotlib names elements ``figure_1``, ``axes_1``, ``patch_1`` in every file and reuses
    glyph and marker ids; pasted side by side, a later figure's ``url(#p…)`` clip path or
    ``href="#m…"`` marker would resolve to an earlier figure's element and draw wrongly. The XML
    prologue and the RDF metadata (which holds namespace URLs a reader might take for links) are
    dropped; the root keeps its viewBox so CSS can scale it.
    """
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"<\?xml[^>]*\?>\s*", "", text)
    text = re.sub(r"<!DOCTYPE[^>]*>\s*", "", text)
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)
    text = _SVG_ID.sub(lambda m: f'id="{prefix}-{m.group(1)}"', text)
    text = _SVG_ATTR_REF.sub(lambda m: f"{m.group(1)}{prefix}-{m.group(2)}", text)
    return text.strip()


def model_colours(models: Sequence[str]) -> dict[str, str]:
    """One colour per model, the same in every probe figure (tab10, then tab20)."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(models) <= 10 else "tab20"]
    return {m: _hex(cmap(i % cmap.N)) for i, m in enumerate(dict.fromkeys(models))}


def _hex(rgba: tuple[float, ...]) -> str:
    return "#" + "".join(f"{round(255 * c):02x}" for c in rgba[:3])


def plot_class_drops(
    classes: pd.DataFrame,
    names: dict[str, str],
    base: Path,
    *,
    title: str,
) -> FigureFiles:
    """Per-class drop (common − counter accuracy, points) of each run, classes on a shared axis.

    ``classes`` has one row per (run_id, class) as :func:`spurbench.report.collect.collect`
    builds it; ``names`` maps run_id to the label of its column. Classes are sorted by the mean
    drop over the runs, so the classes whose background matters most for every model sit at
    the top and a model that breaks the pattern stands out. Whiskers are the Newcombe interval.
    """
    runs = list(names)
    order = classes.groupby("class_name")["drop"].mean().sort_values(ascending=True).index.tolist()
    n_cls = len(order)
    fig = Figure(figsize=(2.2 + 2.3 * len(runs), 1.1 + 0.2 * max(n_cls, 4)), layout="constrained")
    axes = fig.subplots(1, len(runs), sharey=True, squeeze=False)[0]
    y = np.arange(n_cls)
    lim = np.nanmax(np.abs(classes[["drop_lo", "drop_hi"]].to_numpy(float)), initial=0.05)
    lim = min(1.05, 1.05 * float(lim)) * 100  # a 100-point drop keeps its whole bar
    for ax, run_id in zip(axes, runs, strict=True):
        c = classes[classes["run_id"] == run_id].set_index("class_name").reindex(order)
        d = 100 * c["drop"].to_numpy(float)
        err = 100 * np.vstack([c["drop"] - c["drop_lo"], c["drop_hi"] - c["drop"]]).astype(float)
        ax.barh(y, d, color=np.where(d >= 0, _DROP_COLOUR, _GAIN_COLOUR), height=0.72, zorder=2)
        ax.errorbar(
            d,
            y,
            xerr=np.nan_to_num(err),
            fmt="none",
            ecolor="0.25",
            elinewidth=0.7,
            capsize=1.5,
            zorder=3,
        )
        mean = float(np.nanmean(d)) if np.isfinite(d).any() else 0.0
        ax.axvline(0, color="black", linewidth=0.8, zorder=1)
        ax.axvline(mean, color="0.35", linestyle=":", linewidth=1.1, zorder=1)
        ax.set_xlim(-lim, lim)
        ax.set_title(f"{names[run_id]}\nmean drop {mean:+.1f} pt", fontsize=8.5)
        ax.grid(True, axis="x", color="0.9", zorder=0)
        ax.tick_params(axis="x", labelsize=7.5)
        ax.set_xlabel("common − counter (pt)", fontsize=8)
    axes[0].set_yticks(y, order, fontsize=7.5)
    axes[0].set_ylim(-0.6, n_cls - 0.4)
    fig.suptitle(f"{title}: per-class drop", fontsize=9.5)
    return save_figure(fig, base)


def plot_counter_vs_common_linear(
    points: pd.DataFrame,
    base: Path,
    *,
    title: str,
    level: float = 0.95,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    transform: Transform = "logit",
    fits: dict[str, BaselineFit] | None = None,
) -> tuple[FigureFiles, dict[str, BaselineFit]]:
    """Counter vs common accuracy of a store's own models, on linear axes with intervals.

    Used where the models cannot join the published testbed (their own classes, the 1vN
    protocol): with a handful of models, the points' own confidence intervals matter more than
    the logit-scale trend, and equal linear axes make the y = x diagonal read as "no drop", as in
    the CounterAnimal paper's figures. Each family of ``fits`` (three or more models; fitted by
    :func:`spurbench.report.analysis.own_trends` when not given) gets its baseline trend (fitted
    on the ``transform`` scale, drawn as the curve it is in accuracy space) with its bootstrap
    band. ``points`` has family, model_name, common, counter and the
    ``*_lo`` / ``*_hi`` interval columns, all as fractions.
    """
    fig = Figure(figsize=(6.4, 6.0), layout="constrained")
    ax = fig.add_subplot()
    vals = 100 * points[
        ["common", "counter", "common_lo", "counter_lo", "common_hi", "counter_hi"]
    ].to_numpy(float)
    lo = max(0.0, float(np.nanmin(vals)) - 5)
    hi = min(100.0, float(np.nanmax(vals)) + 5)
    ax.plot([lo, hi], [lo, hi], "--", color="black", linewidth=1.1, label="y = x (no drop)")
    if fits is None:
        fits = own_trends(points, transform)
    grid = np.linspace(max(lo, 0.5), min(hi, 99.5), 100) / 100
    for family, group in points.groupby("family", sort=False):
        colour, marker, label = FAMILY_STYLE.get(family, ("0.45", "o", str(family)))
        fit = fits.get(str(family))
        if fit is not None:
            band_lo, band_hi = fit.band(grid, level=level, n_boot=n_boot, seed=seed)
            ax.fill_between(
                100 * grid, 100 * band_lo, 100 * band_hi, color=colour, alpha=0.15, linewidth=0
            )
            ax.plot(
                100 * grid,
                100 * fit.predict(grid),
                color=colour,
                linewidth=1.6,
                label=f"{label.split(' (')[0]} trend (n={fit.n}, {level:.0%} band)",
            )
        x, y = 100 * group["common"], 100 * group["counter"]
        xerr = 100 * np.vstack(
            [group["common"] - group["common_lo"], group["common_hi"] - group["common"]]
        ).astype(float)
        yerr = 100 * np.vstack(
            [group["counter"] - group["counter_lo"], group["counter_hi"] - group["counter"]]
        ).astype(float)
        ax.errorbar(
            x,
            y,
            xerr=np.nan_to_num(xerr),
            yerr=np.nan_to_num(yerr),
            fmt="none",
            ecolor=colour,
            alpha=0.6,
            elinewidth=1,
            capsize=2,
            zorder=3,
        )
        ax.scatter(
            x,
            y,
            s=70,
            color=colour,
            marker=marker,
            edgecolors="black",
            linewidths=0.6,
            label=label,
            zorder=4,
        )
        for name, xi, yi in zip(group["model_name"], x, y, strict=True):
            right = xi > lo + 0.7 * (hi - lo)  # label inwards near the right edge
            ax.annotate(
                str(name),
                (xi, yi),
                xytext=(-7 if right else 7, -12),
                textcoords="offset points",
                ha="right" if right else "left",
                fontsize=8,
                zorder=5,
            )
    pad = 0.03 * (hi - lo)  # markers at 0 % or 100 % stay whole
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_aspect("equal")
    ax.grid(True, color="0.9")
    ax.set_xlabel("Common-background accuracy (top-1, %, class-balanced)")
    ax.set_ylabel("Counter-background accuracy (top-1, %, class-balanced)")
    ax.set_title(title, fontsize=10.5)
    ax.legend(loc="upper left", fontsize=8, framealpha=0.9)
    return save_figure(fig, base), fits


def _kurtosis_scale(ax, values: np.ndarray, *, bars: bool) -> str:
    """Log x axis when kurtosis spans more than a decade (outlier features: 3 vs 300), else linear.

    A log axis over 2.2..3.3 only shows cluttered 2.3×10⁰ tick labels; plain numbers read better.
    Returns the axis-label suffix.
    """
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    if v.size and v.max() / v.min() > 10:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        return " (log scale)"
    if bars:
        ax.set_xlim(0, 1.08 * max(float(v.max()) if v.size else 3.0, 3.0))
    else:
        ax.margins(x=0.25)
    return ""


def _legend_below(fig: Figure, ax, ncol: int = 3) -> None:
    """The legend under the axes, so it never hides a curve or a bar."""
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=ncol, fontsize=8, frameon=False)


def _probe_values(probes: pd.DataFrame, probe: str, metric: str) -> pd.DataFrame:
    return probes[(probes["probe"] == probe) & (probes["metric"] == metric)]


def plot_kurtosis(probes: pd.DataFrame, names: dict[str, str], base: Path) -> FigureFiles | None:
    """Mean per-image kurtosis of each model's features beside its random-rotation control.

    Why the control: outlier features are a property of the basis. Heavy-tailed activations that
    stay heavy-tailed after a random rotation are just heavy-tailed data; outlier *features*
    (Crabbé et al. 2024) show as high kurtosis that drops to ≈ 3 once the axes are mixed.
    """
    spaces = [
        s
        for s in ("pre_head", "embedding")
        if not _probe_values(probes, "kurtosis", "mean_image_kurtosis").query("key == @s").empty
    ]
    if not spaces:
        return None
    keys = list(names)
    fig = Figure(
        figsize=(5.6, 1.2 + len(spaces) * (0.5 + 0.36 * max(len(keys), 2))), layout="constrained"
    )
    axes = fig.subplots(len(spaces), 1, sharex=True, squeeze=False)[:, 0]
    y = np.arange(len(keys))
    kurt = probes[(probes["probe"] == "kurtosis") & probes["label"].isin(keys)]
    scale = _kurtosis_scale(
        axes[0], kurt.loc[kurt["metric"].str.startswith("mean_image"), "value"], bars=True
    )
    for ax, space in zip(axes, spaces, strict=True):
        vals = {}
        for metric in ("mean_image_kurtosis", "mean_image_kurtosis_rotated"):
            rows = _probe_values(probes, "kurtosis", metric).query("key == @space")
            vals[metric] = rows.groupby("label")["value"].first().reindex(keys).to_numpy(float)
        ax.barh(
            y - 0.19,
            vals["mean_image_kurtosis"],
            height=0.36,
            color="#4f81bd",
            label="features as stored",
        )
        ax.barh(
            y + 0.19,
            vals["mean_image_kurtosis_rotated"],
            height=0.36,
            color="0.7",
            label="randomly rotated (control)",
        )
        ax.axvline(3.0, color="black", linestyle="--", linewidth=0.9, label="Gaussian (3)")
        ax.set_title(
            {"pre_head": "pre-head features h(x)", "embedding": "embedding"}[space], fontsize=9
        )
        ax.grid(True, axis="x", color="0.9", which="both")
        ax.set_yticks(y, [names[k] for k in keys], fontsize=8)
        ax.invert_yaxis()
    axes[-1].set_xlabel("mean per-image kurtosis" + scale, fontsize=8.5)
    _legend_below(fig, axes[0])
    fig.suptitle("Activation kurtosis with the rotation control", fontsize=10)
    return save_figure(fig, base)


def plot_directions(
    probes: pd.DataFrame, names: dict[str, str], colours: dict[str, str], base: Path
) -> FigureFiles | None:
    """Cumulative share of importance carried by the top-k privileged directions of each head.

    A curve that jumps near 1 within a few directions means the head reads a handful of
    directions of the representation; a diagonal means it reads all of them alike.
    """
    rows = _probe_values(probes, "directions", "importance")
    if rows.empty:
        return None
    fig = Figure(figsize=(5.6, 4.4), layout="constrained")
    ax = fig.add_subplot()
    for key in names:
        r = rows[rows["label"] == key].copy()
        if r.empty:
            continue
        r["rank"] = r["key"].astype(int)
        r = r.sort_values("rank")
        share = np.cumsum(r["value"].to_numpy(float))
        share = share / share[-1] if share[-1] > 0 else share
        ax.plot(r["rank"] + 1, share, color=colours[key], linewidth=1.8, label=names[key])
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("number of top directions k (log scale)")
    ax.set_ylabel("cumulative share of importance")
    ax.set_title("Privileged directions of the head", fontsize=10)
    ax.grid(True, color="0.9", which="both")
    _legend_below(fig, ax)
    return save_figure(fig, base)


def plot_pruning(
    probes: pd.DataFrame, names: dict[str, str], colours: dict[str, str], base: Path
) -> FigureFiles | None:
    """Accuracy when only the k most (solid) or least (dashed) important directions are kept."""
    rows = probes[
        (probes["probe"] == "pruning") & probes["metric"].isin(["accuracy", "accuracy_least"])
    ]
    if rows.empty:
        return None
    fig = Figure(figsize=(5.6, 4.4), layout="constrained")
    ax = fig.add_subplot()
    for key in names:
        for metric, style in (("accuracy", "-"), ("accuracy_least", "--")):
            r = rows[(rows["label"] == key) & (rows["metric"] == metric)]
            if r.empty:
                continue
            frac = [json.loads(e or "{}").get("fraction_kept", np.nan) for e in r["extra"]]
            r = r.assign(frac=frac).sort_values("frac")
            ax.plot(
                100 * r["frac"],
                100 * r["value"],
                linestyle=style,
                color=colours[key],
                marker="o" if style == "-" else None,
                markersize=3,
                linewidth=1.6,
                label=names[key] if style == "-" else None,
            )
    ax.plot([], [], linestyle="--", color="0.4", label="least important kept (control)")
    ax.set_xlabel("directions kept (% of the head's rank)")
    ax.set_ylabel("accuracy (%)")
    ax.set_xlim(0, 100)
    ax.set_title("Pruning to the top-k privileged directions", fontsize=10)
    ax.grid(True, color="0.9")
    _legend_below(fig, ax, ncol=2)
    return save_figure(fig, base)


def plot_kurtosis_vs_robustness(
    points: pd.DataFrame, base: Path, *, y_label: str, title: str
) -> FigureFiles:
    """Scatter of mean kurtosis against a robustness measure, one labelled point per model.

    ``points`` has columns label, kurtosis, y, y_lo, y_hi (y in points), colour. Crabbé et al.
    (2024) find that effectively robust CLIP models have high-kurtosis (outlier) features; with
    only the models of one store this is a check of that pattern, not a test of it.
    """
    fig = Figure(figsize=(5.6, 4.4), layout="constrained")
    ax = fig.add_subplot()
    yerr = np.vstack([points["y"] - points["y_lo"], points["y_hi"] - points["y"]]).astype(float)
    ax.errorbar(
        points["kurtosis"],
        points["y"],
        yerr=np.nan_to_num(yerr),
        fmt="none",
        ecolor="0.6",
        elinewidth=0.8,
        capsize=2,
        zorder=2,
    )
    ax.scatter(
        points["kurtosis"],
        points["y"],
        s=60,
        c=points["colour"],
        edgecolors="black",
        linewidths=0.6,
        zorder=3,
    )
    for r in points.itertuples():
        ax.annotate(
            str(r.label), (r.kurtosis, r.y), xytext=(6, 4), textcoords="offset points", fontsize=7.5
        )
    ax.axhline(0, color="black", linewidth=0.8)
    scale = _kurtosis_scale(ax, points["kurtosis"].to_numpy(float), bars=False)
    ax.set_xlabel("mean per-image kurtosis of pre-head features" + scale)
    ax.set_ylabel(y_label)
    ax.set_title(title, fontsize=10)
    ax.grid(True, color="0.9", which="both")
    return save_figure(fig, base)


def class_drop_chunks(run_ids: Sequence[str]) -> list[list[str]]:
    """Runs split into figures of at most :data:`MODELS_PER_DROP_FIGURE` columns."""
    ids = list(run_ids)
    step = MODELS_PER_DROP_FIGURE
    return [ids[i : i + step] for i in range(0, len(ids), step)]
