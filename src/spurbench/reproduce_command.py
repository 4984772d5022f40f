"""``spurbench reproduce counteranimal``: the paper's table on your copy of the data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from spurbench.cli_errors import friendly
from spurbench.terminal import JsonOpt, print_json, print_table, records

reproduce_app = typer.Typer(help="Reproduce a paper's published numbers in one command.")
console = Console()
err_console = Console(stderr=True)


@reproduce_app.command("counteranimal")
@friendly
def counteranimal_cmd(
    data: Annotated[Path, typer.Option("--data", "-d", help="The CounterAnimal release folder.")],
    models: Annotated[
        list[str] | None,
        typer.Option(
            "--models", help="Only the paper's models matching this glob; repeat for several."
        ),
    ] = None,
    weights_map: Annotated[
        Path | None,
        typer.Option(help="JSON {paper name: model spec} or CSV name,weights: local checkpoints."),
    ] = None,
    protocol: Annotated[str, typer.Option(help="1v1000, 1v20 or both.")] = "both",
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 64,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1, mps.")] = "cpu",
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
    """The CounterAnimal paper's models under its protocols: ours, published, difference.

    Differences larger than our bootstrap interval are flagged (!). Models whose weights cannot
    be had are listed with how to get them; the rest still run, and a rerun reuses the cache.

    Example: spurbench reproduce counteranimal -d ~/data/CounterAnimal --models 'ViT-B-32,*'
    """
    from spurbench.data.layouts import open_dataset
    from spurbench.reproduce import paper_models, read_weights_map, reproduce_counteranimal

    protocols = ("1v1000", "1v20") if protocol == "both" else (protocol,)
    known = set(paper_models()["model_name"])
    mapping = read_weights_map(weights_map, known) if weights_map else None
    dataset = open_dataset(data)  # before any model loads
    info = err_console if as_json else console
    result = reproduce_counteranimal(
        dataset,
        models=models,
        weights_map=mapping,
        protocols=protocols,
        notify=lambda line: info.print(line, highlight=False),
        store=store,
        cache_dir=cache_dir,
        batch_size=batch_size,
        device=device,
        show_progress=not (quiet or as_json),
    )
    if as_json:
        print_json({"comparison": records(result.comparison), "unavailable": result.unavailable})
        return
    _print(result.comparison)
    for name, reason in result.unavailable.items():
        console.print(f"[yellow]not run[/] {name}: {reason}", highlight=False)
    console.print(f"Runs stored in [bold]{store}[/].")


def _print(comparison) -> None:
    t = Table(
        title="CounterAnimal: ours / published / difference (class-balanced %, "
        "! = published outside our 95% bootstrap interval)",
        title_justify="left",
    )
    t.add_column("model")
    t.add_column("protocol")
    for quantity in ("common", "counter", "drop"):
        t.add_column(quantity, justify="right")
    for (model, protocol), rows in comparison.groupby(["model", "protocol"], sort=False):
        cells = []
        for quantity in ("common", "counter", "drop"):
            r = rows[rows["quantity"] == quantity].iloc[0]
            mark = " !" if r["flagged"] else ""
            cells.append(f"{r['ours']:.1f} / {r['published']:.1f} / {r['difference']:+.1f}{mark}")
        t.add_row(model, protocol, *cells)
    print_table(console, t)
