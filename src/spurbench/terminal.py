"""Tables that stay readable at any terminal width.

rich fits a table to the terminal by wrapping and cutting cells, which at 80 columns turns a
class name into ``tria…`` and a reason into four broken lines. :func:`print_table` instead
prints the table as it is when it fits, and otherwise switches to a narrow layout: one block
per row, ``column  value`` per line, values wrapped at word boundaries and never cut.
Piped output (not a terminal) is not wrapped at all, so scripts and files get one line per row;
``spurbench --width N`` sets the width for both cases. Scripts should use ``--json`` instead
(:func:`print_json`): every command that prints a table takes it.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.rule import Rule
from rich.table import Table

#: The ``--json`` option of every command that prints a table.
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print the table(s) as JSON on stdout instead.")
]
#: ``--precision`` of every command that encodes images (see spurbench.models.precision).
PrecisionOpt = Annotated[
    str,
    typer.Option(
        help="Image pass: fp32 (exact, the papers' protocol), bf16 or fp16 autocast, or auto "
        "(bf16/fp16 on CUDA; on CPU bf16 only where measured faster here). Recorded per run."
    ),
]
#: ``--decode`` of the image pass (see spurbench.data.images.load_rgb).
DecodeOpt = Annotated[
    str,
    typer.Option(
        help="exact (every pixel, the default) or draft (JPEGs over twice the model's input "
        "side decoded at a reduced DCT scale: faster on large photos). Recorded per run."
    ),
]
#: ``--engine`` of the image pass (see spurbench.models.engine).
EngineOpt = Annotated[
    str,
    typer.Option(
        help="Image tower: eager PyTorch, onnx (ONNX Runtime, fp32 on CPU; spurbench[fast]), "
        "or auto (ONNX Runtime only where measured faster here). Recorded per run."
    ),
]
#: Width of output that is not a terminal: wide enough that no table wraps.
PIPED_WIDTH = 1000
_override: int | None = None


def set_width(width: int | None) -> None:
    """The width every table is printed at (None: the terminal's, or unlimited when piped)."""
    global _override
    _override = width


def output_width(console: Console) -> int:
    if _override is not None:
        return _override
    return console.width if console.is_terminal else PIPED_WIDTH


def print_table(console: Console, table: Table) -> None:
    """Print ``table`` whole if it fits the width, else one block per row (nothing cut)."""
    width = output_width(console)
    natural = console.measure(table, options=console.options.update_width(PIPED_WIDTH)).maximum
    before = console._width  # None: follow the terminal as it resizes
    console.width = width  # print(width=) can only narrow the console, not widen it
    try:
        console.print(*([table] if natural <= width else narrow_layout(table)))
    finally:
        console._width = before


def narrow_layout(table: Table) -> list:
    """The rows of ``table`` as blocks of ``header  value`` lines (for narrow terminals)."""
    headers = [str(c.header).strip() or f"column {i + 1}" for i, c in enumerate(table.columns)]
    cells = [list(c.cells) for c in table.columns]
    out: list = []
    if table.title:
        out.append(table.title)
    for row in range(table.row_count):
        out.append(Rule(style="dim"))
        block = Table.grid(padding=(0, 2))
        block.add_column(style="bold", no_wrap=True)
        block.add_column(overflow="fold")
        for header, column in zip(headers, cells, strict=True):
            value = column[row] if row < len(column) else ""
            if str(value).strip():
                block.add_row(header, value)
        out.append(block)
    return out


def records(df: Any) -> list[dict]:
    """A DataFrame as JSON-ready records (NaN as null, timestamps as ISO text)."""
    return json.loads(df.to_json(orient="records", date_format="iso", default_handler=str))


def print_json(obj: Any) -> None:
    """Machine-readable output: JSON alone on stdout, whatever the terminal."""
    sys.stdout.write(json.dumps(obj, indent=1, default=str) + "\n")
