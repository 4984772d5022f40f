"""Run the representation probes on any model and dataset, from the evaluation's feature cache.

The probes are those of Crabbé, Rodríguez, Shankar, Zappella & Blaas, *Interpreting CLIP:
Insights on the Robustness to ImageNet Distribution Shifts* (TMLR 2024; arXiv:2310.13040):
outlier features (kurtosis with a random-rotation control, outlier dimensions), privileged
directions of the head, a pruning sweep over them, and concept counting. The numerical core lives
in the sibling modules; this one composes it with the rest of spurbench:

``dataset → model → features (cached) → head in pre-head space → probes → results store``.

Why the features come from :func:`~spurbench.features.cache.encode_dataset`: a probe after an
evaluation of the same model on the same images reads the cached features and never calls the
image encoder again, and the zero-shot text head comes from the same head cache, so probing a
model already evaluated costs only the probe math.

The representation is the *pre-head* one, h(x) ∈ R^{d_H}: the input of the last linear map
(for CLIP the visual trunk before its projection P, for supervised models the pre-logits).
The head is rewritten to act on it:

* CLIP (``adapter.projection()`` is P, embedding = h·P): W_H = s · W · Pᵀ, W the text classifier
  and s its logit scale. CLIP heads L2-normalise the embedding before the dot product; dividing
  by ‖h·P‖ > 0 rescales every logit of an image by the same positive factor, so the argmax (and
  hence every accuracy here) is unchanged and the probes use logits = H · W_Hᵀ. A constant logit
  bias (SigLIP) is dropped for the same reason. This also holds for pruned features: projecting
  h onto kept directions and then normalising is again a positive rescaling.
* Supervised (projection None, embedding = h): W_H = W and the fc bias, logits exactly as the
  model computes them.

The class set of the head is the protocol's (1vN: the labels present in the dataset; 1v1000: all
ImageNet classes, or the dataset's label subset; 1v20: the union of the confusable sets), with the
protocol's per-image candidate mask, exactly as :func:`spurbench.evaluate.evaluate` builds them.
The default (``auto``) is the paper's: Crabbé et al. read the 1000-class ImageNet head, so a
dataset labelled with ImageNet classes is probed on 1v1000. The dataset's own classes (1vN) are an
extension, chosen explicitly or when the labels are not ImageNet's; a supervised model without a
1000-class head (e.g. one trained on a few classes) falls back to 1vN under ``auto`` with a note,
and fails under an explicit ``1v1000``. Every table and stored row names the head it used.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spurbench.data.classes import resolve_templates, templates_digest
from spurbench.data.dataset import ImageDataset
from spurbench.data.spec import DataSpec
from spurbench.errors import ClassListError, DatasetError, SpurbenchError
from spurbench.evaluate import protocols as P
from spurbench.evaluate.candidates import CandidateSource, prepare_candidates
from spurbench.evaluate.label_space import label_space
from spurbench.evaluate.runner import checked_cache
from spurbench.evaluate.scoring import restricted_head
from spurbench.evaluate.scoring import versions as scoring_versions
from spurbench.features.cache import FeatureSet
from spurbench.heads.cached import head_for
from spurbench.models.base import ModelAdapter
from spurbench.models.precision import check_precision, resolve_precision
from spurbench.probes.broden import ConceptImages, read_broden
from spurbench.probes.concepts import (
    concept_direction_scores,
    concepts_per_direction,
    linear_probe_concepts,
    top_concepts_per_direction,
)
from spurbench.probes.directions import Directions, privileged_directions
from spurbench.probes.names import AUTO_PROTOCOL, PROBES, SPACES
from spurbench.probes.outliers import (
    KurtosisSummary,
    OutlierReport,
    kurtosis_summary,
    outlier_dimensions,
)
from spurbench.probes.pruning import (
    IMPORTANCE_FRACTION,
    PruningSplit,
    held_out_pruning,
    max_prunable_fraction,
)
from spurbench.runtime import Runtime, run_specs
from spurbench.store.results import ResultsStore

__all__ = [
    "AUTO_PROTOCOL",
    "CONCEPT_COLUMNS",
    "FALLBACK_CONCEPT_COLUMNS",
    "PROBES",
    "SPACES",
    "PreHeadClassifier",
    "ProbeConfigError",
    "ProbeResult",
    "default_concept_columns",
    "json_safe",
    "pre_head_classifier",
    "probe",
    "probe_solver",
]

#: Concept columns used by default when present: the synthetic world's concepts, drawn
#: independently of the class (``spurbench.synth.world.CONCEPT_COLUMNS``). Its objects' shape,
#: colour and texture are functions of the class, so they are not concepts by default.
CONCEPT_COLUMNS: tuple[str, ...] = ("badge_colour", "badge_texture", "background")
#: Used when none of :data:`CONCEPT_COLUMNS` carries values (e.g. class folders with groups).
FALLBACK_CONCEPT_COLUMNS: tuple[str, ...] = ("background", "group")
#: Directions whose top concepts are stored, and how many concepts each.
TOP_DIRECTIONS, TOP_CONCEPTS = 5, 3
_HEAD_PROBES = frozenset({"directions", "pruning", "concepts"})


class ProbeConfigError(SpurbenchError):
    """A probe request that cannot run as asked (unknown probe, bad option)."""


@dataclass
class PreHeadClassifier:
    """The classification head rewritten to act on pre-head features h(x) (see module doc).

    ``logits(H)`` = H · weightᵀ + bias has the same argmax as the model's own head on the
    corresponding embeddings (exactly the same logits for un-normalised heads).
    """

    weight: np.ndarray  # (n_classes, d_H) float64: W_H
    bias: np.ndarray | None  # (n_classes,) or None
    labels: np.ndarray  # (n_classes,) dataset label index of each row
    composed: bool  # True when W_H = s·W·Pᵀ (a projection was composed in)
    normalized: bool  # the model's head L2-normalises its input (argmax-equivalent here)
    mask: np.ndarray | None = field(default=None, repr=False)  # (n_images, n_classes) protocol
    targets: np.ndarray | None = field(default=None, repr=False)  # (n_images,) row of each label

    def logits(self, H: np.ndarray) -> np.ndarray:
        """(n_images, n_classes) logits of pre-head features (float64)."""
        out = np.asarray(H, dtype=np.float64) @ self.weight.T
        return out if self.bias is None else out + self.bias

    def predict(self, H: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Dataset label of the top logit per image, among ``mask``'s allowed classes."""
        z = self.logits(H)
        if mask is not None:
            z = np.where(mask, z, -np.inf)
        return self.labels[z.argmax(axis=1)]

    def describe(self) -> dict[str, Any]:
        """What a probe record needs to say which head the directions came from."""
        return {
            "n_classes": int(self.weight.shape[0]),
            "dim": int(self.weight.shape[1]),
            "composed_projection": self.composed,
            "normalized_head": self.normalized,
            "logits": "H·W_Hᵀ"
            + ("" if self.bias is None else " + b")
            + (" (argmax-equivalent to the L2-normalised head)" if self.normalized else ""),
        }


