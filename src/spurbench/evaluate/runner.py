"""Evaluate a model on a grouped dataset under one or more protocols, and store the results.

The path is ``dataset → model → features (cached) →`` the scoring pipeline of
:mod:`spurbench.evaluate.scoring` ``(label space → head → predictions → metrics) → store``.
Inputs are validated before any model runs (protocol vs class list, empty groups), images are
encoded once per (model, dataset) whatever the number of protocols, and each protocol's run is
written to the store in one transaction.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from spurbench.data.classes import resolve_templates, templates_digest
from spurbench.data.dataset import ImageDataset
from spurbench.data.images import check_decode
from spurbench.data.spec import DataSpec
from spurbench.errors import ClassListError, SpurbenchError
from spurbench.evaluate import metrics as M
from spurbench.evaluate import protocols as P
from spurbench.evaluate import scoring as S
from spurbench.evaluate.candidates import CandidateSource, prepare_candidates
from spurbench.evaluate.label_space import label_space
from spurbench.evaluate.preflight import check_run_inputs
from spurbench.evaluate.scoring import RunResult
from spurbench.features.ray_backend import shard_encoder_for
from spurbench.models.base import AnswerScorer, ImageModel, ModelAdapter
from spurbench.models.engine import attach_engine, check_engine, resolve_engine
from spurbench.models.precision import check_precision, resolve_precision
from spurbench.models.registry import create_model
from spurbench.models.spec import ANSWER_SCORER, model_kind
from spurbench.runtime import Runtime, run_specs
from spurbench.store.results import ResultsStore, check_store_path

__all__ = ["RunResult", "as_dataset", "checked_cache", "evaluate", "run_templates"]


def evaluate(
    model: str | ModelAdapter,
    data: str | Path | ImageDataset | DataSpec,
    protocols: tuple[str, ...] | list[str] = ("1v1000",),
    *,
    templates: str | list[str] | None = None,
    store: ResultsStore | str | Path | None = None,
    reference: str | ModelAdapter | None = None,
    candidates: str | Path | None = None,
    n_boot: int = M.N_BOOT,
    seed: int = 0,
    question: str | None = None,
    answer_template: str | None = None,
    score: str = "paper",
    runtime: Runtime | None = None,
    **options: Any,
) -> list[RunResult]:
    """Evaluate ``model`` on ``data`` under each protocol; returns one :class:`RunResult` each.

    Args:
        model: a name (``ViT-B-32,laion400m_e31``, ``timm:resnet50.a1_in1k``, a folder...) or
            an adapter already loaded. Vision-language chat models (``lvlm:...``) have no
            zero-shot head: they are scored by answer likelihood
            (:func:`spurbench.evaluate.lvlm.evaluate_lvlm`) on 1v20 or 1vN, with ``question``,
            ``answer_template`` and ``score``; ``batch_size`` and ``backend`` do not apply.
        data: a CounterAnimal-layout folder, class folders, a manifest, an ImageDataset, or a
            :class:`~spurbench.data.spec.DataSpec`.
        protocols: any of ``1v1000``, ``1v20``, ``1vN``.
        templates: ``paper`` ("A photo of {c}."), ``openai`` (80 prompts), a file, or a list;
            None: the dataset's own (clip_benchmark's templates file) if it ships them, else
            ``paper``.
        store: a results store (or its path) to write to; None writes nothing.
        reference: the model whose confusions pick the 1-vs-20 candidates: default the paper's
            ``ViT-B-32,laion400m_e31`` (with its own single prompt and OpenAI names, whatever
            ``templates`` says), ``"self"`` for the evaluated model's own confusions (not the
            paper's protocol); ``candidates`` a JSON file of candidate sets instead. Both are
            resolved before the model loads (see :mod:`spurbench.evaluate.candidates`).
        question, answer_template, score: LVLMs only (see
            :func:`spurbench.evaluate.lvlm.evaluate_lvlm`).
        runtime: how features are computed (:class:`~spurbench.runtime.Runtime`: cache folder,
            batch size, decode workers, device, progress, the Ray backend, and the recorded
            image-pass extensions ``precision``, ``engine``, ``decode``, whose defaults are the
            papers' exact pass).
        **options: any field of :class:`~spurbench.data.spec.DataSpec` (``name_set``,
            ``split``, ``classes``, ``allow_outside_root``, ``columns``) or of ``Runtime``
            (``cache_dir``, ``batch_size``, ``decode_workers``, ``device``...) as a keyword.
    """
    spec, runtime = run_specs(data, runtime, options, "evaluate")
    dataset = spec.open()
    protocols = P.check_protocol_names(protocols)
    if _is_lvlm(model):
        from spurbench.evaluate.lvlm import evaluate_lvlm_protocols

        return evaluate_lvlm_protocols(
            model,  # type: ignore[arg-type]
            dataset,
            protocols,
            reference=reference,
            candidates=candidates,
            question=question,
            answer_template=answer_template,
            score=score,
            store=store,
            cache_dir=runtime.cache_dir,
            n_boot=n_boot,
            seed=seed,
            device=runtime.device,
            show_progress=runtime.show_progress,
        )
    if score != "paper":
        raise ClassListError(
            f"--score {score} applies to vision-language chat models (lvlm:...) only, not to "
            f"{model if isinstance(model, str) else model.name}."
        )
    for protocol in protocols:
        P.check_protocol(protocol, dataset)
    template_list = run_templates(templates, dataset)
    check_precision(runtime.precision)
    check_engine(runtime.engine)
    check_decode(runtime.decode)
    cache = checked_cache(dataset, runtime, candidates=candidates, reference=reference)
    if isinstance(store, str | Path):
        check_store_path(store)  # a FIFO or a SQLite file: say so before the model loads
    source = (
        prepare_candidates(reference, candidates, dataset, runtime.device)
        if "1v20" in protocols
        else None
    )
    adapter = (
        model if isinstance(model, ModelAdapter) else _load(model, source, runtime.device, cache)
    )
    adapter.precision = resolve_precision(runtime.precision, adapter, cache)
    local = runtime.backend == "local"
    if not local and runtime.engine == "onnx":
        raise SpurbenchError("--engine onnx encodes in this process only (--backend local).")
    # Ray workers build their own eager models
    attach_engine(
        adapter, resolve_engine(runtime.engine, adapter, cache) if local else "eager", cache
    )
    if not local and runtime.decode != "exact":
        raise SpurbenchError("--decode draft decodes in this process only (--backend local).")
    adapter.decode = runtime.decode
    if isinstance(store, str | Path):
        store = ResultsStore(store)

    feats = runtime.encode(
        adapter,
        dataset,
        shard_encoder_for(
            runtime.backend,
            adapter,
            dataset,
            batch_size=runtime.batch_size,
            address=runtime.address,
            workers=runtime.ray_workers,
            device=runtime.device,
        ),
    )
    results = []
    for protocol in protocols:
        space = label_space(
            protocol,
            dataset,
            source,
            adapter=adapter,
            feats=feats,
            templates=template_list,
            runtime=runtime,
        )
        head = S.restricted_head(adapter, dataset, space, template_list, cache)
        result = S.run_result(
            S.score_features(feats, head, space, dataset),
            dataset,
            space,
            run_id=S.run_id(
                adapter, dataset, space, templates_digest(template_list), spec.name_set
            ),
            model=adapter.name,
            n_boot=n_boot,
            seed=seed,
        )
        if store is not None:
            S.write_run(
                store, result, S.run_record(result, adapter, dataset, template_list, spec.name_set)
            )
        results.append(result)
    return results


def as_dataset(data: str | Path | ImageDataset | DataSpec, **options: Any) -> ImageDataset:
    """``data`` as an :class:`ImageDataset`, opened (and validated) unless it already is one;
    ``options`` are :class:`~spurbench.data.spec.DataSpec` fields."""
    spec = data if isinstance(data, DataSpec) else DataSpec(data)
    return dataclasses.replace(spec, **options).open() if options else spec.open()


def _is_lvlm(model: str | ImageModel) -> bool:
    """A model that scores answers by likelihood (a vision-language chat model), not a head."""
    if isinstance(model, ImageModel):
        return isinstance(model, AnswerScorer)
    return model_kind(model) == ANSWER_SCORER


def checked_cache(
    dataset: ImageDataset,
    runtime: Runtime,
    *,
    candidates: str | Path | None = None,
    reference: object = None,
) -> Path:
    """The run's feature-cache folder, once every input that needs no model has been checked
    (see :func:`~spurbench.evaluate.preflight.check_run_inputs`): bad input fails in seconds."""
    cache = runtime.cache
    check_run_inputs(
        dataset,
        batch_size=runtime.batch_size,
        device=runtime.device,
        cache=cache,
        candidates=candidates,
        reference=reference,
    )
    return cache


def run_templates(templates: str | list[str] | None, dataset: ImageDataset) -> tuple[str, ...]:
    """The prompts of a run: those asked for, else the dataset's own, else the paper's."""
    if templates is None and dataset.templates:
        return dataset.templates
    return resolve_templates(templates)


def _load(
    model: str, source: CandidateSource | None, device: str, cache: Path
) -> ModelAdapter:
    """The evaluated model (built only when a cache misses); the reference's adapter when both
    name the same model."""
    if source is not None and source.adapter is not None and source.adapter.name == model:
        return source.adapter
    return create_model(model, device=device, cache_dir=cache)
