"""``spurbench report``: one self-contained HTML page, its figures, and a Markdown summary.

The page is meant for a paper's appendix: the counter-vs-common scatter with the y = x line and
the baseline trends (the user's models as stars among the published ones when comparable), the
per-class drops, the per-background failure table, thumbnails of what "counter background"
means and of the images each model gets wrong, the probe results when present, and a sortable
table of every model with intervals.

Self-contained means viewable with no network and no other file: figures are inline SVG,
thumbnails are data URIs, the sort script and the styles are inline, nothing is fetched from a
CDN. The same figures are also written beside the page as PNG and SVG, with ``summary.md`` and
``models.csv``, for pasting into a paper.

Writes are atomic as a whole: everything is rendered in a hidden staging folder inside ``out``
first; only when all of it exists are the files moved into place (each by an atomic rename),
the HTML page last, so a reader or a killed run never sees a page pointing at missing figures.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spurbench.atomic import atomic_path
from spurbench.errors import SpurbenchError
from spurbench.evaluate.candidates import describe_source
from spurbench.report.collect import Panel, ReportData, collect, panel_points, short_names
from spurbench.report.counterfactuals import counterfactual_views, methods_text
from spurbench.report.effective_robustness import (
    DEFAULT_N_BOOT,
    Transform,
    effective_robustness_ci,
)
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
from spurbench.report.folder import check_out_dir, read_manifest, write_error, write_manifest
from spurbench.report.plots import plot_counter_vs_common
from spurbench.report.summary import render_summary
from spurbench.report.tables import (
    KIND_LABELS,
    Table,
    cell_table,
    er_families,
    fmt_ci,
    fmt_pct,
    model_table,
    models_frame,
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
from spurbench.store.spreadsheet import spreadsheet_safe

__all__ = ["ReportOptions", "ReportOutput", "build_report"]

HTML_NAME = "index.html"
SUMMARY_NAME = "summary.md"
TABLE_NAME = "models.csv"
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


@dataclass
class PageFigure:
    """A figure of the page: its files (relative to the report folder) and inline SVG."""

    key: str
    caption: str
    files: FigureFiles
    svg: str = ""

    def rel(self, root: Path) -> dict[str, str]:
        return {"png": _rel(self.files.png, root), "svg": _rel(self.files.svg, root)}


@dataclass
class Fit:
    """One baseline trend of a panel, described for the reader."""

    panel: str
    family: str
    baseline: str
    n: int
    slope: float
    intercept: float
    r: float
    transform: str


@dataclass
class ReportOutput:
    """Paths written and the data behind them (for tests and for the CLI's message)."""

    html: Path
    summary: Path
    table: Path
    figures: list[Path]
    data: ReportData
    fits: list[Fit] = field(default_factory=list)


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def build_report(
    store: str | Path,
    out: str | Path,
    options: ReportOptions | None = None,
    force: bool = False,
) -> ReportOutput:
    """Write ``out/index.html``, ``out/summary.md``, ``out/models.csv`` and ``out/figures/``.

    Raises :class:`~spurbench.report.collect.ReportError` for a missing or empty store, or when
    ``options.models`` matches no run, and :class:`~spurbench.report.folder.ReportFolderError`
    when ``out`` is a file, cannot be written, or is a non-empty folder that is not an earlier
    report (unless ``force``); nothing is written then. Only files an earlier report wrote
    (listed in its marker) are ever replaced or removed, apart from the three named files
    under ``force``.
    """
    opts = options or ReportOptions()
    out = Path(out)
    check_out_dir(out, force)
    data = collect(
        store, models=opts.models, with_published=opts.with_published, images=opts.thumbnails
    )
    try:
        out.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".report-", dir=out))
    except SpurbenchError:
        raise
    except OSError as e:
        raise write_error(out, e) from None
    try:
        page = ReportPage(data, opts, staging)
        page.build()
        html = _render_html(page)
        summary = render_summary(page)
        figures = _commit(staging, out, page.figure_files())
        _write_shared(out / TABLE_NAME, spreadsheet_safe(models_frame(data)).to_csv(index=False))
        _write_shared(out / SUMMARY_NAME, summary)
        _write_shared(out / HTML_NAME, html)
    except SpurbenchError:
        raise
    except OSError as e:
        raise write_error(out, e) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ReportOutput(
        html=out / HTML_NAME,
        summary=out / SUMMARY_NAME,
        table=out / TABLE_NAME,
        figures=figures,
        data=data,
        fits=page.fits,
    )


def _write_shared(target: Path, text: str) -> None:
    """Atomic write, readable as any file the user creates (a report is meant to be shared).

    The temporary file of :func:`spurbench.atomic.atomic_path` is private (0600), which would
    stop a web server or a colleague on the same machine from reading the page.
    """
    umask = os.umask(0)
    os.umask(umask)
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
        tmp.chmod(0o666 & ~umask)


