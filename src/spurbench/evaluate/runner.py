"""Evaluate a model on a grouped dataset under one or more protocols, and store the results.

The path is ``dataset → model → features (cached) →`` the scoring pipeline of
:mod:`spurbench.evaluate.scoring` ``(label space → head → predictions → metrics) → store``.
Inputs are validated before any model runs (protocol vs class list, empty groups), images are
encoded once per (model, dataset) whatever the number of protocols, and each protocol's run is
written to the store in one transaction.
"""

from __future__ import annotations

from pathlib import Path

from spurbench.data.classes import resolve_templates, templates_digest
from spurbench.data.dataset import ImageDataset, SourceColumns
from spurbench.data.images import check_decode
from spurbench.data.layouts import open_dataset
from spurbench.errors import ClassListError, SpurbenchError
from spurbench.evaluate import metrics as M
from spurbench.evaluate import protocols as P
from spurbench.evaluate import scoring as S
from spurbench.evaluate.candidates import CandidateSource, prepare_candidates
from spurbench.evaluate.label_space import label_space
from spurbench.evaluate.preflight import check_run_inputs
from spurbench.evaluate.scoring import RunResult
from spurbench.features.cache import default_cache_dir, encode_dataset
from spurbench.features.ray_backend import shard_encoder_for
from spurbench.models.base import AnswerScorer, ImageModel, ModelAdapter
from spurbench.models.engine import attach_engine, check_engine, resolve_engine
from spurbench.models.precision import check_precision, resolve_precision
from spurbench.models.registry import create_model
from spurbench.models.spec import ANSWER_SCORER, model_kind
from spurbench.store.results import ResultsStore, check_store_path

__all__ = ["RunResult", "as_dataset", "checked_cache", "evaluate", "run_templates"]