@dataclass
class ProbeResult:
    """Everything one probe run of (model, dataset) produced.

    Attributes:
        kurtosis: per space (``pre_head``, ``embedding``) the kurtosis summary with its
            rotation control.
        outliers: per space the outlier-dimension report.
        head: the head in pre-head space (None when no head probe ran).
        directions: privileged directions of the head on these features.
        pruning: the pruning curve: rows for ``keep="most"`` (the paper's sweep) and
            ``keep="least"`` (the control that should collapse), measured on held-out images
            (``pruning_split.evaluation``) with directions ranked on the others.
        pruning_split: the seeded split of the readable images (positions) behind ``pruning``.
        max_prunable_fraction: largest fraction of directions prunable within ``tolerance``.
        concepts: one row per binary concept: best direction AP and which direction, linear
            probe AP, and whether each view counts it as encoded.
        concept_direction_scores: the long (concept × direction) AP table behind ``concepts``.
        rows: the tidy rows written to the store (``probe, metric, key, value, extra``).
        probe_ids: store id of each probe run.
        protocol: the head's protocol as resolved (``auto`` never appears here).
        head_label: how tables name the head, e.g. ``1v1000`` or ``1vN (10 classes)``.
        concept_source: where the concepts came from: the dataset's columns, or a Broden folder.
        notes: what was skipped and why.
        timings: wall-clock seconds per step (``features`` is the cache read, or the encoding
            when the features were not cached yet).
    """

    model: str
    fingerprint: str
    dataset: str
    dataset_hash: str
    protocol: str
    n_images: int
    n_skipped: int
    probes: tuple[str, ...]
    head_label: str = ""
    concept_source: str = ""
    kurtosis: dict[str, KurtosisSummary] = field(default_factory=dict)
    outliers: dict[str, OutlierReport] = field(default_factory=dict)
    head: PreHeadClassifier | None = None
    directions: Directions | None = None
    pruning: pd.DataFrame | None = None
    pruning_split: PruningSplit | None = None
    max_prunable_fraction: float | None = None
    prune_tolerance: float = 0.01
    concepts: pd.DataFrame | None = None
    concept_direction_scores: pd.DataFrame | None = None
    ap_threshold: float = 0.9
    rows: pd.DataFrame = field(default_factory=pd.DataFrame)
    probe_ids: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def encoded_concepts(self, view: str = "directions") -> set[str]:
        """Concepts encoded (AP ≥ threshold) by some direction, or by the linear probe."""
        if self.concepts is None:
            return set()
        col = {"directions": "encoded_by_direction", "linear_probe": "encoded_by_probe"}.get(view)
        if col is None:
            raise ValueError(f"view must be 'directions' or 'linear_probe', got {view!r}")
        return set(self.concepts.loc[self.concepts[col].astype(bool), "concept"])

    def value(self, probe: str, metric: str, key: str | int = "") -> float:
        """One stored number, e.g. ``value("kurtosis", "mean_image_kurtosis", "pre_head")``."""
        r = self.rows
        hit = r[(r["probe"] == probe) & (r["metric"] == metric) & (r["key"] == str(key))]
        if hit.empty:
            raise KeyError((probe, metric, key))
        return float(hit["value"].iloc[0])


