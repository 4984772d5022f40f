"""Evaluate vision-language chat models on grouped datasets by answer likelihood.

The CounterAnimal paper (Wang, Lin et al., NeurIPS 2024, arXiv:2403.11497) evaluates LVLMs
(MiniGPT-4 Vicuna-7B, LLaVA-1.5-7B) on the 1-vs-20 protocol: each image is asked "What is the
main object in the image?", each of its class's 20 candidates is scored by the language-modelling
loss of "A <name>.", and the lowest-loss candidate is the prediction. Their published rows are in
the reference testbed (``reference/counteranimal_models.csv``, family ``lvlm``).

This module produces the same :class:`~spurbench.evaluate.scoring.RunResult`, predictions
columns and store rows as the feature-based runner, through the same scoring pipeline
(:mod:`spurbench.evaluate.scoring`, its :func:`score_answers`), so reports, the testbed
comparison and queries treat LVLM runs like any other. ``topk_scores`` are negative losses
(higher is better, as for logits). The 20 candidates come from a candidates file or from a
reference model's confusions (the paper used CLIP ViT-B/32 LAION-400M) through the runner's
:func:`~spurbench.evaluate.label_space.label_space`; 1-vs-N uses the classes present. 1-vs-1000
is refused: the paper does not run LVLMs on it and it costs 1000 answers per
image.
"""

from __future__ import annotations

from pathlib import Path

from spurbench.data.dataset import ImageDataset
from spurbench.errors import ClassListError
from spurbench.evaluate import metrics as M
from spurbench.evaluate import protocols as P
from spurbench.evaluate import scoring as S
from spurbench.evaluate.candidates import (
    PAPER_REFERENCE,
    SELF_REFERENCE,
    CandidateSource,
    prepare_candidates,
)
from spurbench.evaluate.label_space import label_space
from spurbench.evaluate.runner import as_dataset
from spurbench.evaluate.scoring import RunResult
from spurbench.features.cache import default_cache_dir
from spurbench.models.base import AnswerScorer, ModelAdapter
from spurbench.models.lvlm import SCORES, load_lvlm
from spurbench.runtime import Runtime
from spurbench.store.results import ResultsStore

LVLM_PROTOCOLS = ("1v20", "1vN")
#: Images per batch of the reference model's feature pass (the runner's default).
REFERENCE_BATCH = 64


def evaluate_lvlm(
    model: str | AnswerScorer,
    data: str | Path | ImageDataset,
    protocol: str = "1v20",
    *,
    candidates: str | Path | None = None,
    reference: str | ModelAdapter | CandidateSource | None = None,
    question: str | None = None,
    answer_template: str | None = None,
    reduction: str | None = None,
    score: str = "paper",
    batch_size: int | None = None,
    name_set: str = "openai",
    split: str | None = None,
    classes: str | Path | None = None,
    allow_outside_root: bool = False,
    store: ResultsStore | str | Path | None = None,
    cache_dir: str | Path | None = None,
    n_boot: int = M.N_BOOT,
    seed: int = 0,
    device: str = "cpu",
    show_progress: bool = True,
) -> RunResult:
    """Evaluate an LVLM on ``data`` under ``protocol`` (``1v20`` or ``1vN``) and store the run.

    Args:
        model: ``lvlm:<hub id or folder>`` (or a bare one) or a loaded :class:`AnswerScorer`.
        data: a CounterAnimal-layout folder, class folders, a manifest, or an ImageDataset.
        candidates: a JSON file of 1-vs-20 candidate sets ({label: [labels]}) to use as is.
        reference: the model whose confusions pick the 1-vs-20 candidates (paper:
            ``ViT-B-32,laion400m_e31``, the default), always with the paper's prompt and names.
        question, answer_template, reduction: the prompt and score (default: the adapter's,
            i.e. the paper's "What is the main object in the image?" / "A {c}." / mean loss).
        score: ``paper`` (the answer's loss, default), ``name-mean`` / ``name-sum`` (the name's
            tokens only) or ``pmi`` (name log-likelihood with the image minus with a blank
            image); see :data:`spurbench.models.lvlm.SCORES`. Recorded with the run.
        batch_size: candidate answers per batched forward (default: all of an image's).
        store: a results store (or its path) to write to; None writes nothing.
    """
    (result,) = evaluate_lvlm_protocols(
        model,
        data,
        (protocol,),
        reference=reference,
        candidates=candidates,
        score=score,
        name_set=name_set,
        split=split,
        classes=classes,
        allow_outside_root=allow_outside_root,
        device=device,
        question=question,
        answer_template=answer_template,
        reduction=reduction,
        batch_size=batch_size,
        store=store,
        cache_dir=cache_dir,
        n_boot=n_boot,
        seed=seed,
        show_progress=show_progress,
    )
    return result


