"""``spurbench reproduce counteranimal | imagenet-shifts``: published tables on your data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from spurbench.cli.errors import friendly
from spurbench.cli.options import (
    DEFAULT_STORE,
    JsonOpt,
    PaperProtocol,
    RunOptions,
    StoreOpt,
    option_groups,
)
from spurbench.cli.output import console, err_console
from spurbench.terminal import print_json, print_table, records

reproduce_app = typer.Typer(help="Reproduce a paper's published numbers in one command.")

ModelsOpt = Annotated[
    list[str] | None,
    typer.Option("--models", help="Only published models matching this glob; repeat for several."),
]
WeightsMapOpt = Annotated[
    Path | None,
    typer.Option(help="JSON {published name: model spec} or CSV name,weights: local checkpoints."),
]


@reproduce_app.command("counteranimal")
@friendly
@option_groups(run=RunOptions)
def counteranimal_cmd(
    data: Annotated[Path, typer.Option("--data", "-d", help="The CounterAnimal release folder.")],
    models: ModelsOpt = None,
    weights_map: WeightsMapOpt = None,
    protocol: Annotated[
        PaperProtocol, typer.Option(help="1v1000, 1v20 or both.")
    ] = PaperProtocol.both,
    store: StoreOpt = DEFAULT_STORE,
    run: RunOptions = RunOptions(),
    as_json: JsonOpt = False,
) -> None:
    """The CounterAnimal paper's models under its protocols: ours, published, difference.

    Differences larger than our bootstrap interval are flagged (!). Models whose weights cannot
    be had are listed with how to get them; the rest still run, and a rerun reuses the cache.

    Example: spurbench reproduce counteranimal -d ~/data/CounterAnimal --models 'ViT-B-32,*'
    """
    from spurbench.data.layouts import open_dataset
    from spurbench.reproduce import paper_models, read_weights_map, reproduce_counteranimal

    protocols = ("1v1000", "1v20") if protocol == PaperProtocol.both else (str(protocol),)
    known = set(paper_models()["model_name"])
    mapping = read_weights_map(weights_map, known) if weights_map else None
    dataset = open_dataset(data)  # before any model loads
    _reproduce(reproduce_counteranimal, dataset, models, mapping, store, run, as_json,
               protocols=protocols)  # fmt: skip


@reproduce_app.command("imagenet-shifts")
@friendly
@option_groups(run=RunOptions)
def imagenet_shifts_cmd(
    root: Annotated[
        Path | None, typer.Option(help="Folder holding the suite's datasets (see `suite`).")
    ] = None,
    models: ModelsOpt = None,
    weights_map: WeightsMapOpt = None,
    templates: Annotated[
        str, typer.Option(help="'openai' (80 prompts, as published), 'paper' or a file.")
    ] = "openai",
    store: StoreOpt = DEFAULT_STORE,
    run: RunOptions = RunOptions(),
    as_json: JsonOpt = False,
) -> None:
    """ImageNet and its shifts (V2, Sketch, R, A, ObjectNet): ours / published / difference.

    Published: open_clip's zero-shot results and timm's. A published accuracy outside our 95%
    Clopper–Pearson interval is flagged (!).

    Example: spurbench reproduce imagenet-shifts --root ~/data --models 'ViT-B-32,*'
    """
    from spurbench.reproduce import read_weights_map, reproduce_imagenet_shifts, shift_models

    known = set(shift_models()["model"])
    mapping = read_weights_map(weights_map, known) if weights_map else None
    _reproduce(reproduce_imagenet_shifts, root, models, mapping, store, run, as_json,
               templates=templates)  # fmt: skip


def _reproduce(
    reproduction, target, models, weights_map, store: Path, run: RunOptions, as_json: bool, **kw
):
    """Run one reproduction, then print its table (or JSON) and what could not be run."""
    info = err_console if as_json else console  # with --json, stdout holds the JSON alone
    result = reproduction(
        target,
        models=models,
        weights_map=weights_map,
        notify=lambda line: info.print(line, highlight=False),
        store=store,
        show_progress=run.shows_progress(as_json),
        cache_dir=run.cache_dir,
        batch_size=run.batch_size,
        device=run.device,
        **kw,
    )
    if as_json:
        print_json({"comparison": records(result.comparison), "unavailable": result.unavailable})
        return
    _print(result.comparison)
    for name, reason in result.unavailable.items():
        console.print(f"[yellow]not run[/] {name}: {reason}", highlight=False)
    console.print(f"Runs stored in [bold]{store}[/].")


def _print(comparison) -> None:
    """One row per (model, protocol or dataset), one column per compared quantity."""
    t = Table(
        title="ours / published / difference (%; ! = published outside our 95% interval)",
        title_justify="left",
    )
    quantities = list(dict.fromkeys(comparison["quantity"]))
    for col in ("model", "protocol", *quantities):
        t.add_column(col, justify="right" if col in quantities else "left")
    for (model, protocol), rows in comparison.groupby(["model", "protocol"], sort=False):
        cells = []
        for quantity in quantities:
            r = rows[rows["quantity"] == quantity]
            if r.empty:
                cells.append("")
                continue
            r = r.iloc[0]
            mark = " !" if r["flagged"] else ""
            cells.append(f"{r['ours']:.1f} / {r['published']:.1f} / {r['difference']:+.1f}{mark}")
        t.add_row(model, protocol, *cells)
    print_table(console, t)
