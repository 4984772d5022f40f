"""Zero-shot background tagging with a CLIP model over a background vocabulary.

CounterAnimal's backgrounds were tagged by hand, one of 14 words per photo (Wang, Lin et al.,
NeurIPS 2024, §3: ground, water, earth, sand, snow, grass, human, sky, road, rock, shrub, indoor,
tree, outdoor). Tagging a new pool by hand is the slowest step, so here a CLIP model proposes the
background the way it classifies classes zero-shot: one text prompt per background word
("a photo of {bg}." by default; several prompts are averaged as in CLIP's prompt ensembling),
cosine similarity with the image embedding, softmax with the model's own logit scale. Only
confident tags (top softmax probability ≥ the threshold) become labels (``auto``); the others
keep their suggestion and go to a review file for a person (:mod:`spurbench.curate.review`).

Labels given with the pool (``manual``) or confirmed in review (``reviewed``) are never
overwritten, and when every image already has one no model is loaded at all. Images are encoded
through the feature cache over the whole pool, so discovery with the same CLIP reuses them.

Caveat worth stating in a datasheet: tagging with a CLIP and then selecting backgrounds where a
CLIP fails couples the two steps — an image the tagger mislabels is likely one the reference
model finds unusual. Review low-confidence tags, and prefer a tagger other than the reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import softmax

from spurbench.curate.defaults import DEFAULT_THRESHOLD
from spurbench.curate.pool import (
    AUTO,
    LOW_CONFIDENCE,
    add_flag,
    normalize_background,
    remove_flag,
    source_counts,
    with_table,
)
from spurbench.curate.scoring import ModelCache, curation_runtime
from spurbench.data.classes import ClassList
from spurbench.data.dataset import ImageDataset
from spurbench.errors import ClassListError, SpurbenchError
from spurbench.heads.cached import head_for
from spurbench.models.base import ModelAdapter
from spurbench.runtime import Runtime

#: The CounterAnimal paper's 14 background labels.
PAPER_BACKGROUNDS: tuple[str, ...] = (
    "ground",
    "water",
    "earth",
    "sand",
    "snow",
    "grass",
    "human",
    "sky",
    "road",
    "rock",
    "shrub",
    "indoor",
    "tree",
    "outdoor",
)
DEFAULT_PROMPTS: tuple[str, ...] = ("a photo of {bg}.",)


@dataclass
class TagResult:
    """The pool with backgrounds filled in, and the tagger's full probabilities."""

    dataset: ImageDataset
    #: image_id + one probability column per vocabulary word, for the images that were tagged
    probabilities: pd.DataFrame
    model: str | None
    vocabulary: tuple[str, ...]
    prompts: tuple[str, ...]
    threshold: float
    config: dict[str, object] = field(default_factory=dict)

    @property
    def skipped(self) -> bool:
        """True when every image had a label already and no model was run."""
        return self.model is None

    def summary(self) -> dict[str, object]:
        n_low = int((self.dataset.table["flags"].str.contains(LOW_CONFIDENCE, regex=False)).sum())
        return {
            "tagger": self.model,
            "vocabulary": list(self.vocabulary),
            "prompts": list(self.prompts),
            "threshold": self.threshold,
            "n_tagged": len(self.probabilities),
            "n_low_confidence": n_low,
            "sources": source_counts(self.dataset),
        }


def read_vocabulary(spec: str | Path | Sequence[str] | None) -> tuple[str, ...]:
    """A vocabulary from a comma list, a file (one word per line, ``#`` comments) or a list.

    ``None`` or ``"paper"`` is the paper's 14 words.
    """
    if spec is None or spec == "paper":
        return PAPER_BACKGROUNDS
    if isinstance(spec, str | Path):
        path = Path(spec)
        if path.is_file():
            lines = path.read_text(encoding="utf-8").splitlines()
            words = [s for s in lines if s.strip() and not s.strip().startswith("#")]
        else:
            words = str(spec).split(",")
    else:
        words = list(spec)
    vocab = tuple(dict.fromkeys(normalize_background(w) for w in words if w.strip()))
    if len(vocab) < 2:
        raise SpurbenchError(f"A background vocabulary needs at least two words, got {vocab}.")
    return vocab


def prompt_templates(prompts: Sequence[str]) -> tuple[str, ...]:
    """Prompts with a ``{bg}`` (or ``{c}``) placeholder, as the head builder's ``{c}`` templates."""
    out = tuple(p.replace("{bg}", "{c}") for p in prompts)
    bad = [p for p, t in zip(prompts, out, strict=True) if "{c}" not in t]
    if not out or bad:
        raise ClassListError(f"Every background prompt needs a '{{bg}}' placeholder: {bad}")
    return out


