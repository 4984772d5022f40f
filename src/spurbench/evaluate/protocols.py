"""The CounterAnimal protocols: which labels each image is classified among.

* ``1v1000``: all ImageNet-1k classes (the paper's default).
* ``1v20``: each class against its own 20 candidates — the labels a reference model (the paper's
  CLIP ViT-B/32 LAION-400M by default, see :mod:`spurbench.evaluate.candidates`) finds most
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


def check_protocol_names(protocols: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The protocols asked for, or an error when the list is empty or names an unknown one."""
    protocols = tuple(protocols)
    if not protocols:
        raise ClassListError(f"No protocol given; choose among {', '.join(PROTOCOLS)}.")
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown:
        raise ClassListError(
            f"Unknown protocol {unknown[0]!r}; choose among {', '.join(PROTOCOLS)} "
            "(a comma list, or 'both' for 1v1000,1v20)."
        )
    return protocols


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


def load_candidates(
    path: str | Path, labels: list[int], size: int | None = N_CONFUSABLE
) -> dict[int, np.ndarray]:
    """Read a candidates file (``{label: [labels]}``) and check it before any model runs.

    Every set must hold its own true label, have ``size`` distinct ImageNet indices (0-999),
    and every label in ``labels`` (the evaluated classes) needs a set; anything else would give
    meaningless accuracies, so it is a :class:`ClassListError` naming the first problem.
    """
    path = Path(path)
    where = f"Candidate file {path}"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ClassListError(f"{where} does not exist.") from None
    except IsADirectoryError:
        raise ClassListError(f"{where} is a folder; pass the JSON file.") from None
    except UnicodeDecodeError:
        raise ClassListError(f"{where} is not UTF-8 text.") from None
    except json.JSONDecodeError as e:
        raise ClassListError(f"{where} is not valid JSON: {e}.") from None
    except OSError as e:
        raise ClassListError(f"{where} cannot be read: {e}.") from None
    shape = 'a JSON object {"<label>": [<label>, ...], ...} of ImageNet indices'
    if not isinstance(raw, dict) or not raw:
        raise ClassListError(f"{where} must be {shape}.")
    cand: dict[int, np.ndarray] = {}
    for key, values in raw.items():
        y = _imagenet_index(key)
        if y is None or not isinstance(values, list):
            raise ClassListError(
                f"{where}: entry {key!r} must be an ImageNet index (0-999) mapped to a list of "
                "labels."
            )
        members = [_imagenet_index(v) for v in values]
        bad = [v for v, m in zip(values, members, strict=True) if m is None]
        if bad:
            raise ClassListError(
                f"{where}: the set of label {y} has entries outside the ImageNet indices 0-999: "
                f"{bad[:5]}."
            )
        if len(set(members)) != len(members):
            raise ClassListError(f"{where}: the set of label {y} repeats a label.")
        if y not in members:
            raise ClassListError(
                f"{where}: the set of label {y} does not contain label {y} itself; every set "
                "must hold its true class."
            )
        cand[y] = np.array(sorted(members))  # type: ignore[type-var]
    sizes = sorted({len(v) for v in cand.values()})
    if size is not None and sizes != [size]:
        raise ClassListError(
            f"{where}: 1-vs-{size} needs sets of {size} labels; found sizes {sizes}."
        )
    if len(sizes) > 1:
        raise ClassListError(f"{where}: sets differ in size ({sizes}); all must be the same.")
    missing = [y for y in labels if y not in cand]
    if missing:
        raise ClassListError(f"{where} has no candidate set for labels {missing}.")
    return cand


def _imagenet_index(value: object) -> int | None:
    """An ImageNet index from a JSON key or value (int or decimal string), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    return value if isinstance(value, int) and 0 <= value < 1000 else None


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
