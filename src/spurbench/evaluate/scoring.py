"""From scores to a stored run: the one scoring pipeline every model kind goes through.

``label space → restricted head → scores → predictions → metrics → run record``. Feature models
score images with :func:`score_features` (logits of the head restricted to the label space);
vision-language chat models with :func:`score_answers` (answer likelihoods). Both give
:class:`Scores`, from which :func:`run_result` builds the predictions table, the metrics and the
run id, and :func:`write_run` stores it, so every kind of model yields the same tables and the
report and queries treat them alike.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from spurbench.data.dataset import ImageDataset
from spurbench.errors import ClassListError
from spurbench.evaluate import metrics as M
from spurbench.evaluate import protocols as P
from spurbench.evaluate.label_space import LabelSpace

if TYPE_CHECKING:
    from spurbench.features.cache import FeatureSet
    from spurbench.models.base import AnswerScorer, ImageModel, LinearHead, ModelAdapter
    from spurbench.store.results import ResultsStore

#: Labels kept per image in the predictions table.
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

    @property
    def headline(self) -> M.Summary:
        """Balanced common and counter accuracy and the drop, each with its interval."""
        return M.headline(self.summary)

    def value(self, metric: str, group: str | None = None) -> float:
        rows = self.summary[self.summary["metric"] == metric]
        if group is not None:
            rows = rows[rows["group"] == group]
        return float(rows["value"].iloc[0])


@dataclass(frozen=True)
class Scores:
    """Each readable image's top-k labels among its label space, and why the others were not.

    ``ok`` marks the dataset's rows that were scored; ``topk_labels`` (global labels) and
    ``topk_scores`` (higher is better: logits, or negative answer losses) have one row per
    scored image; ``errors`` has one entry per dataset row ("" where scored). ``logits`` holds
    the restricted head's full logits when the scores came from features.
    """

    ok: np.ndarray
    errors: list[str]
    topk_labels: np.ndarray
    topk_scores: np.ndarray
    logits: np.ndarray | None = None


def restricted_head(
    adapter: ModelAdapter,
    dataset: ImageDataset,
    space: LabelSpace,
    templates: Sequence[str],
    cache: Path | None,
) -> LinearHead:
    """The model's (cached) head over the label space's labels, in :attr:`LabelSpace.labels`
    order."""
    from spurbench.heads.cached import head_for

    return head_for(adapter, dataset.classes.subset(space.labels), templates, cache)


def score_features(
    feats: FeatureSet, head: LinearHead, space: LabelSpace, dataset: ImageDataset
) -> Scores:
    """Top-k labels of each readable image: the head's logits restricted to its label set."""
    ok = feats.ok
    if not ok.any():
        first = feats.errors[0] if len(feats.errors) else ""
        raise ClassListError(f"No image of {dataset.name!r} could be read (first: {first}).")
    y = dataset.table["label"].to_numpy()[ok]
    logits = head.logits(feats.embedding[ok])
    top, top_scores = P.restricted_topk(logits, space.mask(y), TOPK)
    return Scores(ok, list(feats.errors), space.labels[top], top_scores, logits)


def score_answers(
    adapter: AnswerScorer,
    dataset: ImageDataset,
    space: LabelSpace,
    *,
    question: str,
    answer_template: str,
    reduction: str,
    score: str,
    batch_size: int | None = None,
    show_progress: bool = False,
) -> Scores:
    """Top-k labels of each readable image by answer likelihood (lowest loss first).

    Each candidate name is scored as the answer to ``question``; ``topk_scores`` are negative
    losses, so higher is better as for logits.
    """
    from spurbench.data.images import load_rgb
    from spurbench.progress import progress_bar

    table = dataset.table
    labels = table["label"].to_numpy().astype(int)
    names = dataset.classes.names
    ok = np.zeros(len(table), dtype=bool)
    errors = [""] * len(table)
    top_labels: list[np.ndarray] = []
    top_scores: list[np.ndarray] = []
    with progress_bar(f"LVLM {space.protocol}", len(table), enabled=show_progress) as bar:
        for i, path in enumerate(table["path"]):
            try:
                image = load_rgb(str(path))
            except Exception as e:
                errors[i] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
                bar.advance()
                continue
            options = space.sets.get(int(labels[i]))
            if options is None:  # the reference could read none of this class's images
                errors[i] = "no candidate set for this label"
                bar.advance()
                continue
            loss = adapter.score_candidates(
                [image],
                question,
                [[names[c] for c in options]],
                answer_template=answer_template,
                reduction=reduction,
                batch_size=batch_size,
                score=score,
            )[0]
            order = np.argsort(loss, kind="stable")[:TOPK]  # ties: lower label index first
            top_labels.append(np.asarray(options)[order])
            top_scores.append(-loss[order])
            ok[i] = True
            bar.advance()
    if not ok.any():
        raise ClassListError(f"No image of {dataset.name!r} could be read; see the skipped list.")
    return Scores(ok, errors, np.stack(top_labels), np.stack(top_scores))