def tag_backgrounds(
    dataset: ImageDataset,
    model: str | ModelAdapter | None,
    *,
    vocabulary: Sequence[str] = PAPER_BACKGROUNDS,
    prompts: Sequence[str] = DEFAULT_PROMPTS,
    threshold: float = DEFAULT_THRESHOLD,
    retag: bool = False,
    runtime: Runtime | None = None,
    models: ModelCache | None = None,
    **options: Any,
) -> TagResult:
    """Tag the images without a background (and, with ``retag``, earlier automatic tags).

    Excluded images are not tagged. Returns the updated pool; ``manual`` and ``reviewed``
    labels are kept as they are. ``runtime``, ``models`` and ``options`` are as for
    :func:`~spurbench.curate.scoring.predict`.
    """
    runtime = curation_runtime(runtime, options, "tag_backgrounds")
    vocab = tuple(normalize_background(v) for v in vocabulary)
    templates = prompt_templates(prompts)
    if not 0.0 <= threshold <= 1.0:
        raise SpurbenchError(f"The confidence threshold must lie in [0, 1], not {threshold}.")
    table = dataset.table.copy()
    todo = (table["excluded"] == "") & (
        (table["background"] == "") | (retag & (table["background_source"] == AUTO))
    )
    config = {"vocabulary": list(vocab), "prompts": list(prompts), "threshold": threshold}
    if not todo.any():
        return TagResult(
            dataset,
            _probabilities([], vocab, np.zeros((0, len(vocab)))),
            None,
            vocab,
            tuple(prompts),
            threshold,
            config,
        )
    if model is None:
        raise SpurbenchError(
            f"{int(todo.sum())} images have no background label: pass a CLIP model to tag them "
            "(--tagger), or give labels (a manifest column or a labels file)."
        )
    adapter = (models or ModelCache(runtime.device)).get(model)
    if not adapter.zero_shot:
        raise SpurbenchError(
            f"{adapter.name} is not an image-text model; zero-shot tagging needs a CLIP."
        )
    cache = runtime.cache
    feats = runtime.encode(adapter, dataset)
    rows = np.flatnonzero(todo.to_numpy() & feats.ok)
    head = head_for(adapter, ClassList(vocab, None, "custom"), templates, cache)
    probs = softmax(head.logits(feats.embedding[rows]), axis=1)
    best = probs.argmax(axis=1)
    conf = probs[np.arange(len(rows)), best]
    confident = conf >= threshold
    table.loc[rows, "background_suggestion"] = [vocab[i] for i in best]
    table.loc[rows, "background_confidence"] = conf
    table.loc[rows, "background"] = np.where(confident, [vocab[i] for i in best], "")
    table.loc[rows, "background_source"] = np.where(confident, AUTO, "")
    low = np.zeros(len(table), dtype=bool)
    low[rows[~confident]] = True
    high = np.zeros(len(table), dtype=bool)
    high[rows[confident]] = True
    table["flags"] = remove_flag(
        add_flag(table["flags"], low, LOW_CONFIDENCE), high, LOW_CONFIDENCE
    )
    ids = table["image_id"].to_numpy()[rows]
    return TagResult(
        with_table(dataset, table),
        _probabilities(ids, vocab, probs),
        adapter.name,
        vocab,
        tuple(prompts),
        threshold,
        {**config, "tagger": adapter.name, "tagger_fingerprint": adapter.fingerprint},
    )


def _probabilities(ids: Sequence[str], vocab: Sequence[str], probs: np.ndarray) -> pd.DataFrame:
    df = pd.DataFrame(probs, columns=list(vocab))
    df.insert(0, "image_id", list(ids))
    return df


def alternatives(probabilities: pd.DataFrame, n: int = 3) -> pd.Series:
    """'water 0.41; sand 0.22; ...': the top ``n`` words per image, for the review page."""
    vocab = [c for c in probabilities.columns if c != "image_id"]
    p = probabilities[vocab].to_numpy()
    order = np.argsort(-p, axis=1)[:, :n]
    text = ["; ".join(f"{vocab[j]} {p[i, j]:.2f}" for j in row) for i, row in enumerate(order)]
    return pd.Series(text, index=probabilities["image_id"].to_numpy())
