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
from rich.markup import escape
from rich.table import Table

from spurbench.cli.errors import friendly
from spurbench.cli.options import (
    DEFAULT_STORE,
    SUITE_DATASETS,
    Baseline,
    EncodeOptions,
    JsonOpt,
    NameSet,
    NameSetOpt,
    StoreOpt,
    option_groups,
)
from spurbench.cli.output import console, err_console
from spurbench.errors import DatasetError
from spurbench.terminal import print_json, print_table, records

if TYPE_CHECKING:
    from spurbench.suite import BaselineSource, SuiteTable

_SHORT = {
    "imagenet": "ImageNet",
    "imagenet-v2": "V2",
    "imagenet-sketch": "Sketch",
    "imagenet-r": "R",
    "imagenet-a": "A",
    "objectnet": "ObjectNet",
}


@friendly
@option_groups(run=EncodeOptions)
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
        typer.Option("--datasets", help=f"Comma list among {', '.join(SUITE_DATASETS)} [all]."),
    ] = None,
    path: Annotated[
        list[str] | None,
        typer.Option("--path", help="NAME=DIR: where one dataset is, overriding --root."),
    ] = None,
    templates: Annotated[
        str, typer.Option(help="'openai' (80 prompts, as published), 'paper' or a file.")
    ] = "openai",
    name_set: NameSetOpt = NameSet.openai,
    objectnet_border: Annotated[
        int, typer.Option(help="Pixels cropped from each side of ObjectNet images (0: none).")
    ] = 2,
    baseline: Annotated[
        Baseline,
        typer.Option(
            help="ER baseline: 'auto' (published ImageNet-1k-only models: timm's, and "
            "imagenet-testbed's for ObjectNet and the mean; the store's own once it holds 20), "
            "'store', 'timm', 'testbed', or 'openclip' (a gap from the CLIP trend, not ER)."
        ),
    ] = Baseline.auto,
    store: StoreOpt = DEFAULT_STORE,
    run: EncodeOptions = EncodeOptions(),
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
    from spurbench.suite import locate_datasets, run_suite, suite_table

    models, paths = model or [], path or []
    info = err_console if as_json else console  # with --json, stdout holds the JSON alone
    names = datasets.split(",") if datasets else None
    overrides = _parse_paths(paths)
    if models:
        found, missing = locate_datasets(root, names, overrides)  # report before a model loads
        for message in missing.values():
            info.print(f"[yellow]skipped[/] {escape(message)}", highlight=False, soft_wrap=True)
        if not found:
            raise DatasetError("None of the suite's datasets was found (see above).")
    runtime = run.runtime(as_json)
    evaluated = set(models)  # as typed, and below as the store spells them
    for name in models:
        result = run_suite(
            name,
            root,
            datasets=names,
            paths=overrides,
            store=store,
            templates=templates,
            name_set=NameSet(name_set).value,
            objectnet_border=objectnet_border,
            runtime=runtime,
        )
        evaluated.add(result.model)
        done = ", ".join(f"{d} {_pct(a)}" for d, a in result.accuracy.items())
        info.print(f"[bold]{escape(result.model)}[/]: {escape(done)}", highlight=False)
    if not store.exists():
        raise DatasetError(f"No results store at {store}; evaluate a model first (-m NAME).")
    report = suite_table(store, baseline=cast("BaselineSource", Baseline(baseline).value))
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
    from spurbench.data.imagenet_shifts import REFERENCE, SHIFTS, SUITE

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
