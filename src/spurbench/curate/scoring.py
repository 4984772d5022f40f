"""Per-image predictions of a model on a pool, through spurbench's own scoring pipeline.

Curation scores the same pool with the same models several times (label-noise check, spurious
discovery, held-out models, diagnosis). Every call goes through the evaluation's label space,
head and scorer (:mod:`spurbench.evaluate.scoring`) on the *whole* pool, so images are encoded
once per model (the feature cache keys on the image files, not on labels or on which rows are
excluded) and the predictions are exactly those ``spurbench eval`` would make; rows are filtered
afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import softmax

from spurbench.data.dataset import ImageDataset
from spurbench.errors import ClassListError
from spurbench.evaluate import protocols as P
from spurbench.evaluate.label_space import LabelSpace, label_space
from spurbench.evaluate.runner import checked_cache, run_templates
from spurbench.evaluate.scoring import (
    Scores,
    predictions,
    restricted_head,
    score_features,
    skipped,
)
from spurbench.models.base import ModelAdapter
from spurbench.models.registry import create_classifier
from spurbench.runtime import Runtime, runtime_from

AUTO_PROTOCOL = "auto"


def resolve_protocol(protocol: str, dataset: ImageDataset) -> str:
    """``auto`` is the paper's 1-vs-1000 for ImageNet labels, else 1-vs-N (the pool's classes)."""
    if protocol == AUTO_PROTOCOL:
        return "1v1000" if dataset.classes.is_imagenet else "1vN"
    P.check_protocol(protocol, dataset)
    return protocol


@dataclass
class Predictions:
    """One model's predictions on every readable image of a pool."""

    model: str
    fingerprint: str
    protocol: str
    #: image_id, label, topk_labels, correct, p_true (one row per readable image)
    table: pd.DataFrame
    #: image_id, reason (images the encoder could not read)
    skipped: pd.DataFrame


class ModelCache:
    """Load each named model once per curation run (several steps use the same references)."""

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self._models: dict[str, ModelAdapter] = {}

    def get(self, model: str | ModelAdapter) -> ModelAdapter:
        if isinstance(model, ModelAdapter):
            return model
        if model not in self._models:
            self._models[model] = create_classifier(model, device=self.device)
        return self._models[model]


def curation_runtime(runtime: Runtime | None, options: dict[str, Any], caller: str) -> Runtime:
    """A curation step's runtime: quiet by default (the steps print their own summaries), and
    the papers' exact fp32 image pass only (curation records no image-pass extension)."""
    runtime = runtime_from(runtime or Runtime(show_progress=False), options, caller)
    runtime.refuse_changed(("precision", "engine", "decode", "backend"), caller)
    return runtime


def predict(
    model: str | ModelAdapter,
    dataset: ImageDataset,
    protocol: str = AUTO_PROTOCOL,
    *,
    templates: str | list[str] | None = "paper",
    runtime: Runtime | None = None,
    models: ModelCache | None = None,
    **options: Any,
) -> Predictions:
    """Top-5 predictions of ``model`` on every image of ``dataset`` under ``protocol``.

    ``runtime`` and the runtime ``options`` (``cache_dir``, ``batch_size``, ``device``...) are
    as for :func:`spurbench.evaluate`; ``models`` loads each named model once across steps.
    """
    runtime = curation_runtime(runtime, options, "predict")
    protocol = resolve_protocol(protocol, dataset)
    if protocol == "1v20":
        raise ClassListError(
            "Curation scores models on 1v1000 or 1vN: 1-vs-20 candidate sets are chosen from "
            "the very images being curated, which would make selection circular."
        )
    adapter = (models or ModelCache(runtime.device)).get(model)
    cache = checked_cache(dataset, runtime)
    feats = runtime.encode(adapter, dataset)
    space = label_space(protocol, dataset)
    head = restricted_head(adapter, dataset, space, run_templates(templates, dataset), cache)
    scores = score_features(feats, head, space, dataset)
    table = predictions(scores, dataset, space)[["image_id", "label", "topk_labels", "correct"]]
    table["p_true"] = true_class_probability(scores, space, table["label"].to_numpy())
    return Predictions(adapter.name, adapter.fingerprint, protocol, table, skipped(scores, dataset))


def true_class_probability(scores: Scores, space: LabelSpace, labels: np.ndarray) -> np.ndarray:
    """Softmax probability of the labelled class among the image's competing labels.

    Why: top-1 accuracies of small groups tie (several backgrounds at 0 % or 100 %), and the
    argmin/argmax of spurious discovery is then decided by the order of names. The mean
    probability of the true class says which of the tied groups the model finds hardest; it
    breaks ties only, the gap is still the paper's accuracy gap. It reads the logits the
    predictions came from, so it costs no second pass.
    """
    assert scores.logits is not None, "true-class probabilities need feature scores"
    prob = softmax(np.where(space.mask(labels), scores.logits, -np.inf), axis=1)
    return prob[np.arange(len(labels)), space.columns(labels)]
