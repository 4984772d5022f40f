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
from spurbench.data.layouts import open_dataset
from spurbench.errors import ClassListError
from spurbench.evaluate import metrics as M
from spurbench.evaluate import protocols as P
from spurbench.features.cache import FeatureSet, default_cache_dir, encode_dataset
from spurbench.features.ray_backend import shard_encoder_for
from spurbench.heads.cached import head_for
from spurbench.models.base import ModelAdapter
from spurbench.models.registry import create_model
from spurbench.store.results import ResultsStore

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
) -> list[RunResult]:
    """Evaluate ``model`` on ``data`` under each protocol; returns one :class:`RunResult` each.

    Args:
        model: a name (``ViT-B-32,laion400m_e31``, ``timm:resnet50.a1_in1k``, a folder...) or
            an adapter already loaded.
        data: a CounterAnimal-layout folder, class folders, a manifest, or an ImageDataset.
        protocols: any of ``1v1000``, ``1v20``, ``1vN``.
        templates: ``paper`` ("A photo of {c}."), ``openai`` (80 prompts), a file, or a list;
            None: the dataset's own (clip_benchmark's templates file) if it ships them, else
            ``paper``.
        columns: image / label / group fields of a Hugging Face or WebDataset source.
        store: a results store (or its path) to write to; None writes nothing.
        reference: the model whose confusions pick the 1-vs-20 candidates (default: ``model``
            when it is zero-shot); ``candidates`` a JSON file of candidate sets instead.
        backend: where the model's images are encoded: ``local`` (this process) or ``ray``
            (missing cache shards as work units on a Ray cluster; results are bit-identical).
        address: the Ray cluster (``auto``, ``host:port``, ``ray://host:port``); None starts
            a local one with ``workers`` CPUs.
        workers: Ray encoder workers (default: as many as the cluster's CPUs allow).
    """
    dataset = (
        data
        if isinstance(data, ImageDataset)
        else open_dataset(
            data,
            name_set=name_set,
            split=split,
            classes=classes,
            allow_outside_root=allow_outside_root,
            columns=columns,
        )
    )
    protocols = tuple(protocols)
    for protocol in protocols:
        P.check_protocol(protocol, dataset)
    template_list = (
        dataset.templates
        if templates is None and dataset.templates
        else resolve_templates(templates)
    )
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    adapter = model if isinstance(model, ModelAdapter) else create_model(model, device=device)
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
            reference,
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


def _candidates(
    protocol: str,
    dataset: ImageDataset,
    adapter: ModelAdapter,
    feats: FeatureSet,
    templates: tuple[str, ...],
    cache: Path,
    reference: str | ModelAdapter | None,
    candidates_path: str | Path | None,
    batch_size: int,
    num_workers: int | None,
    show_progress: bool,
    device: str,
) -> dict[int, np.ndarray]:
    present = dataset.present_labels
    if protocol == "1v1000":
        if dataset.label_subset is not None:
            return {y: np.array(sorted(dataset.label_subset)) for y in present}
        return P.candidates_all(len(dataset.classes), present)
    if protocol == "1vN":
        return P.candidates_present(present)
    if candidates_path is not None:
        return P.load_candidates(candidates_path, present)
    if reference is None:
        if not adapter.zero_shot:
            raise ClassListError(
                "1-vs-20 needs a reference model to pick each class's 20 confusable labels: "
                "pass reference='ViT-B-32,laion400m_e31' (the paper's) or a candidates file."
            )
        ref, ref_feats = adapter, feats
    else:
        ref = reference if isinstance(reference, ModelAdapter) else create_model(reference, device)
        ref_feats = (
            feats
            if ref.fingerprint == adapter.fingerprint
            else encode_dataset(
                ref,
                dataset,
                cache,
                batch_size=batch_size,
                num_workers=num_workers,
                show_progress=show_progress,
            )
        )
    head = head_for(ref, dataset.classes, templates, cache)
    ok = ref_feats.ok
    scores = head.logits(ref_feats.embedding[ok])
    return P.confusable_candidates(scores, dataset.table["label"].to_numpy()[ok])


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
) -> RunResult:
    needed = np.unique(np.concatenate(list(cand.values())))
    head = head_for(adapter, dataset.classes.subset(needed), templates, cache)
    position = {int(c): i for i, c in enumerate(needed)}
    local = {y: np.array([position[int(c)] for c in v]) for y, v in cand.items()}
    ok = feats.ok
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
    if not ok.any():
        raise ClassListError(f"No image of {dataset.name!r} could be read; see the skipped list.")
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
    )


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
        "n_images": len(dataset),
        "n_skipped": len(result.skipped),
        "config": {"preprocess": adapter.preprocess_cfg.__dict__},
        "versions": _versions(),
    }


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("spurbench", "torch", "torchvision", "open_clip_torch", "timm", "transformers"):
        with contextlib.suppress(PackageNotFoundError):
            out[pkg] = version(pkg)
    return out
