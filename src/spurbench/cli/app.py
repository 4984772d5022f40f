"""The ``spurbench`` Typer application: every command registered in one place.

Each command lives in its own module of this package (parse options, call the library, print);
input errors (:class:`~spurbench.errors.SpurbenchError`, and the parser's: a value outside an
option's choices, an unknown option) end as one ``error:`` line and exit code 2, never as a
traceback or a usage box (:mod:`spurbench.cli.errors`). Nothing here imports torch
or a stage, so ``spurbench --help`` starts fast: commands import the library when they run.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from spurbench.cli.candidates import candidates_cmd
from spurbench.cli.counterfactual import counterfactual_cmd
from spurbench.cli.curate import curate_app
from spurbench.cli.demo import demo_cmd
from spurbench.cli.errors import OneLineErrorGroup
from spurbench.cli.eval import eval_cmd
from spurbench.cli.models import models_cmd
from spurbench.cli.probe import probe_cmd
from spurbench.cli.report import report_cmd
from spurbench.cli.reproduce import reproduce_app
from spurbench.cli.results import import_results_cmd, results_cmd
from spurbench.cli.suite import suite_cmd
from spurbench.cli.theory import theory_cmd
from spurbench.terminal import set_width

app = typer.Typer(
    cls=OneLineErrorGroup,  # parse errors too are one ``error:`` line, not a usage box
    name="spurbench",
    help="How much does a vision or vision-language model lean on spurious features, and why?",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)


@app.callback()
def _options(
    width: Annotated[
        int | None,
        typer.Option(
            "--width",
            min=20,
            help="Table width in characters [default: the terminal's; unlimited when piped].",
        ),
    ] = None,
) -> None:
    """How much does a vision or vision-language model lean on spurious features, and why?"""
    set_width(width)


app.command("eval")(eval_cmd)
app.command("results")(results_cmd)
app.command("import-results")(import_results_cmd)
app.command("candidates")(candidates_cmd)
app.command("models")(models_cmd)
app.command("demo")(demo_cmd)
app.command("theory")(theory_cmd)
app.command("probe")(probe_cmd)
app.command("counterfactual")(counterfactual_cmd)
app.command("report")(report_cmd)
app.command("suite")(suite_cmd)
app.add_typer(curate_app, name="curate")
app.add_typer(reproduce_app, name="reproduce")


def main() -> None:  # pragma: no cover - entry point
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover
    main()
