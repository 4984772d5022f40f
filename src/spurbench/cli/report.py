"""``spurbench report``: option parsing for :func:`spurbench.report.html.build_report`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from spurbench.cli.errors import friendly
from spurbench.cli.options import DEFAULT_STORE, StoreOpt, Transform
from spurbench.cli.output import console

__all__ = ["report_cmd"]


@friendly
def report_cmd(
    store: StoreOpt = DEFAULT_STORE,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Report folder (index.html, figures/, ...).")
    ] = Path("spurbench_out/report"),
    with_published: Annotated[
        bool,
        typer.Option(
            "--with-published/--no-published",
            help="Place ImageNet-label runs (1v1000, 1v20) among the published CounterAnimal "
            "models.",
        ),
    ] = True,
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", help="Only models matching this glob or substring; repeat."),
    ] = None,
    thumbnails: Annotated[
        bool, typer.Option("--thumbnails/--no-thumbnails", help="Embed image thumbnails.")
    ] = True,
    transform: Annotated[
        Transform, typer.Option(help="Axis scale of the trends.")
    ] = Transform.logit,
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples of the trend bands.")] = 1000,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Write into a non-empty folder that is not an earlier report (its files are "
            "kept; index.html, summary.md and models.csv are replaced).",
        ),
    ] = False,
    open_: Annotated[
        bool, typer.Option("--open", help="Open the report in the default browser.")
    ] = False,
) -> None:
    """Write a self-contained HTML report of a results store, with PNG/SVG figures and summary.md.

    Examples:

        spurbench report --store spurbench.duckdb --out report/

        spurbench report -m 'ViT-B-32*' -m resnet50 --no-published --open
    """
    from spurbench.errors import SpurbenchError
    from spurbench.report.html import ReportOptions, build_report

    if n_boot < 10:
        raise SpurbenchError(f"--n-boot must be at least 10, got {n_boot}.")
    options = ReportOptions(
        models=model or None,
        with_published=with_published,
        thumbnails=thumbnails,
        transform=str(transform),  # type: ignore[arg-type]
        n_boot=n_boot,
    )
    result = build_report(store, out, options, force=force)
    console.print(
        f"Report of {len(result.data.runs)} runs: [bold]{escape(str(result.html))}[/]\n"
        + escape(
            f"Summary: {result.summary} · table: {result.table} · "
            f"{len(result.figures)} figure files in {result.html.parent / 'figures'}"
        ),
        highlight=False,
    )
    if open_:
        import webbrowser

        webbrowser.open(result.html.resolve().as_uri())
