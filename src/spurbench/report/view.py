"""The report as typed values: what the HTML page and ``summary.md`` show, computed once.

:class:`spurbench.report.html.ReportPage` computes everything (trends, effective robustness,
figures, tables, thumbnails) into one :class:`ReportView`; the HTML template and the Markdown
writer only render it, so both always show the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from spurbench.report.collect import Panel
    from spurbench.report.figures import FigureFiles
    from spurbench.report.html import ReportOptions
    from spurbench.report.tables import Table
    from spurbench.report.thumbnails import ClassExamples, Thumb

__all__ = [
    "CounterfactualView",
    "Fit",
    "Gallery",
    "PageFigure",
    "PanelView",
    "ProbeSection",
    "ProbeView",
    "ReportView",
    "WrongImages",
]


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
class PanelView:
    """One comparison (dataset × protocol): its scatter, per-class drops, trends and cells."""

    panel: Panel
    scatter: PageFigure | None = None
    drops: list[PageFigure] = field(default_factory=list)
    fits: list[Fit] = field(default_factory=list)
    cells: Table | None = None


@dataclass
class ProbeSection:
    """A titled group of probe tables, each followed by the figures that draw it."""

    title: str
    tables: list[Table]
    figures: list[PageFigure]


@dataclass
class ProbeView:
    sections: list[ProbeSection]
    #: table key (``probe-kurtosis``, ...) -> table, for the Markdown summary
    tables: dict[str, Table]


@dataclass
class CounterfactualView:
    """Background counterfactuals (spurbench.report.counterfactuals): one row per run."""

    views: list[dict[str, Any]]
    methods: str


@dataclass
class Gallery:
    """Per-class thumbnails of one dataset folder."""

    dataset: str
    classes: list[ClassExamples]


@dataclass
class WrongImages:
    """A run's misclassified images (the first ``k``) and how many there are in all."""

    run: pd.Series
    thumbs: list[Thumb]
    n_wrong: int


@dataclass
class ReportView:
    """Everything the page and the summary show; the writers read nothing else."""

    title: str
    generated: str
    version: str
    store: str
    n_runs: int
    n_models: int
    datasets: list[str]
    protocols: list[str]
    models: Table
    panels: list[PanelView]
    fits: list[Fit]
    probe: ProbeView | None
    counterfactual: CounterfactualView | None
    galleries: list[Gallery]
    wrong: list[WrongImages]
    thumb_failures: int
    notes: list[str]
    candidate_sets: list[dict[str, str]]
    lvlm_scores: list[str]
    #: image passes other than the papers' (fp32, eager, exact decode), as labelled per run
    image_passes: list[str]
    highlights: list[str]
    level: float
    options: ReportOptions
    figures: list[PageFigure]
    #: the folder figure paths are written relative to (the staging folder while building)
    root: Path

    def figure_rel(self, fig: PageFigure) -> dict[str, str]:
        return fig.rel(self.root)


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()
