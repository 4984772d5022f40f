"""Per-image predictions of a model on a pool, through spurbench's own evaluation runner.

Curation scores the same pool with the same models several times (label-noise check, spurious
discovery, held-out models, diagnosis). Every call goes through
:func:`spurbench.evaluate.evaluate` on the *whole* pool, so images are encoded once per model
(the feature cache keys on the image files, not on labels or on which rows are excluded) and
the predictions are exactly those ``spurbench eval`` would make; rows are filtered afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import softmax

from spurbench.data.classes import resolve_templates
from spurbench.data.dataset import ImageDataset
from spurbench.errors import ClassListError
from spurbench.evaluate import protocols as P
from spurbench.evaluate.runner import evaluate
from spurbench.features.cache import default_cache_dir, encode_dataset
from spurbench.heads.cached import head_for
from spurbench.models.base import ModelAdapter
from spurbench.models.registry import create_model

AUTO_PROTOCOL = "auto"
#: The bootstrap of the runner's summary is not used here; a few resamples keep it cheap.
_N_BOOT = 10


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
            self._models[model] = create_model(model, device=self.device)
        return self._models[model]


def predict(
    model: str | ModelAdapter,
    dataset: ImageDataset,
    protocol: str = AUTO_PROTOCOL,
    *,
    templates: str | list[str] | None = "paper",
    cache_dir: str | Path | None = None,
    batch_size: int = 64,
    device: str = "cpu",
    models: ModelCache | None = None,
    show_progress: bool = False,
) -> Predictions:
    """Top-5 predictions of ``model`` on every image of ``dataset`` under ``protocol``."""
    protocol = resolve_protocol(protocol, dataset)
    if protocol == "1v20":
        raise ClassListError(
            "Curation scores models on 1v1000 or 1vN: 1-vs-20 candidate sets are chosen from "
            "the very images being curated, which would make selection circular."
        )
    adapter = (models or ModelCache(device)).get(model)
    (result,) = evaluate(
        adapter,
        dataset,
        (protocol,),
        templates=templates,
        cache_dir=cache_dir,
        batch_size=batch_size,
        n_boot=_N_BOOT,
        device=device,
        show_progress=show_progress,
    )
    table = result.predictions[["image_id", "label", "topk_labels", "correct"]].copy()
    p_true = true_class_probability(
        adapter, dataset, protocol, templates, cache_dir, batch_size, show_progress
    )
    table["p_true"] = table["image_id"].map(p_true).to_numpy()
    return Predictions(adapter.name, adapter.fingerprint, protocol, table, result.skipped)


def true_class_probability(
    adapter: ModelAdapter,
    dataset: ImageDataset,
    protocol: str,
    templates: str | list[str] | None,
    cache_dir: str | Path | None,
    batch_size: int,
    show_progress: bool,
) -> pd.Series:
    """Softmax probability of the labelled class among the protocol's classes, per image_id.

    Why: top-1 accuracies of small groups tie (several backgrounds at 0 % or 100 %), and the
    argmin/argmax of spurious discovery is then decided by the order of names. The mean
    probability of the true class says which of the tied groups the model finds hardest; it
    breaks ties only, the gap is still the paper's accuracy gap. Features and head come from
    the caches the evaluation just filled, so this costs no image encoding.
    """
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    feats = encode_dataset(
        adapter, dataset, cache, batch_size=batch_size, show_progress=show_progress
    )
    if protocol == "1vN":
        labels = np.array(dataset.present_labels)
    elif dataset.label_subset is not None:
        labels = np.array(sorted(dataset.label_subset))
    else:
        labels = np.arange(len(dataset.classes))
    head = head_for(adapter, dataset.classes.subset(labels), resolve_templates(templates), cache)
    ok = feats.ok
    prob = softmax(head.logits(feats.embedding[ok]), axis=1)
    column = np.searchsorted(labels, dataset.table["label"].to_numpy()[ok])
    p = prob[np.arange(len(column)), column]
    return pd.Series(p, index=dataset.table["image_id"].to_numpy()[ok])
