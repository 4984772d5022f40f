"""The consoles and number formats every command prints with."""

from __future__ import annotations

from typing import Any

from rich.console import Console

#: Tables and messages (stdout); tests widen it so that one table row is one line.
console = Console()
#: Progress and notes beside ``--json`` output, which keeps stdout for the JSON alone.
err_console = Console(stderr=True)


def pct(x: float) -> str:
    return f"{100 * x:.2f}"


def ci(row: Any) -> str:
    return f"[{100 * row.ci_low:.1f}, {100 * row.ci_high:.1f}]"


def opt_pct(x: Any) -> str:
    """A percentage, or empty for a missing value (None or NaN)."""
    return "" if x is None or x != x else pct(float(x))
