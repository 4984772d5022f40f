"""Published reference numbers (CounterAnimal, open_clip and timm results) shipped as package
data."""

from spurbench.reference.testbed import (
    load_counteranimal_classes,
    load_counteranimal_models,
    load_openclip_results,
    load_timm_results,
    timm_in1k_only,
    timm_training_data,
)

__all__ = [
    "load_counteranimal_classes",
    "load_counteranimal_models",
    "load_openclip_results",
    "load_timm_results",
    "timm_in1k_only",
    "timm_training_data",
]