def probe(
    model: str | ModelAdapter,
    data: str | Path | ImageDataset | DataSpec,
    *,
    probes: Sequence[str] = PROBES,
    concept_columns: Sequence[str] | None = None,
    concept_images: str | Path | None = None,
    protocol: str = AUTO_PROTOCOL,
    templates: str | list[str] | None = "paper",
    store: ResultsStore | str | Path | None = None,
    reference: str | ModelAdapter | None = None,
    candidates: str | Path | None = None,
    seed: int = 0,
    ks: Sequence[int] | None = None,
    ap_threshold: float = 0.9,
    prune_tolerance: float = 0.01,
    k_sigma: float = 6.0,
    min_fraction: float = 0.25,
    cv: int = 5,
    blas_threads: int | None = 1,
    runtime: Runtime | None = None,
    **options: Any,
) -> ProbeResult:
    """Probe ``model``'s representation of ``data`` and store the results.

    Args:
        model: a model name or a loaded adapter (as for :func:`spurbench.evaluate`).
        data: a dataset folder, manifest, or :class:`ImageDataset`.
        probes: any of :data:`PROBES`; ``pruning`` and ``concepts`` compute the directions they
            need even when ``directions`` is not asked for (it is then not stored).
        concept_columns: dataset columns holding concept labels; default: those of
            :data:`CONCEPT_COLUMNS` that carry values, else :data:`FALLBACK_CONCEPT_COLUMNS`.
            Each (column, value) pair is one binary concept.
        concept_images: a Broden-layout folder (``index.csv``, ``label.csv``, ``images/``; see
            :mod:`spurbench.probes.broden`): concepts are then counted on its images, projected
            onto the directions of the head found on ``data``, instead of ``data``'s columns.
        protocol: whose class set forms the head: ``auto`` (the paper's 1v1000 when the labels
            are ImageNet classes and the model has a 1000-class head, else 1vN, with a note),
            ``1vN`` (the dataset's classes), ``1v1000`` (all ImageNet classes) or ``1v20``
            (``reference``/``candidates`` as for evaluation).
        seed: seed of the rotation control and of the linear-probe folds.
        ks: numbers of kept directions for the pruning sweep (default: fractions of r).
        ap_threshold: AP at which a concept counts as encoded (both views).
        prune_tolerance: accuracy loss (absolute) allowed for ``max_prunable_fraction``.
        k_sigma, min_fraction: outlier-dimension criterion (|h_j| > k_sigma·σ(h) in at least
            ``min_fraction`` of images).
        cv: folds of the linear concept probe.
        blas_threads: numpy/scipy BLAS threads during the probe math (None: the library
            default); one is faster for these small matrices on a shared machine.
        runtime, **options: as for :func:`spurbench.evaluate`: data options (``name_set``,
            ``split``, ``classes``...) and runtime options (``cache_dir``, ``batch_size``,
            ``device``...). The image pass's ``precision`` (``auto`` by default) is part of the
            probe id and recorded with every probe run.
    """
    spec, runtime = run_specs(data, runtime, options, "probe")
    check_precision(runtime.precision)
    # probe ids record the precision only: other image passes are refused, not ignored
    runtime.refuse_changed(("engine", "decode", "backend"), "probe")
    wanted = _check_probes(probes)
    if not 0 < ap_threshold <= 1:
        raise ProbeConfigError(f"ap_threshold must be in (0, 1], got {ap_threshold}.")
    if cv < 2:
        raise ProbeConfigError(f"cv must be at least 2, got {cv}.")
    dataset = spec.open()
    cache = checked_cache(dataset, runtime, candidates=candidates, reference=reference)
    need_head = bool(_HEAD_PROBES & set(wanted))
    requested = protocol
    if need_head:
        protocol = resolve_head_protocol(protocol, dataset)
    if need_head and protocol == "1v20":  # a missing reference or bad file stops us here
        reference = prepare_candidates(reference, candidates, dataset, runtime.device)
    broden: ConceptImages | None = None
    if concept_images is not None and "concepts" in wanted:
        if concept_columns:
            raise ProbeConfigError("Name concept columns or a concept folder, not both.")
        broden = read_broden(concept_images)
    columns = (
        _check_concept_columns(dataset, concept_columns)
        if "concepts" in wanted and broden is None
        else []
    )
    template_list = resolve_templates(templates)
    if isinstance(model, ModelAdapter):
        adapter = model
    else:
        from spurbench.models.registry import create_classifier

        adapter = create_classifier(model, device=runtime.device)
    adapter.precision = resolve_precision(runtime.precision, adapter, cache)
    if isinstance(store, str | Path):
        store = ResultsStore(store)
    head_note = None
    if need_head:
        protocol, head_note = _check_head_protocol(adapter, dataset, protocol, requested)

    timings: dict[str, float] = {}
    clock = functools.partial(_clock, timings)
    with clock("features"):
        feats = runtime.encode(adapter, dataset)
    ok = feats.ok
    if not ok.any():
        raise DatasetError(f"No image of {dataset.name!r} could be read; nothing to probe.")
    H = feats.pre_head[ok]
    result = ProbeResult(
        model=adapter.name,
        fingerprint=adapter.fingerprint,
        dataset=dataset.name,
        dataset_hash=dataset.digest(),
        protocol=protocol,
        n_images=int(ok.sum()),
        n_skipped=int((~ok).sum()),
        probes=wanted,
        prune_tolerance=prune_tolerance,
        ap_threshold=ap_threshold,
        timings=timings,
        head_label=head_label(protocol, dataset, requested) if need_head else "",
    )
    if head_note:
        result.notes.append(head_note)
    head_cfg: dict[str, Any] = {}
    agreement = float("nan")
    if need_head:
        with clock("head"):
            head = pre_head_classifier(
                adapter,
                dataset,
                feats,
                protocol,
                template_list,
                runtime,
                reference=reference,
                candidates=candidates,
            )
        result.head = head
        if "directions" in wanted:
            with clock("head"):
                agreement = _argmax_agreement(
                    head, H, feats.embedding[ok], adapter, dataset, template_list, cache
                )
        head_cfg = {
            "protocol": protocol,
            "protocol_requested": requested,
            "templates": templates_digest(template_list),
            "classes": hashlib.sha256(head.labels.tobytes()).hexdigest()[:16],
            "candidates": None
            if head.mask is None
            else hashlib.sha256(np.packbits(head.mask).tobytes()).hexdigest()[:16],
        }

    spaces = dict(zip(SPACES, (H, feats.embedding[ok]), strict=True))
    concepts = _concept_table(dataset, columns)[ok].reset_index(drop=True) if columns else None
    concept_H = H
    if columns:
        result.concept_source = f"{dataset.name} columns: {', '.join(columns)}"
    if broden is not None:
        with clock("features"):
            cfeats = runtime.encode(adapter, broden.dataset)
        concept_H = cfeats.pre_head[cfeats.ok]
        concepts = broden.concepts[cfeats.ok].reset_index(drop=True)
        result.concept_source = f"Broden folder {broden.root.name} ({int(cfeats.ok.sum())} images)"
    if "concepts" in wanted and concepts is None:
        result.notes.append(
            f"concepts: the dataset has no concept columns "
            f"({', '.join(dict.fromkeys(CONCEPT_COLUMNS + FALLBACK_CONCEPT_COLUMNS))} all "
            "empty); pass concept_columns to name some, or a Broden-layout concept folder."
        )
    options = _Options(seed, ks, ap_threshold, prune_tolerance, k_sigma, min_fraction, cv)
    with _blas_threads(blas_threads):
        per_probe = _measure(result, spaces, concepts, concept_H, options, head_cfg, clock)
    if "concepts" in per_probe:
        source = broden.describe() if broden is not None else {"source": "dataset columns"}
        per_probe["concepts"][0]["concept_source"] = source
        per_probe["concepts"][1].insert(0, _row("concept_source", result.concept_source, 1))
    if "directions" in per_probe:
        per_probe["directions"][1].append(_row("head_argmax_agreement", "", agreement))
    for name, (_, rows) in per_probe.items():
        if name in _HEAD_PROBES and result.head is not None:
            rows.insert(0, _head_row(result, requested))

    frames = []
    versions = scoring_versions() if store is not None and per_probe else {}
    for name, (cfg, rows) in per_probe.items():
        probe_id = _probe_id(adapter, dataset, name, cfg)
        result.probe_ids[name] = probe_id
        df = _tidy(rows)
        frames.append(df.assign(probe=name, probe_id=probe_id))
        if store is not None:
            with clock("store"):
                store.write_probe(
                    _record(probe_id, name, cfg, adapter, dataset, result, template_list, versions),
                    df,
                )
    cols = [
        "model",
        "fingerprint",
        "dataset",
        "probe_id",
        "probe",
        "metric",
        "key",
        "value",
        "extra",
        "head",
    ]
    rows_df = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=["probe_id", "probe", "metric", "key", "value", "extra"])
    )
    is_head = rows_df["probe"].isin(_HEAD_PROBES)
    result.rows = rows_df.assign(
        model=adapter.name,
        fingerprint=adapter.fingerprint,
        dataset=dataset.name,
        head=np.where(is_head, result.head_label, ""),
    )[cols]
    return result


