"""Evaluate a model on a grouped dataset under one or more protocols, and store the results.

The path is ``dataset → model → features (cached) → head → predictions → metrics → store``.
Inputs are validated before any model runs (protocol vs class list, empty groups), images are
encoded once per (model, dataset) whatever the number of protocols, and each protocol's run is
written to the store in one transaction.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spurbench.data.classes import resolve_templates, templates_digest
from spurbench.data.dataset import ImageDataset, SourceColumns
from spurbench.data.images import check_decode
from spurbench.data.layouts import open_dataset
from spurbench.errors import ClassListError, SpurbenchError
from spurbench.evaluate import metrics as M
from spurbench.evaluate import protocols as P
from spurbench.evaluate.candidates import (
    CandidateSource,
    candidate_sets,
    candidates_digest,
    prepare_candidates,
)
from spurbench.evaluate.preflight import check_run_inputs
from spurbench.features.cache import FeatureSet, default_cache_dir, encode_dataset
from spurbench.features.ray_backend import shard_encoder_for
from spurbench.heads.cached import head_for
from spurbench.models.base import ModelAdapter
from spurbench.models.engine import attach_engine, check_engine, resolve_engine
from spurbench.models.precision import check_precision, resolve_precision
from spurbench.models.registry import create_model
from spurbench.models.spec import parse_model_name
from spurbench.store.results import ResultsStore, check_store_path

TOPK = 5


@dataclass
class RunResult:
    """What one (model, dataset, protocol) evaluation produced."""

    run_id: str
    protocol: str
    model: str
    dataset: str
    summary: pd.DataFrame
    per_class: pd.DataFrame
    predictions: pd.DataFrame
    skipped: pd.DataFrame
    candidates: dict[int, list[int]] = field(default_factory=dict)
    #: 1-vs-20 only: where the sets came from (see candidates.describe_source) and their hash.
    candidates_source: str | None = None
    candidates_hash: str | None = None
    #: LVLM runs only: how answers were scored (spurbench.models.lvlm.SCORES).
    score: str | None = None

    def _repr_html_(self) -> str:
        """The summary (metrics per group with intervals) as a table, for notebooks."""
        title = f"<p><b>{self.model}</b> · {self.dataset} · {self.protocol}</p>"
        return title + self.summary.to_html(index=False)

    def value(self, metric: str, group: str | None = None) -> float:
        rows = self.summary[self.summary["metric"] == metric]
        if group is not None:
            rows = rows[rows["group"] == group]
        return float(rows["value"].iloc[0])


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
    template_list = (
        dataset.templates
        if templates is None and dataset.templates
        else resolve_templates(templates)
    )
    check_precision(precision)
    check_engine(engine)
    check_decode(decode)
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    check_run_inputs(
        dataset,
        batch_size=batch_size,
        device=device,
        cache=cache,
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
    labels = dataset.table["label"].to_numpy()
    results = []
    for protocol in protocols:
        cand = _candidates(
            protocol,
            dataset,
            adapter,
            feats,
            template_list,
            cache,
            source,
            candidates,
            batch_size,
            num_workers,
            show_progress,
            device,
        )
        result = _score(
            adapter,
            dataset,
            feats,
            labels,
            protocol,
            cand,
            template_list,
            name_set,
            cache,
            n_boot,
            seed,
            source,
        )
        if store is not None:
            store.write_run(
                _run_record(result, adapter, dataset, protocol, template_list, name_set),
                _with_run(result.predictions, result.run_id),
                _metrics_rows(result),
                _with_run(result.skipped, result.run_id),
                {"candidates": result.candidates} if protocol == "1v20" else None,
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


def _is_lvlm(model: str | ModelAdapter) -> bool:
    """A vision-language chat model, scored by answer likelihood rather than a linear head."""
    spec = model.spec if isinstance(model, ModelAdapter) else parse_model_name(model)
    return spec.family == "lvlm"


def _load(
    model: str, source: CandidateSource | None, device: str, cache: Path
) -> ModelAdapter:
    """The evaluated model (built only when a cache misses); the reference's adapter when both
    name the same model."""
    if source is not None and source.adapter is not None and source.adapter.name == model:
        return source.adapter
    return create_model(model, device=device, cache_dir=cache)


def _candidates(
    protocol: str,
    dataset: ImageDataset,
    adapter: ModelAdapter,
    feats: FeatureSet,
    templates: tuple[str, ...],
    cache: Path,
    reference: str | ModelAdapter | CandidateSource | None,
    candidates_path: str | Path | None,
    batch_size: int,
    num_workers: int | None,
    show_progress: bool,
    device: str,
) -> dict[int, np.ndarray]:
    """The label set of each present class under ``protocol``: the one home of that choice."""
    present = dataset.present_labels
    if protocol == "1v1000":
        if dataset.label_subset is not None:
            return {y: np.array(sorted(dataset.label_subset)) for y in present}
        return P.candidates_all(len(dataset.classes), present)
    if protocol == "1vN":
        return P.candidates_present(present)
    source = prepare_candidates(reference, candidates_path, dataset, device)
    return candidate_sets(
        source,
        dataset,
        adapter,
        feats,
        templates,
        cache,
        batch_size=batch_size,
        num_workers=num_workers,
        show_progress=show_progress,
    )


def _score(
    adapter: ModelAdapter,
    dataset: ImageDataset,
    feats: FeatureSet,
    labels: np.ndarray,
    protocol: str,
    cand: dict[int, np.ndarray],
    templates: tuple[str, ...],
    name_set: str,
    cache: Path,
    n_boot: int,
    seed: int,
    source: CandidateSource | None = None,
) -> RunResult:
    needed = np.unique(np.concatenate(list(cand.values())))
    head = head_for(adapter, dataset.classes.subset(needed), templates, cache)
    position = {int(c): i for i, c in enumerate(needed)}
    local = {y: np.array([position[int(c)] for c in v]) for y, v in cand.items()}
    ok = feats.ok
    if not ok.any():
        first = feats.errors[0] if len(feats.errors) else ""
        raise ClassListError(f"No image of {dataset.name!r} could be read (first: {first}).")
    table = dataset.table
    logits = head.logits(feats.embedding[ok])
    mask = P.mask_for(local, labels[ok], len(needed))
    top, top_scores = P.restricted_topk(logits, mask, TOPK)
    top_labels = needed[top]
    y = labels[ok]
    if dataset.label_sets is None:
        correct = top_labels[:, 0] == y
        correct5 = (top_labels == y[:, None]).any(axis=1)
    else:  # several labels count as right (ObjectNet classes map to sets of ImageNet classes)
        accepted = [np.asarray(dataset.label_sets[int(t)]) for t in y]
        correct = np.array([t in a for t, a in zip(top_labels[:, 0], accepted, strict=True)])
        correct5 = np.array(
            [np.isin(row, a).any() for row, a in zip(top_labels, accepted, strict=True)]
        )
    kept = table[ok]
    predictions = pd.DataFrame(
        {
            "image_id": kept["image_id"].to_numpy(),
            "label": y.astype(int),
            "class_name": kept["class_name"].to_numpy(),
            "group_name": kept["group"].astype(str).to_numpy(),
            "background": kept["background"].astype(str).to_numpy(),
            "topk_labels": list(top_labels.astype(int)),
            "topk_scores": list(top_scores.astype(np.float32)),
            "correct": correct,
            "correct_top5": correct5,
        }
    )
    skipped = pd.DataFrame(
        {
            "image_id": table.loc[~ok, "image_id"].to_numpy(),
            "reason": [e for e, good in zip(feats.errors, ok, strict=True) if not good],
        }
    )
    groups = predictions["group_name"].to_numpy()
    summary = M.summarize(y, groups, correct, correct5, n_boot=n_boot, seed=seed)
    per_class = M.per_class(y, groups, correct)
    per_class["class_name"] = [dataset.classes.names[i] for i in per_class["label"]]
    run_id = hashlib.sha256(
        json.dumps(
            [
                adapter.fingerprint,
                adapter.name,
                dataset.digest(),
                protocol,
                templates_digest(templates),
                name_set,
                {str(k): v.tolist() for k, v in sorted(cand.items())}
                if protocol == "1v20"
                else None,
            ]
            # fp32 keeps the run ids it always had; another precision is another run
            + ([adapter.precision] if adapter.precision != "fp32" else [])
            + ([adapter.engine] if adapter.engine != "eager" else [])
            + ([f"decode-{adapter.decode}"] if adapter.decode != "exact" else [])
        ).encode()
    ).hexdigest()[:16]
    return RunResult(
        run_id,
        protocol,
        adapter.name,
        dataset.name,
        summary,
        per_class,
        predictions,
        skipped,
        {int(k): v.tolist() for k, v in cand.items()} if protocol == "1v20" else {},
        *_candidates_identity(protocol, cand, source),
    )


def _candidates_identity(
    protocol: str, cand: dict[int, np.ndarray], source: CandidateSource | None
) -> tuple[str | None, str | None]:
    """(source name, hash) of a 1-vs-20 run's sets; (None, None) for other protocols."""
    if protocol != "1v20":
        return None, None
    return (source.name if source is not None else None), candidates_digest(cand)


