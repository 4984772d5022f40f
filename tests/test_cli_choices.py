"""Options with a fixed set of values: listed in ``--help``, refused in one ``error:`` line.

The cases are found by walking the command tree, so an option added later with an enum type is
checked without editing this file; the walk itself is checked to find the known ones.
"""

from __future__ import annotations

import typing
from enum import Enum

import pytest
import typer
from typer.testing import CliRunner

from spurbench.cli import app
from spurbench.cli import options as O
from tests.reliability.expect import one_error_line

runner = CliRunner()

#: Options parsed by a function rather than an enum, and the values their message must list.
PARSED = {
    O.parse_protocols: [*(p.value for p in O.Protocol), O.BOTH],
    O.parse_mask_source: [*O.MASK_SOURCES, f"{O.SEGMENTATION}NAME"],
}


def _enum(annotation: object) -> type[Enum] | None:
    for a in (annotation, *typing.get_args(annotation)):  # Enum, or Enum | None
        if isinstance(a, type) and issubclass(a, Enum):
            return a
    return None


def _choice_options() -> list[tuple[tuple[str, ...], str, list[str]]]:
    """(command path, option flag, valid values) of every choice option of every command."""
    found = []

    def walk(command, path: tuple[str, ...]) -> None:
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, (*path, name))
        for param in command.params:
            descriptor = getattr(param, "type_descriptor", None)
            if descriptor is None or not param.opts[0].startswith("--"):
                continue
            enum = _enum(descriptor.annotation)
            parser = descriptor.parameter_info.parser
            if enum is not None:
                found.append((path, param.opts[0], [m.value for m in enum]))
            elif parser in PARSED:
                found.append((path, param.opts[0], PARSED[parser]))

    walk(typer.main.get_command(app), ())
    return found


CHOICES = _choice_options()


def test_the_walk_finds_every_known_choice_option():
    flags = {(" ".join(path), flag) for path, flag, _ in CHOICES}
    for command, flag in [
        ("eval", "--precision"), ("eval", "--engine"), ("eval", "--decode"),
        ("eval", "--score"), ("eval", "--protocol"), ("eval", "--backend"),
        ("eval", "--name-set"), ("probe", "--precision"), ("probe", "--protocol"),
        ("suite", "--precision"), ("suite", "--baseline"), ("results", "--format"),
        ("counterfactual", "--fill"), ("counterfactual", "--mask-source"),
        ("counterfactual", "--protocol"), ("report", "--transform"), ("models", "--family"),
        ("curate discover", "--protocol"), ("reproduce counteranimal", "--protocol"),
    ]:  # fmt: skip
        assert (command, flag) in flags


@pytest.mark.parametrize(
    ("path", "flag", "values"), CHOICES, ids=[f"{' '.join(p)} {f}" for p, f, _ in CHOICES]
)
def test_a_value_outside_the_choices_is_one_error_line_naming_them(path, flag, values):
    """The bad option comes first, so it is parsed before any required option is missed."""
    line = one_error_line(runner.invoke(app, [*path, flag, "no-such-value"]))
    assert flag in line and "'no-such-value'" in line
    assert all(f"'{v}'" in line for v in values), line


@pytest.mark.parametrize(
    ("path", "flag", "values"), CHOICES, ids=[f"{' '.join(p)} {f}" for p, f, _ in CHOICES]
)
def test_help_lists_the_choices(path, flag, values):
    out = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "400"})  # no wrapped metavar
    assert out.exit_code == 0, out.output
    assert all(v in out.output for v in values)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["eval", "--no-such-option"], "No such option: --no-such-option"),
        (["eval", "-d", "x"], "Missing option '--model'"),
        (["counterfactual", "-m", "x"], "Missing argument 'data'"),
        (["evl"], "No such command 'evl'. Did you mean 'eval'?"),
        (["curate", "discovr"], "No such command 'discovr'"),
        (["--width", "3", "models"], "--width"),
        (["demo", "--classes", "ten"], "--classes"),
    ],
)
def test_parse_errors_are_one_error_line_without_a_usage_box(args, message):
    out = runner.invoke(app, args)
    assert message in one_error_line(out)
    assert "Usage" not in out.output and "╭" not in out.output


def test_help_is_unchanged_by_the_error_hook():
    out = runner.invoke(app, ["--help"])
    assert out.exit_code == 0 and "Usage" in out.output and "eval" in out.output
    bare = runner.invoke(app, [])  # no arguments: the help, as typer's no_args_is_help does
    assert "Usage" in bare.output and "error:" not in bare.output


def test_a_caller_that_is_not_standalone_still_gets_the_exception():
    command = typer.main.get_command(app)
    with pytest.raises(Exception, match="fp64"):
        command.main(["eval", "--precision", "fp64"], standalone_mode=False)


def test_cli_choices_are_the_librarys():
    """The enums are declared in the CLI so that ``--help`` needs no stage; they must not drift."""
    from spurbench.counterfactual.masks import MASK_SOURCES
    from spurbench.counterfactual.variants import FILLS
    from spurbench.data.classes import NAME_SETS
    from spurbench.data.imagenet_shifts import SUITE_NAMES
    from spurbench.data.images import DECODES
    from spurbench.evaluate.protocols import PROTOCOLS
    from spurbench.features.ray_backend import BACKENDS
    from spurbench.models.engine import ENGINES
    from spurbench.models.lvlm import SCORES
    from spurbench.models.precision import PRECISIONS
    from spurbench.models.spec import FAMILY_TABLE
    from spurbench.reproduce import PROTOCOLS as PAPER_PROTOCOLS
    from spurbench.suite import BASELINE_SOURCES

    def values(enum: type[Enum]) -> set[str]:
        return {m.value for m in enum}

    assert values(O.Precision) == set(PRECISIONS)
    assert values(O.Engine) == set(ENGINES)
    assert values(O.Decode) == set(DECODES)
    assert values(O.Score) == set(SCORES)
    assert values(O.Protocol) == set(PROTOCOLS)
    assert values(O.ProbeProtocol) == {"auto", *PROTOCOLS}
    assert values(O.PaperProtocol) == {*PAPER_PROTOCOLS, O.BOTH}
    assert values(O.Fill) == set(FILLS)
    assert values(O.NameSet) == set(NAME_SETS)
    assert values(O.Backend) == set(BACKENDS)
    assert values(O.Baseline) == set(BASELINE_SOURCES)
    assert O.SUITE_DATASETS == SUITE_NAMES  # in order: the reference first
    assert {*O.MASK_SOURCES, f"{O.SEGMENTATION}NAME"} == set(MASK_SOURCES)
    assert values(O.ListedFamily) == {n for n, f in FAMILY_TABLE.items() if f.lister is not None}
