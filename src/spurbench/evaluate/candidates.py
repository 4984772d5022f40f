"""1-vs-20 candidate sets: which model picks them, checked before any model runs, and hashed.

The CounterAnimal paper (Wang, Lin et al., NeurIPS 2024, arXiv:2403.11497) ranks the ImageNet
labels once, with one fixed reference model, CLIP ViT-B/32 LAION-400M (``ViT-B-32,
laion400m_e31``), prompt "A photo of {c}." and OpenAI's class names, and scores every model
(CLIP, ImageNet classifiers, LVLMs) among those same 20 labels per class. The sets are therefore
a property of the dataset, not of the evaluated model: the reference's head ignores the
evaluated model's ``templates`` and name set. A model ranking its own labels would meet its
hardest 20 confusions, which biases its 1-vs-20 accuracy low and makes models incomparable; that
is kept only as the explicit, labelled ``reference="self"``.

Sources, resolved by :func:`prepare_candidates` *before* the evaluated model loads, so a missing
reference or a bad file stops the run before any image is encoded:

* ``reference`` (default: the paper's), a model name or a loaded adapter;
* ``self``: the evaluated (zero-shot) model's own confusions, with its own templates;
* a candidates file (``{label: [20 labels]}``, what ``spurbench candidates`` exports).

Every 1-vs-20 run stores :func:`candidates_digest` of its sets and the source's name, so results
computed among different sets are never pooled.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from spurbench.data.classes import PAPER_TEMPLATES, imagenet_classes
from spurbench.data.dataset import ImageDataset
from spurbench.errors import ClassListError, SpurbenchError, WeightsUnavailableError
from spurbench.evaluate import protocols as P

if TYPE_CHECKING:
    from spurbench.features.cache import FeatureSet
    from spurbench.models.base import ModelAdapter
    from spurbench.runtime import Runtime

#: The paper's reference model for the 1-vs-20 candidate sets.
PAPER_REFERENCE = "ViT-B-32,laion400m_e31"
#: ``reference="self"``: each model ranks its own confusions (not the paper's protocol).
SELF_REFERENCE = "self"
#: Class names the reference's head reads, whatever name set the evaluated model uses.
REFERENCE_NAME_SET = "openai"
#: Hex digits of the stored candidate-set hash.
DIGEST_CHARS = 12
FILE_PREFIX = "file:"


@dataclass
class CandidateSource:
    """Where a run's 1-vs-20 sets come from; ``name`` is what the store records.

    ``name`` is the reference model's name, ``"self"``, or ``"file:<file name>"``. A loaded
    reference travels in ``adapter``, a validated file's sets in ``sets``.
    """

    name: str
    adapter: ModelAdapter | None = None
    sets: dict[int, np.ndarray] | None = None

    @property
    def is_self(self) -> bool:
        return self.name == SELF_REFERENCE


def describe_source(name: str | None) -> str:
    """How tables and the report label a run's candidate source."""
    if not name:
        return ""
    if name == PAPER_REFERENCE:
        return f"paper reference ({PAPER_REFERENCE})"
    if name == SELF_REFERENCE:
        return "self (own confusions, not the paper's)"
    if name.startswith(FILE_PREFIX):
        return f"file {name[len(FILE_PREFIX) :]}"
    return f"reference {name} (not the paper's)"


def check_one_source(reference: object, candidates_path: str | Path | None) -> None:
    """Refuse a reference model and a candidates file together: they are two answers to one
    question, and using either silently would hide which sets the run used."""
    if candidates_path is not None and reference is not None:
        raise SpurbenchError(
            f"Both --reference {reference} and --candidates {candidates_path} name the 1-vs-20 "
            "candidate sets; pass one of them."
        )


def prepare_candidates(
    reference: str | ModelAdapter | CandidateSource | None,
    candidates_path: str | Path | None,
    dataset: ImageDataset,
    device: str = "cpu",
) -> CandidateSource:
    """Resolve the 1-vs-20 source, loading the reference or reading the file now.

    Called before the evaluated model loads: a reference without weights on this machine or an
    invalid candidates file is an error that says what else to pass, before anything runs.
    """
    from spurbench.models.base import ModelAdapter

    if isinstance(reference, CandidateSource):
        return reference
    check_one_source(reference, candidates_path)
    if candidates_path is not None:
        sets = P.load_candidates(candidates_path, dataset.present_labels)
        return CandidateSource(f"{FILE_PREFIX}{Path(candidates_path).name}", sets=sets)
    if isinstance(reference, ModelAdapter):
        return CandidateSource(reference.name, adapter=reference)
    if reference == SELF_REFERENCE:
        return CandidateSource(SELF_REFERENCE)
    name = reference or PAPER_REFERENCE
    from spurbench.models.registry import create_classifier

    try:
        adapter = create_classifier(name, device=device)
    except WeightsUnavailableError:
        raise WeightsUnavailableError(
            f"1-vs-20 candidate sets come from the reference model {name}"
            + (" (the paper's)" if name == PAPER_REFERENCE else "")
            + ", whose weights are not available here (no network and no cached copy). Pass "
            "--reference MODEL (a model whose weights you have), --candidates FILE (sets "
            "exported with `spurbench candidates` where the reference is available), or "
            "--reference self (each model's own confusions; not the paper's protocol)."
        ) from None
    return CandidateSource(name, adapter=adapter)