def _with_run(df: pd.DataFrame, run_id: str) -> pd.DataFrame:
    return df.assign(run_id=run_id)[["run_id", *df.columns]]


def _metrics_rows(result: RunResult) -> pd.DataFrame:
    overall = result.summary.rename(columns={"group": "group_name"}).assign(
        scope="overall", label=-1, class_name=""
    )
    pc = result.per_class
    per_class = pd.DataFrame(
        {
            "scope": "class",
            "label": pc["label"],
            "class_name": pc["class_name"],
            "group_name": pc["group"],
            "metric": "accuracy",
            "value": pc["accuracy"],
            "ci_low": pc["ci_low"],
            "ci_high": pc["ci_high"],
            "n": pc["n"],
        }
    )
    frames = [overall, per_class]
    if "drop" in pc:
        d = pc.drop_duplicates("label").dropna(subset=["drop"])
        frames.append(
            pd.DataFrame(
                {
                    "scope": "class",
                    "label": d["label"],
                    "class_name": d["class_name"],
                    "group_name": "common-counter",
                    "metric": "drop",
                    "value": d["drop"],
                    "ci_low": np.nan,
                    "ci_high": np.nan,
                    "n": 0,
                }
            )
        )
    df = pd.concat(frames, ignore_index=True)
    cols = [
        "scope",
        "label",
        "class_name",
        "group_name",
        "metric",
        "value",
        "ci_low",
        "ci_high",
        "n",
    ]
    return _with_run(df[cols], result.run_id)