def evaluate(
    model: str | ModelAdapter,
    data: str | Path | ImageDataset,
    protocols: tuple[str, ...] | list[str] = ("1v1000",),
    *,
    templates: str | list[str] | None = None,
    name_set: str = "openai",
    split: str | None = None,
    classes: str | Path | None = None,
    allow_outside_root: bool = False,
    columns: SourceColumns | None = None,
    store: ResultsStore | str | Path | None = None,
    cache_dir: str | Path | None = None,
    batch_size: int = 64,
    num_workers: int | None = None,
    reference: str | ModelAdapter | None = None,
    candidates: str | Path | None = None,
    n_boot: int = M.N_BOOT,
    seed: int = 0,
    device: str = "cpu",
    show_progress: bool = True,
    backend: str = "local",
    address: str | None = None,
    workers: int | None = None,
    question: str | None = None,
    answer_template: str | None = None,
    score: str = "paper",
    precision: str = "fp32",
    engine: str = "eager",
    decode: str = "exact",
) -> list[RunResult]:
    """Evaluate ``model`` on ``data`` under each protocol; returns one :class:`RunResult` each.

    Args:
        model: a name (``ViT-B-32,laion400m_e31``, ``timm:resnet50.a1_in1k``, a folder...) or
            an adapter already loaded. Vision-language chat models (``lvlm:...``) have no
            zero-shot head: they are scored by answer likelihood
            (:func:`spurbench.evaluate.lvlm.evaluate_lvlm`) on 1v20 or 1vN, with ``question``,
            ``answer_template`` and ``score``; ``batch_size`` and ``backend`` do not apply.
        data: a CounterAnimal-layout folder, class folders, a manifest, or an ImageDataset.
        protocols: any of ``1v1000``, ``1v20``, ``1vN``.
        templates: ``paper`` ("A photo of {c}."), ``openai`` (80 prompts), a file, or a list;
            None: the dataset's own (clip_benchmark's templates file) if it ships them, else
            ``paper``.
        columns: image / label / group fields of a Hugging Face or WebDataset source.
        store: a results store (or its path) to write to; None writes nothing.
        reference: the model whose confusions pick the 1-vs-20 candidates: default the paper's
            ``ViT-B-32,laion400m_e31`` (with its own single prompt and OpenAI names, whatever
            ``templates`` says), ``"self"`` for the evaluated model's own confusions (not the
            paper's protocol); ``candidates`` a JSON file of candidate sets instead. Both are
            resolved before the model loads (see :mod:`spurbench.evaluate.candidates`).
        backend: where the model's images are encoded: ``local`` (this process) or ``ray``
            (missing cache shards as work units on a Ray cluster; results are bit-identical).
        address: the Ray cluster (``auto``, ``host:port``, ``ray://host:port``); None starts
            a local one with ``workers`` CPUs.
        workers: Ray encoder workers (default: as many as the cluster's CPUs allow).
        question, answer_template, score: LVLMs only (see
            :func:`spurbench.evaluate.lvlm.evaluate_lvlm`).
        precision: the image pass's ``fp32`` (exact, the default), ``bf16``/``fp16`` autocast,
            or ``auto`` (measured per machine and architecture, see
            :mod:`spurbench.models.precision`); recorded with every run.
        engine: the image tower's ``eager`` PyTorch (the default), ``onnx`` (ONNX Runtime, fp32
            on CPU) or ``auto`` (measured, see :mod:`spurbench.models.engine`); recorded.
        decode: ``exact`` (every pixel, the default) or ``draft`` (large JPEGs decoded at a
            reduced DCT scale, see :func:`spurbench.data.images.load_rgb`); recorded.
    """
    dataset = as_dataset(data, name_set, split, classes, allow_outside_root, columns)
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
            cache_dir=cache_dir,
            n_boot=n_boot,
            seed=seed,
            device=device,
            show_progress=show_progress,
        )
    if score != "paper":
        raise ClassListError(
            f"--score {score} applies to vision-language chat models (lvlm:...) only, not to "
            f"{model if isinstance(model, str) else model.name}."
        )
    for protocol in protocols:
        P.check_protocol(protocol, dataset)
    template_list = run_templates(templates, dataset)
    check_precision(precision)
    check_engine(engine)
    check_decode(decode)
    cache = checked_cache(
        dataset,
        cache_dir,
        batch_size=batch_size,
        device=device,
        candidates=candidates,
        reference=reference,
    )
    if isinstance(store, str | Path):
        check_store_path(store)  # a FIFO or a SQLite file: say so before the model loads
    source = (
        prepare_candidates(reference, candidates, dataset, device) if "1v20" in protocols else None
    )
    adapter = model if isinstance(model, ModelAdapter) else _load(model, source, device, cache)
    adapter.precision = resolve_precision(precision, adapter, cache)
    if backend != "local" and engine == "onnx":
        raise SpurbenchError("--engine onnx encodes in this process only (--backend local).")
    # Ray workers build their own eager models
    attach_engine(
        adapter, resolve_engine(engine, adapter, cache) if backend == "local" else "eager", cache
    )
    if backend != "local" and decode != "exact":
        raise SpurbenchError("--decode draft decodes in this process only (--backend local).")
    adapter.decode = decode
    if isinstance(store, str | Path):
        store = ResultsStore(store)

    feats = encode_dataset(
        adapter,
        dataset,
        cache,
        batch_size=batch_size,
        num_workers=num_workers,
        show_progress=show_progress,
        shard_encoder=shard_encoder_for(
            backend,
            adapter,
            dataset,
            batch_size=batch_size,
            address=address,
            workers=workers,
            device=device,
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
            cache=cache,
            batch_size=batch_size,
            num_workers=num_workers,
            show_progress=show_progress,
        )
        head = S.restricted_head(adapter, dataset, space, template_list, cache)
        result = S.run_result(
            S.score_features(feats, head, space, dataset),
            dataset,
            space,
            run_id=S.run_id(adapter, dataset, space, templates_digest(template_list), name_set),
            model=adapter.name,
            n_boot=n_boot,
            seed=seed,
        )
        if store is not None:
            S.write_run(
                store, result, S.run_record(result, adapter, dataset, template_list, name_set)
            )
        results.append(result)
    return results


def as_dataset(
    data: str | Path | ImageDataset,
    name_set: str = "openai",
    split: str | None = None,
    classes: str | Path | None = None,
    allow_outside_root: bool = False,
    columns: SourceColumns | None = None,
) -> ImageDataset:
    """``data`` as an :class:`ImageDataset`, opened (and validated) unless it already is one."""
    if isinstance(data, ImageDataset):
        return data
    return open_dataset(
        data,
        name_set=name_set,
        split=split,
        classes=classes,
        allow_outside_root=allow_outside_root,
        columns=columns,
    )


def _is_lvlm(model: str | ImageModel) -> bool:
    """A model that scores answers by likelihood (a vision-language chat model), not a head."""
    if isinstance(model, ImageModel):
        return isinstance(model, AnswerScorer)
    return model_kind(model) == ANSWER_SCORER


def checked_cache(
    dataset: ImageDataset,
    cache_dir: str | Path | None,
    *,
    batch_size: int,
    device: str,
    candidates: str | Path | None = None,
    reference: object = None,
) -> Path:
    """The run's feature-cache folder, once every input that needs no model has been checked
    (see :func:`~spurbench.evaluate.preflight.check_run_inputs`): bad input fails in seconds."""
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    check_run_inputs(
        dataset,
        batch_size=batch_size,
        device=device,
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
