"""``spurbench suite``: the ImageNet distribution-shift suite from the command line.

A thin layer over :func:`spurbench.suite.run_suite` and :func:`spurbench.suite.suite_table`;
``spurbench.cli`` registers :func:`suite_cmd` (``app.command("suite")(suite_cmd)``). Input errors
print one line and exit with code 2, as every spurbench command does.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from spurbench.cli_errors import print_error
from spurbench.data.imagenet_shifts import REFERENCE, SHIFTS, SUITE, SUITE_NAMES
from spurbench.errors import DatasetError, SpurbenchError
from spurbench.terminal import JsonOpt, PrecisionOpt, print_json, print_table, records

if TYPE_CHECKING:
    from spurbench.suite import BaselineSource, SuiteTable

console = Console()
err_console = Console(stderr=True)

_SHORT = {
    "imagenet": "ImageNet",
    "imagenet-v2": "V2",
    "imagenet-sketch": "Sketch",
    "imagenet-r": "R",
    "imagenet-a": "A",
    "objectnet": "ObjectNet",
}


def suite_cmd(
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", help="Model name; repeat for several. None: table only."),
    ] = None,
    root: Annotated[
        Path | None,
        typer.Option(
            "--root",
            help="Folder holding the datasets under their usual names (imagenet/val, "
            "imagenetv2-matched-frequency-format-val, sketch, imagenet-r, imagenet-a, "
            "objectnet-1.0).",
        ),
    ] = None,
    datasets: Annotated[
        str | None,
        typer.Option("--datasets", help=f"Comma list among {', '.join(SUITE_NAMES)} [all]."),
    ] = None,
    path: Annotated[
        list[str] | None,
        typer.Option("--path", help="NAME=DIR: where one dataset is, overriding --root."),
    ] = None,
    templates: Annotated[
        str, typer.Option(help="'openai' (80 prompts, as published), 'paper' or a file.")
    ] = "openai",
    name_set: Annotated[
        str, typer.Option(help="ImageNet class names: 'openai' or 'wordnet'.")
    ] = "openai",
    objectnet_border: Annotated[
        int, typer.Option(help="Pixels cropped from each side of ObjectNet images (0: none).")
    ] = 2,
    baseline: Annotated[
        str,
        typer.Option(
            help="ER baseline: 'auto' (published ImageNet-1k-only models: timm's, and "
            "imagenet-testbed's for ObjectNet and the mean; the store's own once it holds 20), "
            "'store', 'timm', 'testbed', or 'openclip' (a gap from the CLIP trend, not ER)."
        ),
    ] = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per forward pass.")] = 64,
    workers: Annotated[
        int | None,
        typer.Option(help="DataLoader decode workers [default: 2 on CPU, or SPURBENCH_WORKERS]."),
    ] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1, mps.")] = "cpu",
    precision: PrecisionOpt = "fp32",
    store: Annotated[Path, typer.Option("--store", help="Results database (DuckDB).")] = Path(
        "spurbench.duckdb"
    ),
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            "--cache-dir", help="Feature cache [default: $SPURBENCH_CACHE or ~/.cache/spurbench]."
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Evaluate models on the ImageNet distribution shifts present, then print accuracies and
    effective robustness for every model in the store.

    Missing datasets are skipped and listed with where to get them; spurbench never downloads.

    Examples:

        spurbench suite -m ViT-B-32,laion400m_e31 --root ~/data

        spurbench suite -m timm:resnet50.a1_in1k --root ~/data --datasets imagenet,imagenet-r
          --path imagenet=/datasets/ILSVRC2012/val
    """
    try:
        _run(
            model or [],
            root,
            datasets,
            path or [],
            templates,
            name_set,
            objectnet_border,
            baseline,
            batch_size,
            workers,
            device,
            store,
            cache_dir,
            quiet,
            as_json,
            precision,
        )
    except SpurbenchError as e:
        print_error(e)
        raise typer.Exit(2) from None


