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

from spurbench.errors import Interrupted, SpurbenchError

err_console = Console(stderr=True)


def print_error(e: BaseException) -> None:
    """The one ``error:`` line; the message is escaped (it quotes user paths and names)."""
    err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn input errors into a one-line message and exit code 2 (no traceback); Ctrl-C into
    one line saying what was kept, and exit code 130."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SpurbenchError as e:
            print_error(e)
            raise typer.Exit(2) from None
        except KeyboardInterrupt as e:  # Ctrl-C: say what survives, exit as Unix does
            kept = (
                str(e)
                if isinstance(e, Interrupted)
                else "completed work was kept; rerun the same command to resume"
            )
            err_console.print(f"interrupted: {escape(kept)}", highlight=False, soft_wrap=True)
            raise typer.Exit(130) from None

    return wrapper
