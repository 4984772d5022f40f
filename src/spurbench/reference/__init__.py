"""Published reference numbers (CounterAnimal, open_clip results) shipped as package data."""

from spurbench.reference.testbed import (
    load_counteranimal_classes,
    load_counteranimal_models,
    load_openclip_results,
)

__all__ = ["load_counteranimal_classes", "load_counteranimal_models", "load_openclip_results"]
