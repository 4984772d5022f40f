"""spurbench: measure how much vision and vision-language models lean on spurious features.

The library API, usable from a notebook (the CLI is a thin layer over it)::

    import spurbench
    results = spurbench.evaluate("ViT-B-32,laion400m_e31", "~/data/CounterAnimal",
                                 protocols=["1v1000", "1v20"], store="spurbench.duckdb")
    results[0].summary          # balanced common / counter accuracy, drop, CIs
    spurbench.ResultsStore("spurbench.duckdb").summary()
    spurbench.load_results("spurbench.duckdb").metrics   # every table as a DataFrame
"""

from spurbench.data.classes import ClassList, imagenet_classes, resolve_templates
from spurbench.data.dataset import ImageDataset
from spurbench.data.layouts import open_dataset
from spurbench.errors import SpurbenchError
from spurbench.evaluate import RunResult, evaluate
from spurbench.features.cache import encode_dataset
from spurbench.models import ModelAdapter, create_model, list_models, parse_model_name
from spurbench.store import ResultsStore, load_results

__version__ = "0.1.0"

__all__ = [
    "ClassList",
    "ImageDataset",
    "ModelAdapter",
    "ResultsStore",
    "RunResult",
    "SpurbenchError",
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