def candidate_sets(
    source: CandidateSource,
    dataset: ImageDataset,
    adapter: ModelAdapter | None = None,
    feats: FeatureSet | None = None,
    templates: tuple[str, ...] = PAPER_TEMPLATES,
    runtime: Runtime | None = None,
) -> dict[int, np.ndarray]:
    """Each present class's 20 candidates from ``source``.

    A reference model ranks with the paper's head (one prompt, OpenAI names); ``self`` ranks with
    the evaluated ``adapter``'s own head and ``templates`` on its features ``feats``.
    """
    from spurbench.heads.cached import head_for
    from spurbench.runtime import Runtime

    runtime = runtime or Runtime(show_progress=False)
    if source.sets is not None:
        return source.sets
    if source.is_self:
        if adapter is None or feats is None:
            raise SpurbenchError("reference='self' needs the evaluated model and its features.")
        if not adapter.zero_shot:
            raise ClassListError(
                f"--reference self needs a zero-shot model to rank its own labels; "
                f"{adapter.name} is a classifier. Pass --reference {PAPER_REFERENCE} (the "
                "paper's) or --candidates FILE."
            )
        ref, ref_feats, classes, ref_templates = adapter, feats, dataset.classes, templates
    else:
        assert source.adapter is not None
        ref = source.adapter
        same = adapter is not None and feats is not None and ref.fingerprint == adapter.fingerprint
        ref_feats = (
            feats
            if same
            else runtime.encode(ref, dataset)
        )
        classes, ref_templates = imagenet_classes(REFERENCE_NAME_SET), PAPER_TEMPLATES
    assert ref_feats is not None
    head = head_for(ref, classes, ref_templates, runtime.cache)
    ok = ref_feats.ok
    scores = head.logits(ref_feats.embedding[ok])
    return P.confusable_candidates(scores, dataset.table["label"].to_numpy()[ok])


def candidates_digest(sets: dict[int, np.ndarray] | dict[int, list[int]]) -> str:
    """Hash of the sets (order of labels and of keys does not matter)."""
    canonical = {str(int(k)): sorted(int(c) for c in v) for k, v in sorted(sets.items())}
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_CHARS]


def export_candidates(
    data: str | Path | ImageDataset,
    out: str | Path,
    *,
    reference: str | ModelAdapter = PAPER_REFERENCE,
    name_set: str = "openai",
    split: str | None = None,
    allow_outside_root: bool = False,
    overwrite: bool = False,
    cache_dir: str | Path | None = None,
    batch_size: int = 64,
    device: str = "cpu",
    show_progress: bool = False,
) -> tuple[dict[int, np.ndarray], str]:
    """Compute the 1-vs-20 sets of ``data`` with ``reference`` and write them to ``out``.

    The file is what ``candidates=`` / ``--candidates`` reads, so sets computed once where the
    reference's weights exist give identical runs everywhere. Returns (sets, their hash).
    """
    from spurbench.data.layouts import open_dataset
    from spurbench.runtime import Runtime

    out = Path(out)
    if out.is_dir() or (out.exists() and not overwrite):
        raise SpurbenchError(
            f"{out} already exists; pass --force to replace it, or choose another --out."
        )
    if reference == SELF_REFERENCE:
        raise SpurbenchError(
            "'self' has no meaning without an evaluated model; pass the model itself as "
            "--reference."
        )
    dataset = (
        data
        if isinstance(data, ImageDataset)
        else open_dataset(
            data, name_set=name_set, split=split, allow_outside_root=allow_outside_root
        )
    )
    P.check_protocol("1v20", dataset)
    source = prepare_candidates(reference, None, dataset, device)
    runtime = Runtime(cache_dir, batch_size, device=device, show_progress=show_progress)
    sets = candidate_sets(source, dataset, runtime=runtime)
    P.save_candidates(sets, out)
    return sets, candidates_digest(sets)
