"""How every spurbench command reports bad input: one line on stderr and exit code 2.

Two doors, one form: :func:`friendly` wraps each command body (errors the library raises), and
:class:`OneLineErrorGroup` is the application's group, so the errors the option parser raises
(a value outside a choice, an unknown option, a missing argument) read the same way instead of
as typer's usage panel.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from typer._click.exceptions import ClickException, NoArgsIsHelpError
from typer.core import TyperGroup
from typer.exceptions import Abort

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


class OneLineErrorGroup(TyperGroup):
    """The root command group: parse errors of any subcommand become one ``error:`` line.

    Typer's standalone mode prints a usage box for a :class:`ClickException`; this group runs the
    parser non-standalone and prints the exception's own message instead (it already names the
    option and, for a choice, the valid values), with the exception's exit code (2 for usage
    errors). ``--help`` and a bare ``spurbench`` (help, no error) are unchanged.
    """

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:  # a caller handling exceptions itself gets them raw
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except NoArgsIsHelpError as e:  # the help is already printed; exit as typer does
            sys.exit(e.exit_code)
        except ClickException as e:
            print_error(_plain(e.format_message()))
            sys.exit(e.exit_code)
        except Abort:
            err_console.print("Aborted!", highlight=False)
            sys.exit(1)
        # non-standalone, typer returns the code of a typer.Exit, or the command's return value
        sys.exit(code if isinstance(code, int) else 0)


def _plain(message: str) -> str:
    """Drop the validation library's "Value error, " prefix from typer's choice messages."""
    return message.replace("Value error, ", "")
