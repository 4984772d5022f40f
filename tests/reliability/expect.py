"""What every refused input must look like on the command line: one ``error:`` line, exit 2."""

from __future__ import annotations

from typing import Any


def one_error_line(result: Any) -> str:
    """The single stderr line of a CliRunner result that exited 2 (fails the test otherwise)."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    return lines[0]
