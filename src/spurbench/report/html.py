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

import dataclasses
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from spurbench.atomic import atomic_path
from spurbench.errors import SpurbenchError
from spurbench.report.collect import ReportData, collect
from spurbench.report.folder import check_out_dir, read_manifest, write_error, write_manifest
from spurbench.report.page import FIGURES, ReportOptions, ReportPage
from spurbench.report.summary import render_summary
from spurbench.report.tables import KIND_LABELS, models_frame
from spurbench.report.view import Fit, ReportView
from spurbench.store.spreadsheet import spreadsheet_safe

__all__ = ["ReportOptions", "ReportOutput", "build_report"]

HTML_NAME = "index.html"
SUMMARY_NAME = "summary.md"
TABLE_NAME = "models.csv"


@dataclass
class ReportOutput:
    """Paths written and the data behind them (for tests and for the CLI's message)."""

    html: Path
    summary: Path
    table: Path
    figures: list[Path]
    data: ReportData
    fits: list[Fit] = field(default_factory=list)


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
        view = page.build()
        html = _render_html(view)
        summary = render_summary(view)
        figures = _commit(staging, out, page.figure_files())
        table = models_frame(page.data)  # the runs with their effective robustness
        _write_shared(out / TABLE_NAME, spreadsheet_safe(table).to_csv(index=False))
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
        data=page.data,
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


def _render_html(view: ReportView) -> str:
    import jinja2

    template = resources.files("spurbench.report").joinpath("templates/report.html.j2")
    env = jinja2.Environment(
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True
    )
    env.filters["pct"] = lambda x, d=1: "" if x is None or x != x else f"{100 * x:.{d}f}"
    fields = {f.name: getattr(view, f.name) for f in dataclasses.fields(view)}
    return env.from_string(template.read_text(encoding="utf-8")).render(
        **fields, kind_labels=KIND_LABELS, figure_rel=view.figure_rel
    )
