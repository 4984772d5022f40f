"""How every spurbench command reports bad input: one line on stderr and exit code 2.

One decorator for all commands (``spurbench.cli`` and the stage commands it registers), kept
outside ``cli`` so stage modules can import it without a circular import.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from spurbench.errors import SpurbenchError

err_console = Console(stderr=True)


def print_error(e: BaseException) -> None:
    """The one ``error:`` line; the message is escaped (it quotes user paths and names)."""
    err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn input errors into a one-line message and exit code 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SpurbenchError as e:
            print_error(e)
            raise typer.Exit(2) from None

    return wrapper
