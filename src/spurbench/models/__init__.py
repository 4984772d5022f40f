"""Models from every zoo behind one contract (:class:`ModelAdapter`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from spurbench._lazy import lazy_exports

if TYPE_CHECKING:
    from spurbench.models.base import (
        AnswerScorer,
        Features,
        ImageModel,
        LinearHead,
        ModelAdapter,
        PreprocessConfig,
    )
    from spurbench.models.listing import list_models
    from spurbench.models.registry import create_model
    from spurbench.models.spec import ModelSpec, parse_model_name

#: name -> module; imported on first use, so the CLI's start-up does not load the stage.
_EXPORTS = {
    "AnswerScorer": "spurbench.models.base",
    "Features": "spurbench.models.base",
    "ImageModel": "spurbench.models.base",
    "LinearHead": "spurbench.models.base",
    "ModelAdapter": "spurbench.models.base",
    "PreprocessConfig": "spurbench.models.base",
    "create_model": "spurbench.models.registry",
    "list_models": "spurbench.models.listing",
    "ModelSpec": "spurbench.models.spec",
    "parse_model_name": "spurbench.models.spec",
}
lazy_exports(__name__, _EXPORTS)

__all__ = [
    "AnswerScorer",
    "Features",
    "ImageModel",
    "LinearHead",
    "ModelAdapter",
    "ModelSpec",
    "PreprocessConfig",
    "create_model",
    "list_models",
    "parse_model_name",
]