def predictions(scores: Scores, dataset: ImageDataset, space: LabelSpace) -> pd.DataFrame:
    """One row per scored image: its labels, group, top-k labels and scores, right or not."""
    kept = dataset.table[scores.ok]
    y = kept["label"].to_numpy().astype(int)
    correct, correct5 = space.correct(scores.topk_labels, y)
    return pd.DataFrame(
        {
            "image_id": kept["image_id"].to_numpy(),
            "label": y,
            "class_name": kept["class_name"].to_numpy(),
            "group_name": kept["group"].astype(str).to_numpy(),
            "background": kept["background"].astype(str).to_numpy(),
            "topk_labels": list(scores.topk_labels.astype(int)),
            "topk_scores": list(scores.topk_scores.astype(np.float32)),
            "correct": correct,
            "correct_top5": correct5,
        }
    )


def skipped(scores: Scores, dataset: ImageDataset) -> pd.DataFrame:
    """The dataset's images that were not scored, with the reason."""
    table = dataset.table
    return pd.DataFrame(
        {
            "image_id": table.loc[~scores.ok, "image_id"].to_numpy(),
            "reason": [e for e, good in zip(scores.errors, scores.ok, strict=True) if not good],
        }
    )


def run_id(
    adapter: ImageModel,
    dataset: ImageDataset,
    space: LabelSpace,
    scoring: str | dict[str, Any],
    name_set: str,
) -> str:
    """The run's identity: the weights, the data, the protocol and its sets, how it was scored.

    ``scoring`` is the templates' digest for feature models, the prompt and score settings for
    LVLMs. Reruns of the same identity replace their rows in the store.
    """
    payload = [
        adapter.fingerprint,
        adapter.name,
        dataset.digest(),
        space.protocol,
        scoring,
        name_set,
        space.identity,
    ]
    # fp32 keeps the run ids it always had; another precision is another run
    payload += [adapter.precision] if adapter.precision != "fp32" else []
    payload += [adapter.engine] if adapter.engine != "eager" else []
    payload += [f"decode-{adapter.decode}"] if adapter.decode != "exact" else []
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:16]


def run_result(
    scores: Scores,
    dataset: ImageDataset,
    space: LabelSpace,
    *,
    run_id: str,
    model: str,
    n_boot: int = M.N_BOOT,
    seed: int = 0,
    score: str | None = None,
) -> RunResult:
    """Predictions, the summary with intervals and the per-class table of one run."""
    preds = predictions(scores, dataset, space)
    y = preds["label"].to_numpy()
    groups = preds["group_name"].to_numpy()
    correct, correct5 = preds["correct"].to_numpy(), preds["correct_top5"].to_numpy()
    summary = M.summarize(y, groups, correct, correct5, n_boot=n_boot, seed=seed)
    per_class = M.per_class(y, groups, correct)
    per_class["class_name"] = [dataset.classes.names[i] for i in per_class["label"]]
    return RunResult(
        run_id,
        space.protocol,
        model,
        dataset.name,
        summary,
        per_class,
        preds,
        skipped(scores, dataset),
        space.stored_sets,
        space.source_name,
        space.digest,
        score,
    )


def run_record(
    result: RunResult,
    adapter: ImageModel,
    dataset: ImageDataset,
    templates: Sequence[str],
    name_set: str,
) -> dict[str, Any]:
    """The store's row describing a run: model, data, protocol, prompts and versions."""
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
        "protocol": result.protocol,
        "templates": json.dumps(list(templates)),
        "name_set": dataset.classes.name_set if dataset.classes.name_set != "custom" else name_set,
        "candidates_source": result.candidates_source,
        "candidates_hash": result.candidates_hash,
        "n_images": len(dataset),
        "n_skipped": len(result.skipped),
        "config": {
            "preprocess": adapter.preprocess_cfg.as_dict(),
            "precision": adapter.precision,
            "engine": adapter.engine,
            "decode": adapter.decode,
        }
        | ({"init_seed": adapter.init_seed} if adapter.init_seed is not None else {}),
        "versions": versions(),
    }


def write_run(store: ResultsStore, result: RunResult, record: dict[str, Any]) -> None:
    """Store a run (its record, predictions, metrics, skipped images, sets) in one transaction."""
    store.write_run(
        record,
        with_run(result.predictions, result.run_id),
        metrics_rows(result),
        with_run(result.skipped, result.run_id),
        {"candidates": result.candidates} if result.protocol == "1v20" else None,
    )


def with_run(df: pd.DataFrame, run_id: str) -> pd.DataFrame:
    """``df`` with the run id as its first column, as the store's tables have it."""
    return df.assign(run_id=run_id)[["run_id", *df.columns]]


def metrics_rows(result: RunResult) -> pd.DataFrame:
    """The run's summary and per-class accuracies and drops as the store's metrics rows."""
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
                    "group_name": M.DROP_GROUP,
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
    return with_run(df[cols], result.run_id)


def versions() -> dict[str, str]:
    """Versions of the packages that can move a number, recorded with every run and probe."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("spurbench", "torch", "torchvision", "open_clip_torch", "timm", "transformers"):
        with contextlib.suppress(PackageNotFoundError):
            out[pkg] = version(pkg)
    return out