def _run_record(
    result: RunResult,
    adapter: ModelAdapter,
    dataset: ImageDataset,
    protocol: str,
    templates: tuple[str, ...],
    name_set: str,
) -> dict[str, Any]:
    return {
        "run_id": result.run_id,
        "created_at": datetime.now(UTC).replace(tzinfo=None),
        "model": adapter.name,
        "family": adapter.spec.family,
        "arch": adapter.spec.arch,
        "pretrained": adapter.spec.pretrained or "",
        "fingerprint": adapter.fingerprint,
        "zero_shot": adapter.zero_shot,
        "dataset": dataset.name,
        "dataset_path": str(dataset.root),
        "dataset_hash": dataset.digest(),
        "protocol": protocol,
        "templates": json.dumps(list(templates)),
        "name_set": dataset.classes.name_set if dataset.classes.name_set != "custom" else name_set,
        "candidates_source": result.candidates_source,
        "candidates_hash": result.candidates_hash,
        "n_images": len(dataset),
        "n_skipped": len(result.skipped),
        "config": {
            "preprocess": adapter.preprocess_cfg.__dict__,
            "precision": adapter.precision,
            "engine": adapter.engine,
            "decode": adapter.decode,
        }
        | ({"init_seed": adapter.init_seed} if adapter.init_seed is not None else {}),
        "versions": _versions(),
    }


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("spurbench", "torch", "torchvision", "open_clip_torch", "timm", "transformers"):
        with contextlib.suppress(PackageNotFoundError):
            out[pkg] = version(pkg)
    return out
