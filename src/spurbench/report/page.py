"""The report's assembly: figures, tables and thumbnails around the analysed data.

:class:`ReportPage` first has :mod:`spurbench.report.analysis` fit the trends and effective
robustness, then draws the figures from those fits and builds the tables, into one typed
:class:`~spurbench.report.view.ReportView`; :mod:`spurbench.report.html` and
:mod:`spurbench.report.summary` only render that view.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pandas as pd

from spurbench.evaluate.candidates import describe_source
from spurbench.evaluate.effective_robustness import DEFAULT_N_BOOT, Transform
from spurbench.report.analysis import PanelTrends, panel_trends, with_effective_robustness
from spurbench.report.collect import Panel, ReportData, short_names
from spurbench.report.counterfactuals import counterfactual_views, methods_text
from spurbench.report.figures import (
    FigureFiles,
    class_drop_chunks,
    inline_svg,
    model_colours,
    plot_class_drops,
    plot_counter_vs_common_linear,
    plot_directions,
    plot_kurtosis,
    plot_kurtosis_vs_robustness,
    plot_pruning,
)
from spurbench.report.plots import plot_counter_vs_common
from spurbench.report.tables import (
    Table,
    cell_table,
    er_families,
    fmt_ci,
    fmt_pct,
    model_table,
    probe_tables,
    trend_name,
)
from spurbench.report.thumbnails import (
    ClassExamples,
    Thumb,
    Thumbnailer,
    class_examples,
    label_names,
    wrong_examples,
)
from spurbench.report.view import (
    CounterfactualView,
    Fit,
    Gallery,
    PageFigure,
    PanelView,
    ProbeSection,
    ProbeView,
    ReportView,
    WrongImages,
)

__all__ = ["ReportOptions", "ReportPage"]

FIGURES = "figures"


@dataclass(frozen=True)
class ReportOptions:
    """What goes into the report and how much of it (caps keep the page a few MB at most)."""

    models: Sequence[str] | None = None
    with_published: bool = True
    thumbnails: bool = True
    per_group: int = 4
    shown_classes: int = 12
    max_classes: int = 60
    wrong_per_model: int = 10
    max_wrong_models: int = 8
    max_cell_models: int = 10
    transform: Transform = "logit"
    n_boot: int = DEFAULT_N_BOOT
    seed: int = 0
    title: str | None = None


class ReportPage:
    """Builds the report: analyses the data (trends, effective robustness), draws the figures
    into the staging folder ``root``, builds the tables, and returns one :class:`ReportView`.

    ``data`` is not modified: the page works on a copy (its runs gain the ER columns, its notes
    may grow), available as ``page.data`` after :meth:`build`.
    """

    def __init__(self, data: ReportData, opts: ReportOptions, root: Path) -> None:
        self.data = replace(data, runs=data.runs.copy(), notes=list(data.notes))
        self.opts, self.root = opts, root
        self.fig_dir = root / FIGURES
        self.fits: list[Fit] = []
        self.panels: list[PanelView] = []
        self.probe: ProbeView | None = None
        self.counterfactual: CounterfactualView | None = None
        self.galleries: list[Gallery] = []
        self.wrong: list[WrongImages] = []
        self.thumb_failures = 0
        self.figures: list[PageFigure] = []
        self.models: Table | None = None
        self.generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")

    # -- the pieces ------------------------------------------------------------------------

    def build(self) -> ReportView:
        trends = [panel_trends(self.data, p, self.opts.transform) for p in self.data.panels]
        self.data, self.fits = with_effective_robustness(
            self.data, [t for t in trends if t is not None], n_boot=self.opts.n_boot,
            seed=self.opts.seed,
        )  # fmt: skip
        for panel, panel_trend in zip(self.data.panels, trends, strict=True):
            self.panels.append(self._panel(panel, panel_trend))
        self.models = model_table(self.data)
        self.probe = self._probes()
        if not self.data.counterfactuals.empty:
            views = counterfactual_views(
                self.data.counterfactuals, self.data.runs, thumbnails=self.opts.thumbnails
            )
            self.counterfactual = CounterfactualView(views, methods_text(views))
        if self.opts.thumbnails:
            self._thumbnails()
        return self._view()

    def _figure(self, key: str, caption: str, files: FigureFiles) -> PageFigure:
        fig = PageFigure(key, caption, files, inline_svg(files.svg, key))
        self.figures.append(fig)
        return fig

    def figure_files(self) -> list[Path]:
        return [p for f in self.figures for p in (f.files.png, f.files.svg)]

    def _panel(self, panel: Panel, trends: PanelTrends | None) -> PanelView:
        data, opts = self.data, self.opts
        view = PanelView(panel)
        if trends is not None and panel.published is not None:
            view.scatter = self._published_scatter(trends)
        elif trends is not None:
            view.scatter = self._own_scatter(trends)
        view.fits = [f for f in self.fits if f.panel == panel.title]
        classes = data.classes[data.classes["run_id"].isin(panel.run_ids)]
        if not classes.empty:
            runs = data.panel_runs(panel)
            with_classes = [r for r in runs["run_id"] if r in set(classes["run_id"])]
            names = dict(zip(runs["run_id"], runs["display"], strict=True))
            chunks = class_drop_chunks(with_classes)
            for i, chunk in enumerate(chunks):
                files = plot_class_drops(
                    classes[classes["run_id"].isin(chunk)],
                    {r: names[r] for r in chunk},
                    self.fig_dir / f"class_drops_{panel.slug}_{i + 1}",
                    title=panel.title,
                )
                part = f" (part {i + 1} of {len(chunks)})" if len(chunks) > 1 else ""
                view.drops.append(
                    self._figure(
                        f"fig-drops-{panel.slug}-{i + 1}",
                        "Per-class drop: common − counter accuracy of each class, in points, with "
                        f"{data.level:.0%} Newcombe intervals; red bars: the common background "
                        "helps, blue: the counter background does. Classes sorted by mean drop "
                        "over the models; dotted line: the model's mean (balanced) drop"
                        + part
                        + ".",
                        files,
                    )
                )
        view.cells = cell_table(data, panel, opts.max_cell_models)
        return view

    def _published_scatter(self, trends: PanelTrends) -> PageFigure:
        """The store's models as stars among the published ones, trends over the published."""
        opts, panel = self.opts, trends.panel
        res = plot_counter_vs_common(
            trends.points,
            self.fig_dir / f"counter_vs_common_{panel.slug}",
            transform=opts.transform,
            n_boot=opts.n_boot,
            seed=opts.seed,
            title=f"CounterAnimal ({panel.protocol}): our models among the published ones",
            fits=trends.fits,
        )
        caption = (
            f"Counter- vs common-background accuracy (class-balanced, {opts.transform} axes). "
            "Stars: models from this store; other points: published CounterAnimal results. "
            "Dashed: y = x (no drop). Lines: OLS trends over the published CLIP and ImageNet "
            f"models with {self.data.level:.0%} bootstrap bands; a model above its family's "
            "trend is effectively robust."
        )
        return self._figure(f"fig-cvc-{panel.slug}", caption, FigureFiles(res.png, res.svg))

    def _own_scatter(self, trends: PanelTrends) -> PageFigure:
        """The store's models alone, on linear axes with their intervals."""
        panel, fits = trends.panel, trends.fits
        files, _ = plot_counter_vs_common_linear(
            trends.points,
            self.fig_dir / f"counter_vs_common_{panel.slug}",
            title=f"{panel.title}: counter vs common accuracy",
            level=self.data.level,
            n_boot=self.opts.n_boot,
            seed=self.opts.seed,
            transform=self.opts.transform,
            fits=fits,
        )
        caption = (
            "Counter- vs common-background accuracy (class-balanced) with "
            f"{self.data.level:.0%} intervals. Dashed: y = x (no drop): the farther below it, "
            "the more a model relies on the common background."
            + (
                " Curves: trends over this store's models of a family (fitted on the "
                f"{self.opts.transform} scale) with bootstrap bands."
                if fits
                else ""
            )
        )
        return self._figure(f"fig-cvc-{panel.slug}", caption, files)

    def _probes(self) -> ProbeView | None:
        probes = self.data.probes
        if probes.empty:
            return None
        several = probes.groupby("model")["dataset"].nunique()
        probes = probes.assign(
            label=[
                f"{m} · {d}" if several[m] > 1 else m
                for m, d in zip(probes["model"], probes["dataset"], strict=True)
            ]
        )
        labels = list(dict.fromkeys(probes["label"]))
        models = dict(zip(probes["label"], probes["model"], strict=False))
        short = short_names(list(dict.fromkeys(probes["model"])))
        names = {lab: lab.replace(models[lab], short[models[lab]]) for lab in labels}
        colours = model_colours(labels)
        tables = probe_tables(probes, names)
        plots = {
            "kurtosis": (
                lambda b: plot_kurtosis(probes, names, b),
                "Mean per-image kurtosis of the features and its random-rotation control; the "
                "dashed line is a Gaussian's 3.",
            ),
            "directions": (
                lambda b: plot_directions(probes, names, colours, b),
                "Cumulative share of importance of the top-k privileged directions of the head.",
            ),
            "pruning": (
                lambda b: plot_pruning(probes, names, colours, b),
                "Accuracy keeping only the k most important directions (solid) or the k least "
                "important ones (dashed control).",
            ),
        }
        figures: dict[str, PageFigure] = {}
        for key, (plot, caption) in plots.items():
            files = plot(self.fig_dir / f"probe_{key}")
            if files is not None:
                figures[key] = self._figure(f"fig-probe-{key}", caption, files)
        scatter = self._kurtosis_vs_robustness(probes, names, colours)
        if scatter is not None:
            figures["kvr"] = scatter
        layout = (  # (title, tables, figures): each table followed by the figures that draw it
            ("Outlier features", ("probe-kurtosis",), ("kurtosis", "kvr")),
            (
                "Privileged directions and pruning",
                ("probe-directions", "probe-pruning"),
                ("directions", "pruning"),
            ),
            ("Concepts", ("probe-concepts",), ()),
        )
        sections = []
        for title, table_keys, figure_keys in layout:
            section = ProbeSection(
                title,
                [tables[k] for k in table_keys if k in tables],
                [figures[k] for k in figure_keys if k in figures],
            )
            if section.tables or section.figures:
                sections.append(section)
        return ProbeView(sections, tables)

    def _kurtosis_vs_robustness(
        self, probes: pd.DataFrame, names: dict[str, str], colours: dict[str, str]
    ) -> PageFigure | None:
        """Kurtosis against ER (or against −drop when no trend was fitted), ≥ 2 models."""
        kurt = probes[
            (probes["probe"] == "kurtosis")
            & (probes["metric"] == "mean_image_kurtosis")
            & (probes["key"] == "pre_head")
        ]
        runs = self.data.runs
        fams = er_families(runs)
        family = "imagenet" if "imagenet" in fams else (fams[0] if fams else None)
        rows = []
        for r in kurt.itertuples():
            match = runs[(runs["model"] == r.model) & (runs["dataset"] == r.dataset)]
            if family is not None:
                match = match[match[f"er_{family}"].notna()]
                cols = (f"er_{family}", f"er_{family}_lo", f"er_{family}_hi")
            else:
                match = match[match["drop"].notna()]
                cols = ("drop", "drop_hi", "drop_lo")
            if match.empty:
                continue
            m = match.iloc[0]
            sign = 1.0 if family is not None else -1.0
            rows.append(
                {
                    "label": names[r.label],
                    "kurtosis": r.value,
                    "colour": colours[r.label],
                    "y": sign * 100 * m[cols[0]],
                    "y_lo": sign * 100 * m[cols[1]],
                    "y_hi": sign * 100 * m[cols[2]],
                }
            )
        if len(rows) < 2:
            return None
        if family is not None:
            trend = trend_name(family)
            y_label = f"effective robustness vs {trend} trend (pt)"
            title = f"Kurtosis vs effective robustness ({trend} baseline)"
        else:
            y_label = "counter − common accuracy (pt)"
            title = "Kurtosis vs counter-background robustness"
        files = plot_kurtosis_vs_robustness(
            pd.DataFrame(rows),
            self.fig_dir / "probe_kurtosis_vs_robustness",
            y_label=y_label,
            title=title,
        )
        return self._figure(
            "fig-probe-kvr",
            f"{title}, one point per probed model with its {self.data.level:.0%} "
            "interval. Crabbé et al. (2024) report that effectively robust CLIP models have "
            "outlier features (high kurtosis).",
            files,
        )

    def _thumbnails(self) -> None:
        data, opts = self.data, self.opts
        make = Thumbnailer()
        runs = data.runs
        for path, group in runs.groupby("dataset_path", sort=False):
            ex = data.examples[data.examples["run_id"].isin(group["run_id"])]
            if ex.empty:
                continue
            classes: list[ClassExamples] = class_examples(
                ex, str(path), make, per_group=opts.per_group, max_classes=opts.max_classes
            )
            if classes:
                self.galleries.append(Gallery(group["dataset"].iloc[0], classes))
        for _, run in runs.head(opts.max_wrong_models).iterrows():
            wrong = data.wrong[data.wrong["run_id"] == run["run_id"]]
            cls = data.classes[data.classes["run_id"] == run["run_id"]]
            pairs = list(zip(cls["label"], cls["class_name"], strict=True))
            pairs += list(zip(wrong["label"], wrong["class_name"], strict=True))
            names = label_names(str(run["protocol"]), str(run["name_set"]), pairs)
            thumbs: list[Thumb] = wrong_examples(
                wrong, str(run["dataset_path"]), names, make, k=opts.wrong_per_model
            )
            self.wrong.append(WrongImages(run, thumbs, len(wrong)))
        self.thumb_failures = make.failed
        if len(runs) > opts.max_wrong_models:
            data.notes.append(
                f"Misclassified images are shown for the first {opts.max_wrong_models} of "
                f"{len(runs)} runs."
            )

    def highlights(self) -> list[str]:
        """A few sentences a reader checks first: the spread of drops, the worst classes, ER."""
        data, out = self.data, []
        for view in self.panels:
            panel = view.panel
            runs = data.panel_runs(panel).dropna(subset=["drop"])
            if runs.empty:
                continue
            hi, lo = runs.loc[runs["drop"].idxmax()], runs.loc[runs["drop"].idxmin()]
            text = f"{panel.title}: {len(runs)} model{'s' if len(runs) > 1 else ''}; "
            if len(runs) > 1 and hi["drop"] == lo["drop"]:
                text += f"balanced drop {fmt_pct(hi['drop'], 1, True)} pt for every model."
            elif len(runs) > 1:
                text += (
                    f"balanced drop from {fmt_pct(lo['drop'], 1, True)} pt ({lo['display']}) "
                    f"to {fmt_pct(hi['drop'], 1, True)} pt ({hi['display']})."
                )
            else:
                text += (
                    f"balanced drop {fmt_pct(hi['drop'], 1, True)} pt "
                    f"{fmt_ci(hi['drop_lo'], hi['drop_hi'])}."
                )
            cls = data.classes[data.classes["run_id"].isin(runs["run_id"])]
            if not cls.empty:
                worst = cls.groupby("class_name")["drop"].mean().nlargest(3)
                text += (
                    " Largest mean class drops: "
                    + ", ".join(f"{c} ({fmt_pct(d, 0, True)} pt)" for c, d in worst.items())
                    + "."
                )
            for fit in view.fits:
                col = f"er_{fit.family}"
                er = runs.dropna(subset=[col]) if col in runs else runs.iloc[:0]
                if er.empty:
                    continue
                best = er.loc[er[col].idxmax()]
                trend = trend_name(fit.family)
                text += (
                    f" Highest ER vs the {trend} trend: {best['display']} "
                    f"({fmt_pct(best[col], 1, True)} pt "
                    f"{fmt_ci(best[col + '_lo'], best[col + '_hi'])})."
                )
            out.append(text)
        return out

    def _view(self) -> ReportView:
        data = self.data
        assert self.models is not None  # built first in build()
        return ReportView(
            title=self.opts.title or "spurbench report: reliance on spurious backgrounds",
            generated=self.generated,
            version=_version(),
            store=str(data.store_path),
            n_runs=len(data.runs),
            n_models=data.runs["model"].nunique(),
            datasets=sorted(set(data.runs["dataset"])),
            protocols=sorted(set(data.runs["protocol"])),
            models=self.models,
            panels=self.panels,
            fits=self.fits,
            probe=self.probe,
            counterfactual=self.counterfactual,
            galleries=self.galleries,
            wrong=self.wrong,
            thumb_failures=self.thumb_failures,
            notes=data.notes,
            candidate_sets=candidate_sets_used(data),
            lvlm_scores=sorted(set(data.runs["lvlm_score"]) - {""}),
            image_passes=sorted(set(data.runs["image_pass"]) - {""}),
            highlights=self.highlights(),
            level=data.level,
            options=self.opts,
            figures=self.figures,
            root=self.root,
        )


def candidate_sets_used(data: ReportData) -> list[dict[str, str]]:
    """Each distinct 1-vs-20 candidate-set hash of the report, with where its sets came from."""
    runs = data.runs[data.runs["protocol"] == "1v20"]
    out = []
    for digest, group in runs.groupby("candidates_hash", sort=False):
        sources = sorted(set(group["candidates_source"]) - {""})
        out.append(
            {
                "hash": str(digest) or "not recorded",
                "source": " / ".join(describe_source(s) for s in sources)
                or "not recorded (a run stored by an older spurbench)",
            }
        )
    return out


def _version() -> str:
    try:
        return version("spurbench")
    except PackageNotFoundError:  # running from a source tree without installation
        return "dev"