def _run(
    models: list[str],
    root: Path | None,
    datasets: str | None,
    paths: list[str],
    templates: str,
    name_set: str,
    objectnet_border: int,
    baseline: str,
    batch_size: int,
    workers: int | None,
    device: str,
    store: Path,
    cache_dir: Path | None,
    quiet: bool,
    as_json: bool = False,
    precision: str = "fp32",
) -> None:
    from spurbench.models.precision import check_precision
    from spurbench.suite import BASELINE_SOURCES, locate_datasets, run_suite, suite_table

    check_precision(precision)
    info = err_console if as_json else console  # with --json, stdout holds the JSON alone
    names = datasets.split(",") if datasets else None
    overrides = _parse_paths(paths)
    if baseline not in BASELINE_SOURCES:
        choices = ", ".join(BASELINE_SOURCES)
        raise DatasetError(f"--baseline must be one of {choices}, not {baseline!r}.")
    if models:
        found, missing = locate_datasets(root, names, overrides)  # report before a model loads
        for message in missing.values():
            info.print(f"[yellow]skipped[/] {escape(message)}", highlight=False, soft_wrap=True)
        if not found:
            raise DatasetError("None of the suite's datasets was found (see above).")
    evaluated = set(models)  # as typed, and below as the store spells them
    for name in models:
        result = run_suite(
            name,
            root,
            datasets=names,
            paths=overrides,
            store=store,
            cache_dir=cache_dir,
            templates=templates,
            name_set=name_set,
            batch_size=batch_size,
            num_workers=workers,
            device=device,
            objectnet_border=objectnet_border,
            show_progress=not (quiet or as_json),
            precision=precision,
        )
        evaluated.add(result.model)
        done = ", ".join(f"{d} {_pct(a)}" for d, a in result.accuracy.items())
        info.print(f"[bold]{escape(result.model)}[/]: {escape(done)}", highlight=False)
    if not store.exists():
        raise DatasetError(f"No results store at {store}; evaluate a model first (-m NAME).")
    report = suite_table(store, baseline=cast("BaselineSource", baseline))
    if as_json:
        print_json({"models": records(report.table), "notes": list(report.notes())})
        return
    _print_table(report, evaluated)
    console.print(f"Results stored in [bold]{escape(str(store))}[/].")


def _parse_paths(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, folder = item.partition("=")
        if not sep or not folder:
            raise DatasetError(
                f"--path takes NAME=DIR (e.g. imagenet-r=~/data/imagenet-r): {item!r}"
            )
        out[name.strip()] = folder.strip()
    return out


def _pct(value: float) -> str:
    return "–" if value is None or math.isnan(value) else f"{100 * value:.1f}"


def _pts(value: float) -> str:
    return "–" if value is None or math.isnan(value) else f"{100 * value:+.1f}"


def _print_table(report: SuiteTable, highlight: set[str]) -> None:
    table = report.table
    if table.empty:
        console.print("No suite results in the store yet.")
        return
    t = Table(
        title="ImageNet distribution shifts: top-1 accuracy (%) and effective robustness (points)",
        title_justify="left",
    )
    t.add_column("model", overflow="fold")
    for name in (REFERENCE, *SHIFTS):
        t.add_column(_SHORT.get(name, SUITE[name].title), justify="right")
    t.add_column("mean shift", justify="right")
    mean_col = f"{report.prefix}mean"
    t.add_column("ER mean" if report.prefix == "er_" else "gap vs CLIP trend", justify="right")
    t.add_column("baseline", overflow="fold")
    for _, row in table.iterrows():
        name = escape(str(row["model"]))
        label = f"[bold]{name}[/]" if row["model"] in highlight else name
        if row["zero_shot"]:
            label += " [dim](zero-shot)[/]"
        cells = [_pct(row[n]) for n in (REFERENCE, *SHIFTS)]
        mean = _pct(row["mean_shift"])
        if 0 < row["n_shifts"] < len(SHIFTS):
            mean += f" [dim]({row['n_shifts']})[/]"
        t.add_row(label, *cells, mean, _pts(row[mean_col]), row[f"{mean_col}_baseline"] or "–")
    print_table(console, t)
    for line in report.notes():
        console.print(f"[dim]{escape(line)}[/]", highlight=False, soft_wrap=True)
    for model in sorted(highlight):
        for line in report.standing(model):
            console.print(escape(line), highlight=False, soft_wrap=True)