@dataclass(frozen=True)
class _Options:
    """The numerical options of one probe run (see :func:`probe`)."""

    seed: int
    ks: Sequence[int] | None
    ap_threshold: float
    prune_tolerance: float
    k_sigma: float
    min_fraction: float
    cv: int


Rows = list[dict[str, Any]]


def _measure(
    result: ProbeResult,
    spaces: dict[str, np.ndarray],
    concepts: pd.DataFrame | None,
    concept_H: np.ndarray,
    o: _Options,
    head_cfg: dict[str, Any],
    clock: Callable[[str], AbstractContextManager[None]],
) -> dict[str, tuple[dict[str, Any], Rows]]:
    """The probe math on features already in memory; fills ``result``, returns rows per probe."""
    wanted, H = result.probes, spaces["pre_head"]
    per_probe: dict[str, tuple[dict[str, Any], Rows]] = {}
    if "kurtosis" in wanted:
        with clock("kurtosis"):
            result.kurtosis = {s: kurtosis_summary(X, o.seed) for s, X in spaces.items()}
        per_probe["kurtosis"] = ({"rotation_seed": o.seed}, _kurtosis_rows(result.kurtosis))
    if "outliers" in wanted:
        with clock("outliers"):
            result.outliers = {
                s: outlier_dimensions(X, o.k_sigma, o.min_fraction) for s, X in spaces.items()
            }
        per_probe["outliers"] = (
            {"k_sigma": o.k_sigma, "min_fraction": o.min_fraction, "threshold_mode": "sigma"},
            _outlier_rows(result.outliers),
        )
    head = result.head
    if head is None:
        return per_probe
    with clock("directions"):
        dirs = result.directions = privileged_directions(head.weight, H)
    if "directions" in wanted:
        per_probe["directions"] = (head_cfg, _direction_rows(dirs))
    if "pruning" in wanted and H.shape[0] < 2:
        result.notes.append("pruning: skipped (a held-out split needs at least 2 images)")
    elif "pruning" in wanted:
        assert head.targets is not None
        mask = None if head.mask is None or head.mask.all() else head.mask
        with clock("pruning"):
            curve, split = held_out_pruning(
                H, head.weight, head.bias, head.targets, o.ks, mask, seed=o.seed
            )
        result.pruning, result.pruning_split = curve, split
        result.max_prunable_fraction = max_prunable_fraction(
            curve[curve["keep"] == "most"], o.prune_tolerance
        )
        cfg = {
            **head_cfg,
            "ks": None if o.ks is None else [int(k) for k in o.ks],
            "tolerance": o.prune_tolerance,
            "importance_fraction": IMPORTANCE_FRACTION,
            "split_seed": o.seed,
        }
        rows = _pruning_rows(curve, result.max_prunable_fraction, o.prune_tolerance)
        rows += [_row(k, "", v) for k, v in split.describe().items() if k != "split_seed"]
        per_probe["pruning"] = (cfg, rows)
    if "concepts" in wanted and concepts is not None:
        solver = probe_solver(concept_H.shape[1])
        with clock("concepts: directions"):
            scores = concept_direction_scores(concept_H, dirs, concepts)
        with clock("concepts: linear probe"):
            lin = linear_probe_concepts(concept_H, concepts, cv=o.cv, seed=o.seed, solver=solver)
        result.concept_direction_scores = scores
        result.concepts = _concept_summary(scores, lin, o.ap_threshold)
        for name, why in {**scores.attrs["skipped"], **lin.attrs["skipped"]}.items():
            result.notes.append(f"concepts: {name} skipped ({why})")
        cfg = {
            **head_cfg,
            "columns": list(concepts.columns),
            "ap_threshold": o.ap_threshold,
            "cv": o.cv,
            "seed": o.seed,
            "solver": solver,
        }
        per_probe["concepts"] = (cfg, _concept_rows(result.concepts, scores, o.ap_threshold))
    return per_probe


