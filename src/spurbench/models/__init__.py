"""Models from every zoo behind one contract (:class:`ModelAdapter`)."""

from spurbench.models.base import Features, LinearHead, ModelAdapter, PreprocessConfig
from spurbench.models.registry import create_model, list_models
from spurbench.models.spec import ModelSpec, parse_model_name

__all__ = [
    "Features",
    "LinearHead",
    "ModelAdapter",
    "ModelSpec",
    "PreprocessConfig",
    "create_model",
    "list_models",
    "parse_model_name",
]