def _commit(staging: Path, out: Path, files: list[Path]) -> list[Path]:
    """Move staged figure files into ``out/figures`` (atomic renames; stale figures removed).

    The marker first lists the old and the new files, so a run killed half-way still knows
    what it wrote; stale figures are those the previous report listed and this one does not.
    """
    target_dir = out / FIGURES
    target_dir.mkdir(parents=True, exist_ok=True)
    previous = read_manifest(out)
    ours = {f"{FIGURES}/{f.name}" for f in files} | {HTML_NAME, SUMMARY_NAME, TABLE_NAME}
    write_manifest(out, previous | ours)
    moved = []
    for f in files:
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
        target = target_dir / f.name
        os.replace(f, target)
        moved.append(target)
    for stale in sorted(previous - ours):  # figures of panels or models no longer drawn
        if stale.startswith(f"{FIGURES}/") and "/" not in stale[len(FIGURES) + 1 :]:
            (out / stale).unlink(missing_ok=True)
    write_manifest(out, ours)
    return moved


class ReportPage:
    """The page's figures (drawn into the staging folder ``root``) and its view objects.

    One object feeds both the HTML template and the Markdown summary, so both show the same
    numbers; build it with :meth:`build`, then read :meth:`context`.
    """

    def __init__(self, data: ReportData, opts: ReportOptions, root: Path) -> None:
        self.data, self.opts, self.root = data, opts, root
        self.fig_dir = root / FIGURES
        self.fits: list[Fit] = []
        self.panels: list[dict[str, Any]] = []
        self.probe: dict[str, Any] = {}
        self.counterfactual: dict[str, Any] = {}
        self.galleries: list[dict[str, Any]] = []
        self.wrong: list[dict[str, Any]] = []
        self.thumb_failures = 0
        self.figures: list[PageFigure] = []
        self.models: Table | None = None
        self.generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")

    # -- the pieces ------------------------------------------------------------------------

    def build(self) -> None:
        for panel in self.data.panels:
            self.panels.append(self._panel(panel))
        self.models = model_table(self.data)
        self.probe = self._probes()
        if not self.data.counterfactuals.empty:
            views = counterfactual_views(
                self.data.counterfactuals, self.data.runs, thumbnails=self.opts.thumbnails
            )
            self.counterfactual = {"views": views, "methods": methods_text(views)}
        if self.opts.thumbnails:
            self._thumbnails()

    def _figure(self, key: str, caption: str, files: FigureFiles) -> PageFigure:
        fig = PageFigure(key, caption, files, inline_svg(files.svg, key))
        self.figures.append(fig)
        return fig

    def figure_files(self) -> list[Path]:
        return [p for f in self.figures for p in (f.files.png, f.files.svg)]

    def _panel(self, panel: Panel) -> dict[str, Any]:
        data, opts = self.data, self.opts
        view: dict[str, Any] = {"panel": panel, "scatter": None, "drops": [], "fits": []}
        if panel.published is not None:
            view["scatter"] = self._published_scatter(panel)
        else:
            view["scatter"] = self._own_scatter(panel)
        view["fits"] = [f for f in self.fits if f.panel == panel.title]
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
                view["drops"].append(
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
        view["cells"] = cell_table(data, panel, opts.max_cell_models)
        return view

    def _published_scatter(self, panel: Panel) -> PageFigure | None:
        """The store's models as stars among the published ones, trends over the published."""
        opts = self.opts
        points = panel_points(self.data, panel)
        if not (points["source"] == "ours").any():
            return None
        res = plot_counter_vs_common(
            points,
            self.fig_dir / f"counter_vs_common_{panel.slug}",
            ("clip", "imagenet"),
            transform=opts.transform,
            n_boot=opts.n_boot,
            seed=opts.seed,
            title=f"CounterAnimal ({panel.protocol}): our models among the published ones",
        )
        self._effective_robustness(panel, res.fits, "published")
        caption = (
            f"Counter- vs common-background accuracy (class-balanced, {opts.transform} axes). "
            "Stars: models from this store; other points: published CounterAnimal results. "
            "Dashed: y = x (no drop). Lines: OLS trends over the published CLIP and ImageNet "
            f"models with {self.data.level:.0%} bootstrap bands; a model above its family's "
            "trend is effectively robust."
        )
        return self._figure(f"fig-cvc-{panel.slug}", caption, FigureFiles(res.png, res.svg))

    def _own_scatter(self, panel: Panel) -> PageFigure | None:
        """The store's models alone, on linear axes with their intervals."""
        runs = self.data.panel_runs(panel).dropna(subset=["common", "counter"])
        if runs.empty:
            return None
        points = runs.drop(columns="family").rename(
            columns={"kind": "family", "display": "model_name"}
        )
        files, fits = plot_counter_vs_common_linear(
            points,
            self.fig_dir / f"counter_vs_common_{panel.slug}",
            title=f"{panel.title}: counter vs common accuracy",
            level=self.data.level,
            n_boot=self.opts.n_boot,
            seed=self.opts.seed,
            transform=self.opts.transform,
        )
        self._effective_robustness(panel, fits, "this store")
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

    def _effective_robustness(self, panel: Panel, fits: dict[str, Any], baseline: str) -> None:
        """ER of each run of the panel against each fitted trend, as new run columns."""
        runs = self.data.runs
        sel = runs["run_id"].isin(panel.run_ids) & runs["common"].notna() & runs["counter"].notna()
        for family, fit in fits.items():
            self.fits.append(
                Fit(
                    panel.title,
                    family,
                    baseline,
                    fit.n,
                    fit.slope,
                    fit.intercept,
                    fit.r,
                    fit.transform,
                )
            )
            col = f"er_{family}"
            for c in (col, col + "_lo", col + "_hi"):
                if c not in runs:
                    runs[c] = np.nan
            if col + "_baseline" not in runs:
                runs[col + "_baseline"] = ""
            if not sel.any():
                continue
            runs.loc[sel, col + "_baseline"] = f"{baseline} n={fit.n}"
            er, lo, hi = effective_robustness_ci(
                fit,
                runs.loc[sel, "common"],
                runs.loc[sel, "counter"],
                level=self.data.level,
                n_boot=self.opts.n_boot,
                seed=self.opts.seed,
            )
            runs.loc[sel, col], runs.loc[sel, col + "_lo"], runs.loc[sel, col + "_hi"] = er, lo, hi

    def _probes(self) -> dict[str, Any]:
        probes = self.data.probes
        if probes.empty:
            return {}
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
            section = {
                "title": title,
                "tables": [tables[k] for k in table_keys if k in tables],
                "figures": [figures[k] for k in figure_keys if k in figures],
            }
            if section["tables"] or section["figures"]:
                sections.append(section)
        return {"sections": sections, "tables": tables}

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
                self.galleries.append({"dataset": group["dataset"].iloc[0], "classes": classes})
        for _, run in runs.head(opts.max_wrong_models).iterrows():
            wrong = data.wrong[data.wrong["run_id"] == run["run_id"]]
            cls = data.classes[data.classes["run_id"] == run["run_id"]]
            pairs = list(zip(cls["label"], cls["class_name"], strict=True))
            pairs += list(zip(wrong["label"], wrong["class_name"], strict=True))
            names = label_names(str(run["protocol"]), str(run["name_set"]), pairs)
            thumbs: list[Thumb] = wrong_examples(
                wrong, str(run["dataset_path"]), names, make, k=opts.wrong_per_model
            )
            self.wrong.append({"run": run, "thumbs": thumbs, "n_wrong": len(wrong)})
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
            panel = view["panel"]
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
            for fit in view["fits"]:
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

    # -- context for the templates ------------------------------------------------------------

    def context(self) -> dict[str, Any]:
        data = self.data
        datasets = sorted(set(data.runs["dataset"]))
        protocols = sorted(set(data.runs["protocol"]))
        return {
            "title": self.opts.title or "spurbench report: reliance on spurious backgrounds",
            "generated": self.generated,
            "version": _version(),
            "store": str(data.store_path),
            "n_runs": len(data.runs),
            "n_models": data.runs["model"].nunique(),
            "datasets": datasets,
            "protocols": protocols,
            "models": self.models,
            "panels": self.panels,
            "fits": self.fits,
            "probe": self.probe,
            "counterfactual": self.counterfactual,
            "galleries": self.galleries,
            "wrong": self.wrong,
            "thumb_failures": self.thumb_failures,
            "notes": data.notes,
            "candidate_sets": candidate_sets_used(data),
            "lvlm_scores": sorted(set(data.runs["lvlm_score"]) - {""}),
            "image_passes": sorted(set(data.runs["image_pass"]) - {""}),
            "highlights": self.highlights(),
            "level": data.level,
            "kind_labels": KIND_LABELS,
            "figure_rel": lambda f: f.rel(self.root),
            "options": self.opts,
        }


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


def _render_html(page: ReportPage) -> str:
    import jinja2

    template = resources.files("spurbench.report").joinpath("templates/report.html.j2")
    env = jinja2.Environment(
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True
    )
    env.filters["pct"] = lambda x, d=1: "" if x is None or x != x else f"{100 * x:.{d}f}"
    return env.from_string(template.read_text(encoding="utf-8")).render(**page.context())