def _score_protocol(
    adapter: AnswerScorer,
    dataset: ImageDataset,
    protocol: str,
    source: CandidateSource | None,
    *,
    question: str | None = None,
    answer_template: str | None = None,
    reduction: str | None = None,
    score: str = "paper",
    batch_size: int | None = None,
    name_set: str = "openai",
    store: ResultsStore | str | Path | None = None,
    cache_dir: str | Path | None = None,
    n_boot: int = M.N_BOOT,
    seed: int = 0,
    device: str = "cpu",
    show_progress: bool = True,
) -> RunResult:
    """One checked request (see :func:`check_lvlm_request`) scored and stored."""
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    if isinstance(store, str | Path):
        store = ResultsStore(store)
    question = question or adapter.question
    answer_template = answer_template or adapter.answer_template
    reduction = reduction or adapter.reduction

    space = label_space(
        protocol,
        dataset,
        source,
        runtime=Runtime(cache, REFERENCE_BATCH, device=device, show_progress=show_progress),
    )
    scores = S.score_answers(
        adapter,
        dataset,
        space,
        question=question,
        answer_template=answer_template,
        reduction=reduction,
        score=score,
        batch_size=batch_size,
        show_progress=show_progress,
    )
    scoring = {
        "scoring": "answer_likelihood",
        "question": question,
        "answer_template": answer_template,
        "reduction": reduction,
        "score": score,
        "chat_template_sha": adapter.chat_template_digest,
        "dtype": str(adapter.dtype).removeprefix("torch."),
    }
    # the paper's score keeps the run ids it had before scores could be chosen
    identity = {
        k: v for k, v in scoring.items() if k != "dtype" and (score != "paper" or k != "score")
    }
    result = S.run_result(
        scores,
        dataset,
        space,
        run_id=S.run_id(adapter, dataset, space, identity, name_set),
        model=adapter.name,
        n_boot=n_boot,
        seed=seed,
        score=score,
    )
    if store is not None:
        record = S.run_record(result, adapter, dataset, (question, answer_template), name_set)
        record["config"]["scoring"] = scoring
        S.write_run(store, result, record)
    return result


def evaluate_lvlm_protocols(
    model: str | AnswerScorer,
    data: str | Path | ImageDataset,
    protocols: tuple[str, ...] | list[str],
    *,
    reference: str | ModelAdapter | CandidateSource | None = None,
    candidates: str | Path | None = None,
    score: str = "paper",
    name_set: str = "openai",
    split: str | None = None,
    classes: str | Path | None = None,
    allow_outside_root: bool = False,
    device: str = "cpu",
    **options: object,
) -> list[RunResult]:
    """One LVLM under several protocols: every request is checked before the model loads (once).

    This is where :func:`spurbench.evaluate.evaluate` sends ``lvlm:`` names; ``options`` are
    :func:`evaluate_lvlm`'s (question, answer_template, store, cache_dir, n_boot, seed, ...).
    """
    if score not in SCORES:
        raise ClassListError(f"Unknown LVLM score {score!r}; choose one of {SCORES}.")
    dataset, sources = check_lvlm_request(
        data,
        protocols,
        reference=reference,
        candidates=candidates,
        name_set=name_set,
        split=split,
        classes=classes,
        allow_outside_root=allow_outside_root,
        device=device,
    )
    adapter = model if isinstance(model, AnswerScorer) else load_lvlm(model, device=device)
    return [
        _score_protocol(
            adapter,
            dataset,
            p,
            sources[p],
            score=score,
            name_set=name_set,
            device=device,
            **options,  # type: ignore[arg-type]
        )
        for p in protocols
    ]


def check_lvlm_request(
    data: str | Path | ImageDataset,
    protocols: tuple[str, ...] | list[str],
    *,
    reference: str | ModelAdapter | CandidateSource | None = None,
    candidates: str | Path | None = None,
    name_set: str = "openai",
    split: str | None = None,
    classes: str | Path | None = None,
    allow_outside_root: bool = False,
    device: str = "cpu",
) -> tuple[ImageDataset, dict[str, CandidateSource | None]]:
    """Open the dataset and check every protocol and 1-vs-20 source before the LVLM loads."""
    dataset = as_dataset(
        data, name_set=name_set, split=split, classes=classes, allow_outside_root=allow_outside_root
    )
    for protocol in protocols:
        if protocol not in LVLM_PROTOCOLS:
            raise ClassListError(
                f"Protocol {protocol!r} is not available for vision-language chat models; choose "
                f"among {LVLM_PROTOCOLS} (the paper evaluates LVLMs on 1v20; 1v1000 would score "
                "1000 answers per image)."
            )
        P.check_protocol(protocol, dataset)
    source = _lvlm_source(dataset, reference, candidates, device) if "1v20" in protocols else None
    return dataset, {p: source if p == "1v20" else None for p in protocols}


def _lvlm_source(
    dataset: ImageDataset,
    reference: str | ModelAdapter | CandidateSource | None,
    candidates: str | Path | None,
    device: str,
) -> CandidateSource:
    """The 1-vs-20 source of an LVLM run, resolved before the LVLM loads.

    The paper scores LVLMs among the sets of its CLIP reference; an LVLM has no zero-shot head
    to rank labels with, so ``reference="self"`` is refused.
    """
    if reference == SELF_REFERENCE and candidates is None:
        raise ClassListError(
            "--reference self is not available for vision-language chat models (they have no "
            f"zero-shot head to rank labels with); pass --reference {PAPER_REFERENCE} (the "
            "paper's), another CLIP, or --candidates FILE."
        )
    return prepare_candidates(reference, candidates, dataset, device)
