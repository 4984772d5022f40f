"""Protocols, metrics and the evaluation runner."""

from __future__ import annotations

from typing import TYPE_CHECKING

from spurbench._lazy import lazy_exports

if TYPE_CHECKING:
    from spurbench.evaluate.label_space import LabelSpace
    from spurbench.evaluate.runner import evaluate
    from spurbench.evaluate.scoring import RunResult, Scores

#: name -> module; imported on first use, so the CLI's start-up does not load the stage.
_EXPORTS = {
    "LabelSpace": "spurbench.evaluate.label_space",
    "RunResult": "spurbench.evaluate.scoring",
    "Scores": "spurbench.evaluate.scoring",
    "evaluate": "spurbench.evaluate.runner",
}
lazy_exports(__name__, _EXPORTS)

__all__ = ["LabelSpace", "RunResult", "Scores", "evaluate"]
