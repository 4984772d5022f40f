"""Protocols, metrics and the evaluation runner."""

from spurbench.evaluate.runner import RunResult, evaluate

__all__ = ["RunResult", "evaluate"]
