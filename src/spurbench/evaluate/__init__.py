"""Protocols, metrics and the evaluation runner."""

from __future__ import annotations

from typing import TYPE_CHECKING

from spurbench._lazy import lazy_exports

if TYPE_CHECKING:
    from spurbench.evaluate.runner import RunResult, evaluate

#: name -> module; imported on first use, so the CLI's start-up does not load the stage.
_EXPORTS = {
    "RunResult": "spurbench.evaluate.runner",
    "evaluate": "spurbench.evaluate.runner",
}
lazy_exports(__name__, _EXPORTS)

__all__ = ["RunResult", "evaluate"]