def _blas_threads(n: int | None) -> AbstractContextManager[Any]:
    """Cap numpy/scipy's BLAS threads (not torch's) for the probe math; None leaves them.

    The probe math is thousands of small BLAS calls (an SVD of ≤ 1000 × 1024, matrix-vector
    products inside each logistic-regression fit) where threads buy little; on a shared or busy
    machine, or right after a torch forward whose OpenMP threads still spin, two BLAS threads
    were measured 5–8× slower than one (2 cores, ViT-B-32 features: 16 s against 2 s).
    """
    if not n:
        return nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=n, user_api="blas")


@contextmanager
def _clock(timings: dict[str, float], step: str) -> Iterator[None]:
    """Add the wall-clock time of the block to ``timings[step]``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[step] = timings.get(step, 0.0) + time.perf_counter() - start


# -- the head in pre-head space ------------------------------------------------------------------


def resolve_head_protocol(protocol: str, dataset: ImageDataset) -> str:
    """``auto`` → the paper's 1v1000 when the labels are ImageNet classes, else 1vN.

    Checked before any model loads; whether the model has a 1000-class head is asked later
    (:func:`_check_head_protocol`).
    """
    if protocol == AUTO_PROTOCOL:
        return "1v1000" if dataset.classes.is_imagenet else "1vN"
    P.check_protocol(protocol, dataset)
    return protocol


def _check_head_protocol(
    adapter: ModelAdapter, dataset: ImageDataset, protocol: str, requested: str
) -> tuple[str, str | None]:
    """(protocol, note): 1v1000 needs a model that can score all 1000 ImageNet classes.

    A zero-shot model builds any text head. A supervised model has only the classes it was
    trained on: under ``auto`` it falls back to 1vN, with a note; an explicit 1v1000 fails.
    """
    if protocol != "1v1000" or adapter.zero_shot:
        return protocol, None
    try:
        adapter.head(dataset.classes, ())
    except ClassListError as err:
        if requested != AUTO_PROTOCOL:
            raise ClassListError(
                f"--protocol {protocol} needs a head over all 1000 ImageNet classes, but "
                f"{adapter.name} has none ({err}) Use --protocol 1vN to probe its own classes."
            ) from None
        return "1vN", (
            f"head: {adapter.name} has no 1000-class ImageNet head, so the probes read its "
            "head over the dataset's classes (1vN), not the paper's 1v1000."
        )
    return protocol, None


def head_label(protocol: str, dataset: ImageDataset, requested: str = "") -> str:
    """The head's name in tables: ``1v1000`` (the paper's) or ``1vN (k classes)``.

    A 1vN head chosen by ``auto`` because the model lacks a 1000-class head says so.
    """
    if protocol != "1vN":
        return protocol
    k = len(dataset.present_labels)
    fallback = requested == AUTO_PROTOCOL and dataset.classes.is_imagenet
    return f"1vN ({k} classes{', no 1000-class head' if fallback else ''})"


def _head_row(result: ProbeResult, requested: str) -> dict[str, Any]:
    """The stored row that names the head of a head probe (value: its number of classes)."""
    assert result.head is not None
    return _row(
        "head",
        result.head_label,
        len(result.head.labels),
        protocol=result.protocol,
        requested=requested,
        paper_protocol=result.protocol == "1v1000",
    )


def pre_head_classifier(
    adapter: ModelAdapter,
    dataset: ImageDataset,
    feats: FeatureSet,
    protocol: str,
    templates: tuple[str, ...],
    runtime: Runtime,
    *,
    reference: str | ModelAdapter | CandidateSource | None = None,
    candidates: str | Path | None = None,
) -> PreHeadClassifier:
    """W_H for the protocol's class set, with its candidate mask over the readable images.

    The class set, the per-class candidates and the cached head are those the evaluation path
    uses for ``protocol``, so a probe and an evaluation read the same classifier.
    """
    # The evaluation's own label space and head, so probes and evaluations cannot disagree.
    source = (
        prepare_candidates(reference, candidates, dataset, runtime.device)
        if protocol == "1v20"
        else None
    )
    space = label_space(
        protocol, dataset, source, adapter=adapter, feats=feats, templates=templates,
        runtime=runtime,
    )  # fmt: skip
    head = restricted_head(adapter, dataset, space, templates, runtime.cache)
    labels = dataset.table["label"].to_numpy()[feats.ok]
    mask = space.mask(labels)
    targets = space.columns(labels)

    W = np.asarray(head.weight, dtype=np.float64) * float(head.scale)
    proj = adapter.projection()
    d_h, d_e = feats.pre_head.shape[1], feats.embedding.shape[1]
    if proj is not None:
        proj = np.asarray(proj, dtype=np.float64)
        if proj.shape != (d_h, d_e):
            raise ClassListError(
                f"{adapter.name}: projection has shape {proj.shape}, expected ({d_h}, {d_e}) "
                "(pre_head dim × embedding dim); the cached features do not match this model."
            )
        W = W @ proj.T
    elif d_h != W.shape[1]:
        raise ClassListError(
            f"{adapter.name}: its head reads {W.shape[1]}-d embeddings but pre_head is {d_h}-d "
            "and the adapter reports no projection between them; cannot compose the head."
        )
    bias = None if head.bias is None else np.asarray(head.bias, dtype=np.float64)
    if head.normalize_input and bias is not None:
        if np.ptp(bias) > 1e-6 * max(1.0, float(np.abs(bias).max())):
            raise ClassListError(
                f"{adapter.name}: a per-class bias on an L2-normalised head has no pre-head "
                "equivalent (the normalisation no longer preserves the argmax)."
            )
        bias = None  # a constant shift changes no argmax
    return PreHeadClassifier(
        weight=W,
        bias=bias,
        labels=space.labels,
        composed=proj is not None,
        normalized=bool(head.normalize_input),
        mask=mask,
        targets=targets,
    )


def _argmax_agreement(
    head: PreHeadClassifier,
    H: np.ndarray,
    E: np.ndarray,
    adapter: ModelAdapter,
    dataset: ImageDataset,
    templates: tuple[str, ...],
    cache: Path,
) -> float:
    """Share of images whose top class from H·W_Hᵀ equals the model's own head's on E.

    A self-check stored with the directions: anything below 1 means the composition is wrong
    for this adapter (or near-ties in float rounding), and the probes read a different head.
    """
    own = head_for(adapter, dataset.classes.subset(head.labels), templates, cache)
    z = np.where(head.mask, own.logits(E), -np.inf) if head.mask is not None else own.logits(E)
    return float((head.labels[z.argmax(axis=1)] == head.predict(H, head.mask)).mean())


# -- concepts ------------------------------------------------------------------------------------


def _has_values(table: pd.DataFrame, col: str) -> bool:
    if col not in table.columns:
        return False
    s = table[col]
    return bool((s.notna() & (s.astype(str).str.strip() != "")).any())


def default_concept_columns(dataset: ImageDataset) -> list[str]:
    """The concept columns used when none are named (see :data:`CONCEPT_COLUMNS`)."""
    t = dataset.table
    found = [c for c in CONCEPT_COLUMNS if _has_values(t, c)]
    return found or [c for c in FALLBACK_CONCEPT_COLUMNS if _has_values(t, c)]


def _check_concept_columns(dataset: ImageDataset, columns: Sequence[str] | None) -> list[str]:
    if columns is None:
        return default_concept_columns(dataset)
    columns = list(dict.fromkeys(c.strip() for c in columns if c.strip()))
    missing = [c for c in columns if c not in dataset.table.columns]
    if missing:
        extra = [c for c in dataset.table.columns if c not in ("image_id", "path")]
        raise DatasetError(
            f"Dataset {dataset.name!r} has no concept column(s) {missing}; its columns are "
            f"{extra}. Add them to the manifest (one label per image) or name others."
        )
    return columns


def probe_solver(dim: int) -> str:
    """The logistic-regression solver for a linear concept probe on ``dim``-d features.

    Newton–Cholesky factorises a dim × dim Hessian each iteration, O(n·dim² + dim³): the fastest
    for small representations, but at CLIP widths (512–1024) it costs 0.2–2 s per fit on two
    cores against 10–150 ms for L-BFGS (measured, n = 160–1000), and a concept table of a few
    dozen concepts × 5 folds would cost more than the feature pass itself.
    """
    return "newton-cholesky" if dim <= 128 else "lbfgs"


def _concept_table(dataset: ImageDataset, columns: Sequence[str]) -> pd.DataFrame:
    """Concept columns as categorical labels, empty strings read as 'no label'."""
    t = dataset.table[list(columns)].copy()
    for c in t.columns:
        if t[c].dtype == object:
            t[c] = t[c].where(t[c].astype(str).str.strip() != "", None)
    return t


def _concept_summary(scores: pd.DataFrame, lin: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """One row per concept: its best direction (AP) and its linear-probe AP.

    A concept may be scored by one view only (the linear probe needs ``cv`` positives and
    negatives, the direction view one); the other view's columns are then NaN, never encoded.
    """
    base_cols = ["concept", "column", "value", "n_positives", "prevalence"]
    dir_cols = ["direction_ap", "direction", "original_index", "sign"]
    best = (
        scores.sort_values(["concept", "ap", "direction"], ascending=[True, False, True])
        .drop_duplicates("concept")
        .rename(columns={"ap": "direction_ap"})
    )
    meta = pd.concat([best[base_cols], lin[base_cols]]).drop_duplicates("concept")
    probe = lin[["concept", "score_mean", "score_std"]].rename(
        columns={"score_mean": "probe_ap", "score_std": "probe_ap_std"}
    )
    out = meta.merge(best[["concept", *dir_cols]], on="concept", how="left").merge(
        probe, on="concept", how="left"
    )
    out["encoded_by_direction"] = out["direction_ap"].fillna(0.0) >= threshold
    out["encoded_by_probe"] = out["probe_ap"].fillna(0.0) >= threshold
    return out.sort_values("concept").reset_index(drop=True)


# -- tidy rows -----------------------------------------------------------------------------------


def _row(metric: str, key: Any, value: Any, **extra: Any) -> dict[str, Any]:
    return {"metric": metric, "key": str(key), "value": _float(value), "extra": extra}


def _float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def json_safe(v: Any) -> Any:
    """JSON-safe values: numpy scalars to Python, NaN/inf to null (DuckDB's JSON rejects NaN)."""
    if isinstance(v, dict):
        return {str(k): json_safe(x) for k, x in v.items()}
    if isinstance(v, list | tuple | np.ndarray):
        return [json_safe(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _tidy(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["metric", "key", "value", "extra"])
    df["extra"] = [json.dumps(json_safe(e), allow_nan=False) for e in df["extra"]]
    df["value"] = df["value"].astype(np.float64)
    return df


def _kurtosis_rows(summaries: dict[str, KurtosisSummary]) -> list[dict[str, Any]]:
    rows = []
    for space, s in summaries.items():
        for metric, value in s.as_dict().items():
            if metric != "rotation_seed":
                rows.append(_row(metric, space, value))
    return rows


def _outlier_rows(reports: dict[str, OutlierReport]) -> list[dict[str, Any]]:
    rows = []
    for space, r in reports.items():
        med = float(np.median(r.mean_abs_activation))
        rows.append(_row("n_outliers", space, r.n_outliers))
        rows.append(_row("max_median_ratio", space, r.max_median_ratio))
        for dim, freq in zip(r.dims.tolist(), r.frequencies.tolist(), strict=True):
            mean_abs = float(r.mean_abs_activation[dim])
            rows.append(
                _row(
                    "outlier_dim",
                    f"{space}:{dim}",
                    freq,
                    space=space,
                    dim=dim,
                    mean_abs_activation=mean_abs,
                    ratio_to_median=mean_abs / med if med > 0 else None,
                )
            )
    return rows


def _direction_rows(d: Directions) -> list[dict[str, Any]]:
    rows = [_row(k, "", v) for k, v in d.summary().items()]
    total = float(d.importance.sum())
    for rank in range(len(d)):
        rows.append(
            _row(
                "importance",
                rank,
                d.importance[rank],
                original_index=int(d.original_index[rank]),
                singular_value=float(d.singular_values[rank]),
                mean_abs_cos=float(d.mean_abs_cos[rank]),
                share=float(d.importance[rank]) / total if total > 0 else None,
            )
        )
    return rows


def _pruning_rows(curve: pd.DataFrame, max_frac: float, tol: float) -> list[dict[str, Any]]:
    most = curve[curve["keep"] == "most"]
    rows = [
        _row("n_directions", "", most["n_directions"].iloc[0]),
        _row("unpruned_accuracy", "", most["unpruned_accuracy"].iloc[0]),
        _row("max_prunable_fraction", "", max_frac, tolerance=tol),
    ]
    for r in curve.itertuples():
        rows.append(
            _row(
                "accuracy" if r.keep == "most" else "accuracy_least",
                int(r.k),
                r.accuracy,
                keep=r.keep,
                fraction_kept=float(r.fraction_kept),
                fraction_pruned=float(r.fraction_pruned),
                n_correct=int(r.n_correct),
                n_images=int(r.n_images),
            )
        )
    return rows


def _concept_rows(
    summary: pd.DataFrame, scores: pd.DataFrame, threshold: float
) -> list[dict[str, Any]]:
    by_dir = summary["encoded_by_direction"].astype(bool)
    by_probe = summary["encoded_by_probe"].astype(bool)
    rows = [
        _row("n_concepts", "", len(summary)),
        _row("n_encoded", "directions", int(by_dir.sum()), threshold=threshold),
        _row("n_encoded", "linear_probe", int(by_probe.sum()), threshold=threshold),
    ]
    if not scores.empty:
        poly = concepts_per_direction(scores, threshold)
        rows.append(_row("directions_encoding_any", "", int((poly > 0).sum())))
        rows.append(_row("polysemantic_directions", "", int((poly > 1).sum())))
        rows.append(_row("max_concepts_per_direction", "", int(poly.max())))
    for r in summary.itertuples():
        common = {"column": r.column, "prevalence": r.prevalence, "n_positives": r.n_positives}
        if r.direction_ap == r.direction_ap:  # scored along directions
            rows.append(
                _row(
                    "direction_ap",
                    r.concept,
                    r.direction_ap,
                    direction=r.direction,
                    original_index=r.original_index,
                    sign=r.sign,
                    encoded=bool(r.encoded_by_direction),
                    **common,
                )
            )
            if r.encoded_by_direction:
                rows.append(_row("encoded", r.concept, r.direction_ap, direction=r.direction))
        if r.probe_ap == r.probe_ap:
            rows.append(
                _row(
                    "probe_ap",
                    r.concept,
                    r.probe_ap,
                    std=r.probe_ap_std,
                    encoded=bool(r.encoded_by_probe),
                    **common,
                )
            )
    if not scores.empty:
        top = top_concepts_per_direction(scores[scores["direction"] < TOP_DIRECTIONS], TOP_CONCEPTS)
        for r in top.itertuples():
            rows.append(
                _row(
                    "top_concept",
                    f"{r.direction}:{r.rank}",
                    r.ap,
                    concept=r.concept,
                    direction=r.direction,
                    original_index=r.original_index,
                    importance=r.importance,
                )
            )
    return rows


# -- store records -------------------------------------------------------------------------------


def _check_probes(probes: Sequence[str] | str) -> tuple[str, ...]:
    names = [p.strip() for p in (probes.split(",") if isinstance(probes, str) else probes)]
    names = [p for p in names if p]
    unknown = [p for p in names if p not in PROBES]
    if unknown or not names:
        raise ProbeConfigError(
            f"Unknown probe(s) {unknown}; choose among {', '.join(PROBES)}."
            if unknown
            else f"No probe asked for; choose among {', '.join(PROBES)}."
        )
    return tuple(p for p in PROBES if p in names)


def _probe_id(adapter: ModelAdapter, dataset: ImageDataset, name: str, cfg: dict) -> str:
    """One probe run per (model weights, dataset, probe, config): reruns replace their rows."""
    parts = [adapter.fingerprint, dataset.digest(), name, json_safe(cfg)]
    if adapter.precision != "fp32":  # fp32 keeps the probe ids it always had
        parts.append(adapter.precision)
    payload = json.dumps(parts, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _record(
    probe_id: str,
    name: str,
    cfg: dict[str, Any],
    adapter: ModelAdapter,
    dataset: ImageDataset,
    result: ProbeResult,
    templates: tuple[str, ...],
    versions: dict[str, str],
) -> dict[str, Any]:
    config: dict[str, Any] = {
        **cfg,
        "n_images": result.n_images,
        "n_skipped": result.n_skipped,
        "dataset_path": str(dataset.root),
        "representation": "pre_head",
        "precision": adapter.precision,
        "versions": versions,
    }
    if name in _HEAD_PROBES and result.head is not None:
        config["head"] = result.head.describe()
        config["template_list"] = list(templates)
    return {
        "probe_id": probe_id,
        "created_at": datetime.now(UTC).replace(tzinfo=None),
        "model": adapter.name,
        "fingerprint": adapter.fingerprint,
        "dataset": dataset.name,
        "dataset_hash": dataset.digest(),
        "probe": name,
        "config": json_safe(config),
    }
