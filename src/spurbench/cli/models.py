"""``spurbench models``: the model names spurbench knows (no weights are loaded)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from spurbench.cli.errors import friendly
from spurbench.cli.options import JsonOpt, ListedFamily
from spurbench.cli.output import console
from spurbench.terminal import print_json, print_table, records


@friendly
def models_cmd(
    pattern: Annotated[
        str | None, typer.Argument(help="Glob or substring, e.g. 'ViT-B-32*'.")
    ] = None,
    family: Annotated[ListedFamily | None, typer.Option(help="Only this family.")] = None,
    limit: Annotated[int, typer.Option(help="Rows to show (0 = all).")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List known model names (open_clip pairs, timm and torchvision weights)."""
    from spurbench.models import list_models

    df = list_models(pattern, None if family is None else str(family))
    shown = df if limit == 0 else df.head(limit)
    if as_json:
        print_json(records(shown[["name", "family", "arch", "pretrained"]]))
        return
    t = Table(title=escape(f"{len(df)} models" + (f" matching {pattern!r}" if pattern else "")))
    for col in ("name", "family", "arch", "pretrained"):
        t.add_column(col)
    for r in shown.itertuples():
        t.add_row(*(escape(str(v)) for v in (r.name, r.family, r.arch, r.pretrained)))
    print_table(console, t)
    if len(shown) < len(df):
        console.print(f"... {len(df) - len(shown)} more (use --limit 0).")
