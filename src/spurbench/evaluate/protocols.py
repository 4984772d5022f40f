"""The CounterAnimal protocols: which labels each image is classified among.

* ``1v1000``: all ImageNet-1k classes (the paper's default).
* ``1v20``: each class against its own 20 candidates — the labels a reference model finds most
  confusable with it (highest mean score over that class's images, common and counter together;
  for CLIP the score is the cosine between image and label text embeddings). The true class is
  always kept among the candidates. The sets are saved with the run; users may pass their own.
* ``1vN``: the N classes present in the dataset (the only protocol for custom class sets).

Every protocol is a boolean mask over the label space per true class; a prediction is the argmax
of the full logits restricted to that mask, so all protocols share one set of logits.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from spurbench.data.dataset import ImageDataset
from spurbench.errors import ClassListError

PROTOCOLS = ("1v1000", "1v20", "1vN")
N_CONFUSABLE = 20


def check_protocol(protocol: str, dataset: ImageDataset) -> None:
    """Fail before any model runs when a protocol cannot apply to this dataset's classes."""
    if protocol not in PROTOCOLS:
        raise ClassListError(f"Unknown protocol {protocol!r}; choose among {PROTOCOLS}.")
    if protocol in ("1v1000", "1v20") and not dataset.classes.is_imagenet:
        outside = _outside_imagenet(dataset)
        named = (
            f"these classes are not ImageNet-1k classes: {outside[:10]}"
            + (f" (and {len(outside) - 10} more)" if len(outside) > 10 else "")
            if outside
            else "its class names match ImageNet names but carry no ImageNet indices "
            f"({', '.join(dataset.classes.names[:5])}...)"
        )
        raise ClassListError(
            f"Protocol {protocol} needs ImageNet-1k labels, but in {dataset.name!r} {named}. "
            "Use --protocol 1vN, or label the images with ImageNet indices ('<index> <name>' "
            "folders or integer labels)."
        )


def _outside_imagenet(dataset: ImageDataset) -> list[str]:
    """Names of the dataset's classes that no ImageNet-1k name (either name set) matches.

    A folder named ``'<index> <name>'`` counts as ImageNet when its index is in range.
    """
    from spurbench.data.classes import imagenet_index_of

    def known(name: str) -> bool:
        head, _, rest = name.partition(" ")
        if head.isdigit() and 0 <= int(head) < 1000:
            return True
        return imagenet_index_of(name) is not None or bool(rest and imagenet_index_of(rest))

    present = [dataset.classes.names[i] for i in dataset.present_labels]
    return sorted(n for n in present if not known(n))


def candidates_all(n_labels: int, labels: list[int]) -> dict[int, np.ndarray]:
    return {y: np.arange(n_labels) for y in labels}


def candidates_present(labels: list[int]) -> dict[int, np.ndarray]:
    arr = np.array(sorted(labels))
    return {y: arr for y in labels}


def confusable_candidates(
    scores: np.ndarray, image_labels: np.ndarray, k: int = N_CONFUSABLE
) -> dict[int, np.ndarray]:
    """Per true class, the ``k`` labels with the highest mean score over that class's images.

    ``scores`` is (n_images, n_labels) from the reference model (cosine similarities or logits).
    The true class replaces the k-th candidate if it is not among the top k.
    """
    out: dict[int, np.ndarray] = {}
    for y in np.unique(image_labels):
        mean = scores[image_labels == y].mean(axis=0)
        top = np.argsort(-mean, kind="stable")[:k]
        if y not in top:
            top = np.concatenate([top[: k - 1], [y]])
        out[int(y)] = np.sort(top)
    return out


def save_candidates(candidates: dict[int, np.ndarray], path: str | Path) -> None:
    from spurbench.atomic import write_json_atomic

    write_json_atomic(path, {str(k): v.tolist() for k, v in sorted(candidates.items())})


def load_candidates(path: str | Path, labels: list[int]) -> dict[int, np.ndarray]:
    raw = json.loads(Path(path).read_text())
    cand = {int(k): np.array(sorted(int(i) for i in v)) for k, v in raw.items()}
    missing = [y for y in labels if y not in cand]
    if missing:
        raise ClassListError(f"Candidate file {path} has no candidate set for labels {missing}.")
    return cand


def mask_for(
    candidates: dict[int, np.ndarray], image_labels: np.ndarray, n_labels: int
) -> np.ndarray:
    """(n_images, n_labels) boolean: which labels each image may be classified as."""
    keys = sorted(candidates)
    table = np.zeros((len(keys), n_labels), dtype=bool)
    for r, y in enumerate(keys):
        table[r, candidates[y]] = True
    row_of = {y: r for r, y in enumerate(keys)}
    return table[[row_of[int(y)] for y in image_labels]]


def restricted_topk(
    logits: np.ndarray, mask: np.ndarray, k: int = 5
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k labels and logits among the allowed labels of each image (ties: lower index first)."""
    masked = np.where(mask, logits, -np.inf)
    k = min(k, int(mask.sum(axis=1).min()))
    order = np.argsort(-masked, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(masked, order, axis=1)
