"""Which labels compete for each image under a protocol, and which answers count as right.

A protocol (see :mod:`spurbench.evaluate.protocols`) is a set of competing labels per true
class: all 1000 ImageNet classes (or the dataset's ImageNet subset, e.g. ObjectNet's 313), the
20 candidates of 1-vs-20, or the N classes present. :class:`LabelSpace` holds that choice once,
built from the protocol, the dataset and the 1-vs-20 source, so the evaluation, the LVLM
scorer, the probes and curation all classify among the same labels. It also carries the
dataset's accepted-label sets (ObjectNet maps one class to several ImageNet classes).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from spurbench.data.classes import PAPER_TEMPLATES
from spurbench.data.dataset import ImageDataset
from spurbench.evaluate import protocols as P
from spurbench.evaluate.candidates import CandidateSource, candidate_sets, candidates_digest

if TYPE_CHECKING:
    from spurbench.features.cache import FeatureSet
    from spurbench.models.base import ModelAdapter
    from spurbench.runtime import Runtime


@dataclass(frozen=True)
class LabelSpace:
    """The labels each present class is classified among under ``protocol``.

    ``sets`` maps a true label to the (sorted) global labels that compete for its images;
    ``accepted`` maps a true label to the labels that count as a right answer when there is more
    than one (None: only the label itself).
    """

    protocol: str
    sets: dict[int, np.ndarray]
    accepted: dict[int, tuple[int, ...]] | None = None
    #: 1-vs-20 only: where the sets came from.
    source: CandidateSource | None = None

    @cached_property
    def labels(self) -> np.ndarray:
        """Every label that competes for some image, sorted: the rows of the restricted head."""
        return np.unique(np.concatenate(list(self.sets.values()))).astype(np.int64)

    @cached_property
    def _position(self) -> dict[int, int]:
        return {int(c): i for i, c in enumerate(self.labels)}

    def columns(self, labels: np.ndarray) -> np.ndarray:
        """Positions of global ``labels`` among :attr:`labels` (the restricted head's columns)."""
        return np.array([self._position[int(y)] for y in labels], dtype=np.int64)

    def mask(self, image_labels: np.ndarray) -> np.ndarray:
        """(n_images, len(labels)) boolean: the columns each image may be classified as."""
        local = {y: self.columns(v) for y, v in self.sets.items()}
        return P.mask_for(local, image_labels, len(self.labels))

    def correct(self, top_labels: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(top-1 right, top-k right) per image, from global top-k labels and true labels."""
        if self.accepted is None:
            return top_labels[:, 0] == y, (top_labels == y[:, None]).any(axis=1)
        accepted = [np.asarray(self.accepted[int(t)]) for t in y]
        top1 = np.array([t in a for t, a in zip(top_labels[:, 0], accepted, strict=True)])
        topk = np.array(
            [np.isin(row, a).any() for row, a in zip(top_labels, accepted, strict=True)]
        )
        return top1, topk

    @property
    def stored_sets(self) -> dict[int, list[int]]:
        """The sets a run stores with itself: 1-vs-20's (they are part of its identity)."""
        if self.protocol != "1v20":
            return {}
        return {int(k): v.tolist() for k, v in self.sets.items()}

    @property
    def identity(self) -> dict[str, list[int]] | None:
        """The sets as they enter a run id (1-vs-20 only; other protocols follow the dataset)."""
        if self.protocol != "1v20":
            return None
        return {str(k): v.tolist() for k, v in sorted(self.sets.items())}

    @property
    def source_name(self) -> str | None:
        return self.source.name if self.protocol == "1v20" and self.source is not None else None

    @property
    def digest(self) -> str | None:
        """Hash of 1-vs-20 sets (see :func:`candidates_digest`); None for other protocols."""
        return candidates_digest(self.sets) if self.protocol == "1v20" else None


def label_space(
    protocol: str,
    dataset: ImageDataset,
    source: CandidateSource | None = None,
    *,
    adapter: ModelAdapter | None = None,
    feats: FeatureSet | None = None,
    templates: tuple[str, ...] = PAPER_TEMPLATES,
    runtime: Runtime | None = None,
) -> LabelSpace:
    """The :class:`LabelSpace` of ``protocol`` on ``dataset``: the one home of that choice.

    1-vs-20 needs ``source`` (resolved before any model loads by
    :func:`~spurbench.evaluate.candidates.prepare_candidates`); ``adapter``, ``feats`` and
    ``templates`` are the evaluated model's, used when the source is ``self`` or when the
    reference is the evaluated model (its features are then reused); ``runtime`` is how a
    reference model's features are computed.
    """
    present = dataset.present_labels
    if protocol == "1v1000":
        if dataset.label_subset is not None:
            subset = np.array(sorted(dataset.label_subset))
            sets = {y: subset for y in present}
        else:
            sets = P.candidates_all(len(dataset.classes), present)
    elif protocol == "1vN":
        sets = P.candidates_present(present)
    else:
        if source is None:
            raise ValueError("1-vs-20 needs its candidate source (see prepare_candidates).")
        sets = candidate_sets(
            source,
            dataset,
            adapter,
            feats,
            templates,
            runtime,
        )
    return LabelSpace(protocol, sets, dataset.label_sets, source if protocol == "1v20" else None)
