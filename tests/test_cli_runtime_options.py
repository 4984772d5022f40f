"""The runtime options of ``probe`` and ``suite``: declared once, listed alike by both commands."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from spurbench.cli import app
from spurbench.cli.options import EncodeOptions
from spurbench.cli.probe import probe_cmd
from spurbench.cli.suite import suite_cmd

#: Flag → default of the options saying where and how images are encoded, as ``--help`` has
#: listed them since the options exist (None: the default is the Runtime's, named in the help).
RUNTIME = {
    "--batch-size": 64,
    "--workers": None,
    "--device": "cpu",
    "--precision": None,
    "--cache-dir": None,
    "--quiet": False,
    "--json": False,
}
COMMANDS = ("probe", "suite")


def _options(command: str) -> dict[str, Any]:
    params = typer.main.get_command(app).commands[command].params  # type: ignore[attr-defined]
    return {p.opts[0]: p for p in params}


def _described(command: str, param: Any) -> tuple:
    """What ``--help`` shows of an option (flags, metavar, help, default), and how it parses."""
    ctx = typer.Context(typer.main.get_command(app).commands[command])  # type: ignore[attr-defined]
    return (param.opts, param.secondary_opts, param.default, param.is_flag, param.multiple,
            param.required, param.get_help_record(ctx))  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS)
def test_help_lists_every_runtime_option_with_its_default(command):
    options = _options(command)
    assert {flag: options[flag].default for flag in RUNTIME if flag in options} == RUNTIME
    assert options["--quiet"].opts == ["--quiet", "-q"]
    shown = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "400"})
    assert shown.exit_code == 0, shown.output
    assert all(flag in shown.output for flag in RUNTIME)
    assert "[default: 64]" in shown.output and "[default: cpu]" in shown.output


def test_probe_and_suite_list_the_runtime_options_alike():
    probe, suite = _options("probe"), _options("suite")
    for flag in RUNTIME:
        assert _described("probe", probe[flag]) == _described("suite", suite[flag]), flag


def test_the_runtime_options_are_one_group():
    """Both commands take the group's fields (and ``--json``), so a field added to it reaches
    both; they are not declared again in either command."""
    fields = {f.name for f in dataclasses.fields(EncodeOptions)}
    assert {n.lstrip("-").replace("-", "_") for n in RUNTIME} == fields | {"json"}
    for command in (probe_cmd, suite_cmd):
        written = inspect.signature(inspect.unwrap(command)).parameters  # as in its module
        assert not fields & set(written)
        assert fields <= {p.name for p in inspect.signature(command).parameters.values()}
