"""spurbench: measure how much vision and vision-language models lean on spurious features.

The library API, usable from a notebook (the CLI is a thin layer over it)::

    import spurbench
    results = spurbench.evaluate("ViT-B-32,laion400m_e31", "~/data/CounterAnimal",
                                 protocols=["1v1000", "1v20"], store="spurbench.duckdb")
    results[0].summary          # balanced common / counter accuracy, drop, CIs
    spurbench.ResultsStore("spurbench.duckdb").summary()
    spurbench.load_results("spurbench.duckdb").metrics   # every table as a DataFrame
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from spurbench._lazy import lazy_exports

if TYPE_CHECKING:
    from spurbench.counterfactual import CounterfactualResult, counterfactual
    from spurbench.data.classes import ClassList, imagenet_classes, resolve_templates
    from spurbench.data.dataset import ImageDataset
    from spurbench.data.layouts import open_dataset
    from spurbench.errors import SpurbenchError
    from spurbench.evaluate import RunResult, evaluate
    from spurbench.features.cache import encode_dataset
    from spurbench.models import ModelAdapter, create_model, list_models, parse_model_name
    from spurbench.store import ResultsStore, load_results

__version__ = "0.1.0"

#: name -> module; imported on first use, so that ``import spurbench.cli`` (``--help``) is light.
_EXPORTS = {
    "CounterfactualResult": "spurbench.counterfactual",
    "counterfactual": "spurbench.counterfactual",
    "ClassList": "spurbench.data.classes",
    "imagenet_classes": "spurbench.data.classes",
    "resolve_templates": "spurbench.data.classes",
    "ImageDataset": "spurbench.data.dataset",
    "open_dataset": "spurbench.data.layouts",
    "SpurbenchError": "spurbench.errors",
    "RunResult": "spurbench.evaluate",
    "evaluate": "spurbench.evaluate",
    "encode_dataset": "spurbench.features.cache",
    "ModelAdapter": "spurbench.models",
    "create_model": "spurbench.models",
    "list_models": "spurbench.models",
    "parse_model_name": "spurbench.models",
    "ResultsStore": "spurbench.store",
    "load_results": "spurbench.store",
}


lazy_exports(__name__, _EXPORTS)

__all__ = [
    "ClassList",
    "CounterfactualResult",
    "ImageDataset",
    "ModelAdapter",
    "ResultsStore",
    "RunResult",
    "SpurbenchError",
    "counterfactual",
    "create_model",
    "encode_dataset",
    "evaluate",
    "imagenet_classes",
    "list_models",
    "load_results",
    "open_dataset",
    "parse_model_name",
    "resolve_templates",
]
