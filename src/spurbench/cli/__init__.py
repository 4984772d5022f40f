"""The ``spurbench`` command line: a thin layer that parses options, calls the library, prints.

``app`` (the Typer application) and ``main`` live in :mod:`spurbench.cli.app`; one module per
command; options shared by several commands are declared once in :mod:`spurbench.cli.options`,
and every command reports bad input through :func:`spurbench.cli.errors.friendly`.
"""

from spurbench.cli.app import app, main
from spurbench.cli.output import console

__all__ = ["app", "console", "main"]
