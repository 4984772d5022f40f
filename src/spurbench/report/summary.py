"""``summary.md``: the report's numbers as Markdown, for a README, an issue or a paper draft.

It is rendered from the same :class:`~spurbench.report.tables.Table` rows as the HTML page, so
the two always agree; figures are linked as the PNG files written beside it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from spurbench.report.tables import KIND_LABELS, Table

if TYPE_CHECKING:
    from spurbench.report.view import ReportView

__all__ = ["markdown_table", "render_summary"]


#: Markdown and HTML syntax a name could carry: escaped with a backslash (CommonMark allows it
#: before any ASCII punctuation), so ``<b>x</b>`` or ``$x$`` shows as typed, never as HTML or
#: maths, and ``|`` cannot split a table cell.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|$#!~&])")


def _escape(text: str) -> str:
    """User text (model, dataset, class names, paths) as literal Markdown on one line."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text).replace("\r", " ").replace("\n", " "))


def _code(text: str) -> str:
    """A code span (``|`` escaped: GFM splits table cells even inside code), or escaped text
    when a backtick or line break would end the span early."""
    if "`" in text or "\n" in text or "\r" in text:
        return _escape(text)
    return "`" + text.replace("|", "\\|") + "`"


def markdown_table(table: Table, first_column_full: bool = False) -> str:
    """A GitHub-flavoured Markdown table; numeric columns right-aligned.

    ``first_column_full`` prints the first cell's hover text (the full model name) instead of
    its display text, because a Markdown reader has no hover.
    """
    numeric = table.numeric or [False] * len(table.columns)
    lines = [
        "| " + " | ".join(_escape(c) for c in table.columns) + " |",
        "|" + "|".join("---:" if n else "---" for n in numeric) + "|",
    ]
    for row in table.rows:
        # numeric cells are our own formatting ("12.3 [10.1, 14.5]"): kept readable as typed
        cells = [c.full if n else _escape(c.full) for c, n in zip(row, numeric, strict=True)]
        if first_column_full and row[0].title:
            cells[0] = _code(row[0].title)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_summary(view: ReportView) -> str:
    """The Markdown summary of a computed report."""
    out = [
        f"# {view.title}",
        "",
        f"Store {_code(view.store)} · {view.n_runs} runs of {view.n_models} models · "
        f"datasets: {', '.join(map(_escape, view.datasets))} · "
        f"protocols: {', '.join(map(_escape, view.protocols))} · "
        f"generated {view.generated} by spurbench {view.version}.",
        "",
        "Accuracies are class-balanced top-1 (mean over classes) in percent; the drop is common "
        "minus counter accuracy in points; brackets are "
        f"{view.level:.0%} confidence intervals. ER is effective robustness: counter accuracy "
        "minus what the baseline trend predicts at the model's common accuracy.",
        "",
        "## Models",
        "",
        markdown_table(view.models, first_column_full=True),
        "",
    ]
    if view.fits:
        out += [
            "## Baseline trends",
            "",
            "| Comparison | Family | Baseline models | n | Slope | Intercept | r |",
            "|---|---|---|---:|---:|---:|---:|",
        ]
        for f in view.fits:
            out.append(
                f"| {_escape(f.panel)} | {KIND_LABELS.get(f.family, f.family)} | {f.baseline} "
                f"| {f.n} | {f.slope:.3f} | {f.intercept:.3f} | {f.r:.3f} |"
            )
        out += [
            "",
            f"Trends are OLS fits on {view.options.transform}-transformed accuracies "
            "(Taori et al. 2020).",
            "",
        ]
    for panel in (p.panel for p in view.panels):
        if panel.note:
            out += [f"*{_escape(panel.title)}:* {_escape(panel.note)}", ""]
    tables = view.probe.tables if view.probe else {}
    titles = {
        "probe-kurtosis": "Outlier features (kurtosis)",
        "probe-directions": "Privileged directions",
        "probe-pruning": "Pruning",
        "probe-concepts": "Concepts",
    }
    if tables:
        out += ["## Probes", ""]
        for key, table in tables.items():
            out += [f"### {titles[key]}", "", markdown_table(table), "", table.note, ""]
    out += ["## Figures", ""]
    for fig in view.figures:
        rel = view.figure_rel(fig)
        name = fig.files.png.name
        out.append(f"- [{name}]({rel['png']}) ([SVG]({rel['svg']})): {fig.caption}")
    if view.notes:
        out += ["", "## Notes", ""] + [f"- {_escape(n)}" for n in view.notes]
    return "\n".join(out).rstrip() + "\n"
