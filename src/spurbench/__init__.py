"""spurbench: measure how much vision and vision-language models lean on spurious features.

The library API, usable from a notebook (the CLI is a thin layer over it)::

    import spurbench
    results = spurbench.evaluate("ViT-B-32,laion400m_e31", "~/data/CounterAnimal",
                                 protocols=["1v1000", "1v20"], store="spurbench.duckdb")
    results[0].summary          # balanced common / counter accuracy, drop, CIs
    spurbench.ResultsStore("spurbench.duckdb").summary()
    spurbench.load_results("spurbench.duckdb").metrics   # every table as a DataFrame

Each stage has one entry point here: ``evaluate``, ``probe`` (Crabbé et al.'s representation
probes), ``run_suite`` (ImageNet shifts and effective robustness), ``curate`` (build a
CounterAnimal-style dataset), ``build_report`` (HTML report of a store) and ``theory`` (the
paper's linear CLIP model and Theorem 6.2's bounds).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from spurbench._lazy import lazy_exports

if TYPE_CHECKING:
    from spurbench.counterfactual import CounterfactualResult, counterfactual
    from spurbench.curate.pipeline import curate
    from spurbench.data.classes import ClassList, imagenet_classes, resolve_templates
    from spurbench.data.dataset import ImageDataset
    from spurbench.data.layouts import open_dataset
    from spurbench.data.spec import DataSpec
    from spurbench.errors import SpurbenchError
    from spurbench.evaluate import RunResult, evaluate
    from spurbench.features.cache import encode_dataset
    from spurbench.models import ModelAdapter, create_model, list_models, parse_model_name
    from spurbench.probes.run import probe
    from spurbench.report.html import build_report
    from spurbench.runtime import Runtime
    from spurbench.store import ResultsStore, load_results
    from spurbench.suite import run_suite
    from spurbench.synth import theory

__version__ = "0.1.0"

#: name -> module; imported on first use, so that ``import spurbench.cli`` (``--help``) is light.
_EXPORTS = {
    "CounterfactualResult": "spurbench.counterfactual",
    "counterfactual": "spurbench.counterfactual",
    "ClassList": "spurbench.data.classes",
    "imagenet_classes": "spurbench.data.classes",
    "resolve_templates": "spurbench.data.classes",
    "ImageDataset": "spurbench.data.dataset",
    "DataSpec": "spurbench.data.spec",
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
    "probe": "spurbench.probes.run",
    "run_suite": "spurbench.suite",
    "curate": "spurbench.curate.pipeline",
    "build_report": "spurbench.report.html",
    "Runtime": "spurbench.runtime",
    "theory": "spurbench.synth.theory",
}


lazy_exports(__name__, _EXPORTS)

__all__ = [
    "ClassList",
    "CounterfactualResult",
    "DataSpec",
    "ImageDataset",
    "ModelAdapter",
    "ResultsStore",
    "RunResult",
    "Runtime",
    "SpurbenchError",
    "build_report",
    "counterfactual",
    "create_model",
    "curate",
    "encode_dataset",
    "evaluate",
    "imagenet_classes",
    "list_models",
    "load_results",
    "open_dataset",
    "parse_model_name",
    "probe",
    "resolve_templates",
    "run_suite",
    "theory",
]
