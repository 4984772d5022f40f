"""A synthetic spurious world with a known, planted shortcut, and tiny models trained on it.

:mod:`spurbench.synth.world` writes the world (animals as coloured shapes on textured
backgrounds, CounterAnimal's common/counter split planted with strength ``rho``);
:mod:`spurbench.synth.train` trains a tiny CLIP, a tiny supervised classifier and a fine-tuned
CLIP on it and saves them as ordinary open_clip / timm ``local-dir:`` checkpoints. Together they
give spurbench a ground truth to test its measurements against.

The names below are imported lazily (PEP 562), so ``import spurbench.synth.world`` or a sibling
module that needs only numpy does not pay for importing torch, open_clip and timm.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "BACKGROUND_NAMES": "render",
    "ForegroundSpec": "render",
    "foreground_spec": "render",
    "render_image": "render",
    "COUNTERANIMAL_CLASSES": "world",
    "COUNTERANIMAL_INDICES": "world",
    "World": "world",
    "WorldConfig": "world",
    "generate_world": "world",
    "plan_world": "world",
    "planted_pair": "world",
    "train_background_probs": "world",
    "TINY_CLASSIFIER": "train",
    "TINY_CLIP": "train",
    "TINY_CLIP_FT": "train",
    "TINY_CLIP_FT_CONTRASTIVE": "train",
    "ZOO_MODELS": "train",
    "TrainConfig": "train",
    "TrainedModel": "train",
    "finetune_tiny_clip": "train",
    "load_open_clip": "train",
    "save_open_clip": "train",
    "save_timm": "train",
    "train_tiny_classifier": "train",
    "train_tiny_clip": "train",
    "train_zoo": "train",
    "zoo_dir": "train",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
