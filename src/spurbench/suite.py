"""The ImageNet distribution-shift suite: evaluate a model on every shift present, then report
accuracies and effective robustness.

Effective robustness (ER) follows Taori et al. (NeurIPS 2020) as imagenet-testbed computes it:
on logit axes, fit a line of shift accuracy on ImageNet accuracy over a *baseline* of models, and
a model's ER is its shift accuracy minus the line's prediction at its ImageNet accuracy
(:mod:`spurbench.evaluate.effective_robustness`). The baseline is Taori et al.'s: models trained
on ImageNet-1k only, chosen by one rule (:func:`spurbench.reference.testbed.timm_in1k_only`,
applied to published and stored models alike). By default it is published: timm's results for
its ~860 ImageNet-1k-only models (ImageNetV2, Sketch, R and A), and for ObjectNet, which timm does
not report, and the mean over all five shifts, imagenet-testbed's standard ImageNet-1k models
(Taori et al.'s own testbed). The store's own ImageNet-1k-only models replace them only when
there are enough of them (:data:`MIN_STORE_BASELINE`) or when asked (``baseline="store"``).
Every ER comes with its baseline's source and number of models, and each of the user's models
is placed among the published ones (:meth:`SuiteTable.standing`), so that one CLIP model
evaluated on two datasets already has an ER and a rank. Against open_clip's zero-shot CLIP
models (``baseline="openclip"``) the columns are named ``gap_vs_clip_trend_*``: that distance is
not effective robustness.

Numbers are made comparable with published ones the way imagenet-testbed and clip_benchmark make
them: per-image top-1 accuracy, protocol 1-vs-1000 with the logits of ImageNet-R / -A / ObjectNet
restricted to their classes, ObjectNet scored by its class-set rule
(:func:`~spurbench.data.imagenet_shifts.objectnet_correct`) on images with the 2-pixel border
cropped, and OpenAI's 80 ImageNet prompts for zero-shot models (open_clip / clip_benchmark's
choice) unless told otherwise.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from PIL import Image

from spurbench.data.classes import ClassList
from spurbench.data.dataset import ImageDataset
from spurbench.data.imagenet_shifts import (
    OBJECTNET_BORDER,
    REFERENCE,
    SHIFTS,
    SUITE,
    SUITE_NAMES,
    check_names,
    crop_border,
    load_shift,
    locate,
    missing_message,
)
from spurbench.data.spec import DataSpec
from spurbench.errors import DatasetError
from spurbench.evaluate import RunResult, evaluate
from spurbench.evaluate import metrics as M
from spurbench.evaluate.effective_robustness import (
    BaselineFit,
    Transform,
    effective_robustness,
    fit_baseline,
)
from spurbench.evaluate.preflight import check_batch_size, check_cache_dir, check_device
from spurbench.models.base import Features, LinearHead, ModelAdapter
from spurbench.models.precision import check_precision, resolve_precision
from spurbench.models.registry import create_classifier
from spurbench.runtime import Runtime, runtime_from
from spurbench.store.results import ResultsStore

PROTOCOL = "1v1000"
#: Fewest baseline models a trend is fitted on (fit_baseline's own minimum).
MIN_BASELINE = 3
#: Fewest ImageNet-1k-only models of the store for ``auto`` to prefer them to the published
#: trends (82-863 models). A trend through a few models is mostly noise: for random subsets of
#: timm's ImageNet-1k-only models, the ImageNet-R slope's 5-95 % range is 0.33-1.92 with 3
#: models and 0.81-1.21 with 20 (0.95 with all 863), so a store replaces the published trend
#: only once it is a small testbed of its own. ``baseline="store"`` uses any number (>= 3).
MIN_STORE_BASELINE = 20
#: Column prefix of a model's distance from a trend that is not ImageNet-trained.
CLIP_GAP_PREFIX = "gap_vs_clip_trend_"

BaselineSource = Literal["auto", "store", "timm", "testbed", "openclip"]
BASELINE_SOURCES: tuple[str, ...] = ("auto", "store", "timm", "testbed", "openclip")


# --- ObjectNet's border, as a preprocessing step of the model ------------------------------------


class _CropThen:
    """``then(crop_border(image))``; a class, not a lambda, so DataLoader workers can pickle it."""

    def __init__(self, border: int, then: Callable[[Image.Image], torch.Tensor]) -> None:
        self.border, self.then = border, then

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.then(crop_border(image, self.border))


class BorderCropped(ModelAdapter):
    """The same model, with ``border`` pixels cropped from every side before its preprocessing.

    ObjectNet images carry a thin red frame that evaluations remove first (imagenet-testbed,
    wise-ft). Doing it here keeps the crop out of the dataset and the image reader, and the
    crop is part of ``preprocess_cfg`` (``border_crop``), hence of the feature-cache key
    and the run record: cropped and uncropped features never mix. Weights, fingerprint and head
    are the wrapped model's.
    """

    def __init__(self, inner: ModelAdapter, border: int = OBJECTNET_BORDER) -> None:
        self.inner = inner
        self.border = border
        self.spec = inner.spec
        self.module = inner.module
        self.zero_shot = inner.zero_shot
        self._fingerprint = inner.fingerprint
        cfg = inner.preprocess_cfg
        self.preprocess_cfg = dataclasses.replace(cfg, border_crop=cfg.border_crop + border)
        self.preprocess = _CropThen(border, inner.preprocess)

    def encode_images(self, images: torch.Tensor) -> Features:
        return self.inner.encode_images(images)

    def head(self, classes: ClassList, templates: Sequence[str]) -> LinearHead:
        return self.inner.head(classes, templates)

    def projection(self) -> np.ndarray | None:
        return self.inner.projection()


# --- running the suite ---------------------------------------------------------------------------


@dataclass
class SuiteResult:
    """One model's pass over the suite."""

    model: str
    #: Per-image top-1 accuracy (fraction) per evaluated dataset; ObjectNet by its set rule.
    accuracy: dict[str, float]
    runs: dict[str, RunResult]
    #: Datasets not found, each with where it was looked for and how to obtain it.
    missing: dict[str, str] = field(default_factory=dict)


def locate_datasets(
    root: str | Path | None,
    datasets: Sequence[str] | None = None,
    paths: Mapping[str, str | Path] | None = None,
) -> tuple[dict[str, Path], dict[str, str]]:
    """Split the suite into datasets found (name → folder) and missing (name → message).

    A dataset is looked for under ``root`` by its standard folder names; ``paths`` overrides
    that per dataset, and a path given explicitly must exist.
    """
    names = check_names(datasets) if datasets is not None else SUITE_NAMES
    overrides = {check_names([k])[0]: Path(v).expanduser() for k, v in (paths or {}).items()}
    found: dict[str, Path] = {}
    missing: dict[str, str] = {}
    for name in names:
        if name in overrides:
            if not overrides[name].is_dir():
                raise DatasetError(
                    f"{SUITE[name].title}: the folder given for {name}, {overrides[name]}, "
                    "does not exist."
                )
            found[name] = overrides[name]
        elif (where := locate(name, root)) is not None:
            found[name] = where
        else:
            missing[name] = missing_message(name, root)
    return found, missing


def run_suite(
    model: str | ModelAdapter,
    root: str | Path | None,
    *,
    datasets: Sequence[str] | None = None,
    paths: Mapping[str, str | Path] | None = None,
    store: ResultsStore | str | Path | None = None,
    templates: str | list[str] | None = "openai",
    name_set: str = "openai",
    objectnet_border: int = OBJECTNET_BORDER,
    n_boot: int = M.N_BOOT,
    runtime: Runtime | None = None,
    **options: Any,
) -> SuiteResult:
    """Evaluate ``model`` on every suite dataset present under ``root``; skip the others.

    Every present dataset is opened (and its layout checked) before the model is loaded, so a
    wrong folder fails in seconds. Each is evaluated with :func:`spurbench.evaluate` under
    protocol 1-vs-1000 (masked to the dataset's classes where it has a subset) and written to
    ``store``. ``templates`` defaults to OpenAI's 80 prompts, what open_clip's published
    numbers use; ``objectnet_border=0`` turns the ObjectNet crop off. ``runtime`` and the
    runtime ``options`` (``cache_dir``, ``batch_size``, ``device``, ``precision``...) are as for
    :func:`spurbench.evaluate`; the precision is resolved once for every dataset.
    """
    runtime = runtime_from(runtime, options, "run_suite")
    check_precision(runtime.precision)
    found, missing = locate_datasets(root, datasets, paths)
    if not found:
        raise DatasetError(
            "None of the suite's datasets was found:\n" + "\n".join(missing.values())
        )
    loaded: dict[str, ImageDataset] = {
        name: load_shift(name, path, name_set=name_set) for name, path in found.items()
    }
    check_batch_size(runtime.batch_size)
    check_device(runtime.device)
    check_cache_dir(runtime.cache)
    adapter = (
        model
        if isinstance(model, ModelAdapter)
        else create_classifier(model, device=runtime.device)
    )
    runtime = runtime.replace(
        precision=resolve_precision(runtime.precision, adapter, runtime.cache)
    )
    if isinstance(store, str | Path):
        store = ResultsStore(store)
    runs: dict[str, RunResult] = {}
    accuracy: dict[str, float] = {}
    for name, dataset in loaded.items():
        used = (
            BorderCropped(adapter, objectnet_border)
            if name == "objectnet" and objectnet_border > 0
            else adapter
        )
        (result,) = evaluate(
            used,
            DataSpec(dataset, name_set=name_set),
            (PROTOCOL,),
            templates=templates,
            store=store,
            n_boot=n_boot,
            runtime=runtime,
        )
        runs[name] = result
        accuracy[name] = float(result.predictions["correct"].mean())  # ObjectNet: set rule
    return SuiteResult(adapter.name, accuracy, runs, missing)


# --- the table -----------------------------------------------------------------------------------


def suite_accuracies(store: ResultsStore | str | Path) -> pd.DataFrame:
    """One row per model: ``model, zero_shot`` and the accuracy on each suite dataset (NaN where
    not evaluated). The latest 1-vs-1000 run of each (model, dataset) counts."""
    store = ResultsStore(store) if isinstance(store, str | Path) else store
    marks = ", ".join("?" * len(SUITE_NAMES))
    runs = store.query(
        f"SELECT run_id, model, zero_shot, dataset, created_at FROM runs "
        f"WHERE protocol = ? AND dataset IN ({marks}) ORDER BY created_at",
        [PROTOCOL, *SUITE_NAMES],
    )
    columns = ["model", "zero_shot", *SUITE_NAMES]
    if runs.empty:
        return pd.DataFrame(columns=columns)
    latest = runs.drop_duplicates(["model", "dataset"], keep="last")
    metrics = store.metrics(latest["run_id"].tolist(), scope="overall")
    metrics = metrics[metrics["metric"] == "accuracy"]
    value = {(r.run_id, r.group_name): float(r.value) for r in metrics.itertuples()}
    rows = []
    for r in latest.itertuples():
        acc = value.get((r.run_id, r.dataset), np.nan)  # ObjectNet's set rule applied at scoring
        rows.append((r.model, bool(r.zero_shot), r.dataset, acc))
    long = pd.DataFrame(rows, columns=["model", "zero_shot", "dataset", "accuracy"])
    zero_shot = long.groupby("model")["zero_shot"].last()
    wide = long.pivot(index="model", columns="dataset", values="accuracy")
    wide = wide.reindex(columns=list(SUITE_NAMES)).astype(float)
    wide.insert(0, "zero_shot", zero_shot.reindex(wide.index).astype(bool))
    return wide.reset_index()[columns]


@dataclass(frozen=True)
class Baseline:
    """The trend one ER column is measured against."""

    shifts: tuple[str, ...]  # y = mean accuracy over these shifts (one shift: that shift)
    source: str  # "store", "timm", "testbed", "openclip" or "given"
    description: str
    n: int
    fit: BaselineFit | None  # None when fewer than MIN_BASELINE models had the numbers

    @property
    def target(self) -> str:
        return self.shifts[0] if len(self.shifts) == 1 else "mean(" + ", ".join(self.shifts) + ")"

    @property
    def label(self) -> str:
        """Source and size, printed beside every number measured against this trend."""
        return f"{self.source} n={self.n}"


@dataclass
class SuiteTable:
    """Accuracies, mean shift accuracy and effective robustness, one row per model.

    Columns: ``model, zero_shot, imagenet``, one per shift, ``mean_shift`` (mean over the shifts
    the model has), ``n_shifts``, ``er_<shift>`` per shift and ``er_mean`` (of the mean over the
    shifts that have an ImageNet-model trend, see :func:`_mean_shifts`); all fractions. Each ER
    column has a ``<column>_baseline`` beside it, "source n=N" of the trend it was measured
    against. Against the CLIP trend (``baseline="openclip"``) the prefix is
    :data:`CLIP_GAP_PREFIX` instead of ``er_``.
    """

    table: pd.DataFrame
    baselines: list[Baseline]
    transform: str
    #: The published models (timm: one row per weights; open_clip), same accuracy columns plus
    #: ``source`` ("timm" | "openclip"), ``group`` (how :meth:`standing` counts them) and
    #: ``er_<shift>`` against the same per-shift trend as :attr:`table`, for the shifts it has.
    published: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: Prefix of the distance columns: ``er_``, or :data:`CLIP_GAP_PREFIX` against the CLIP trend.
    prefix: str = "er_"

    def notes(self) -> list[str]:
        """One line per trend used: which baseline, how many models."""
        out = []
        for b in self.baselines:
            fit = (
                f"slope {b.fit.slope:.3f}, intercept {b.fit.intercept:.3f}"
                if b.fit is not None
                else f"no fit: fewer than {MIN_BASELINE} models"
            )
            what = "ER" if self.prefix == "er_" else "Gap vs CLIP trend"
            out.append(
                f"{what} {b.target}: {b.description}, n={b.n} ({fit}; {self.transform} axes)"
            )
        return out

    def standing(self, model: str) -> list[str]:
        """Where ``model`` sits among the published models, one line per shift with an ER.

        For each published group (timm ImageNet-1k-only, timm with more data, open_clip
        zero-shot), the share of its models whose ER on that shift, against the same trend, is
        below the model's. This is what lets a user with one model and a few datasets read their
        number: about half of the ImageNet-1k models lie above their own trend, while zero-shot
        CLIP models lie far above it (Radford et al. 2021, Fig. 13).
        """
        rows = self.table[self.table["model"] == model]
        if rows.empty or self.published.empty:
            return []
        row = rows.iloc[0]
        out = []
        for shift in SHIFTS:
            col = f"{self.prefix}{shift}"
            if col not in self.published or pd.isna(row[col]):
                continue
            parts = []
            for group, members in self.published.groupby("group", sort=False):
                er = members[col].dropna()
                if not er.empty:
                    parts.append(f"{float((er < row[col]).mean()):.0%} of {len(er)} {group}")
            if parts:
                what = "ER" if self.prefix == "er_" else "gap vs CLIP trend"
                out.append(
                    f"{model} {what} {shift} {100 * row[col]:+.1f} pt "
                    f"({row[col + '_baseline']}): above " + ", ".join(parts)
                )
        return out


_DESCRIPTIONS = {
    "store": "ImageNet-1k-only models in this store (named so by timm's tag rule)",
    "timm": (
        "timm's published results, models whose tag says ImageNet-1k only "
        "(huggingface/pytorch-image-models results/; one row per weights)"
    ),
    "testbed": (
        "imagenet-testbed's published results, its standard ImageNet-1k models "
        "(Taori et al. 2020, modestyachts/imagenet-testbed robustness_top1s.csv)"
    ),
    "openclip": (
        "open_clip's published zero-shot results (CLIP models, not ImageNet-trained: ER is "
        "the distance from the CLIP trend, not from Taori et al.'s ImageNet-model trend)"
    ),
    "given": "the baseline models given",
}


def _openclip_baseline() -> pd.DataFrame:
    from spurbench.reference.testbed import load_openclip_results

    ref = load_openclip_results()
    return pd.DataFrame(
        {"model": ref["model_name"], **{n: ref[SUITE[n].openclip_column] for n in SUITE_NAMES}}
    )


#: Suite dataset -> column of timm_results.csv and testbed_results.csv (percent); timm
#: publishes no ObjectNet numbers.
TIMM_COLUMNS: dict[str, str] = {
    "imagenet": "imagenet_top1",
    "imagenet-v2": "imagenetv2_top1",
    "imagenet-sketch": "sketch_top1",
    "imagenet-r": "imagenet_r_top1",
    "imagenet-a": "imagenet_a_top1",
    "objectnet": "objectnet_top1",
}


def _as_suite(ref: pd.DataFrame) -> pd.DataFrame:
    """A published table as suite accuracies (fractions): ``model, in1k_only`` and the datasets."""
    out = pd.DataFrame({"model": ref["model_name"], "in1k_only": ref["in1k_only"]})
    for name in SUITE_NAMES:
        column = TIMM_COLUMNS[name]
        out[name] = ref[column] / 100.0 if column in ref else np.nan
    return out.reset_index(drop=True)


def timm_published(in1k_only: bool | None = True) -> pd.DataFrame:
    """timm's published results as suite accuracies (fractions), one row per set of weights.

    Columns: ``model`` (``timm:arch,tag``), ``in1k_only`` and the suite datasets (ObjectNet all
    NaN). timm evaluates some weights at two resolutions; only the row at the larger
    ``img_size`` is kept, so those weights count once in a trend rather than twice.
    ``in1k_only=True`` (the ER baseline) keeps the models whose name says ImageNet-1k only
    (:func:`~spurbench.reference.testbed.timm_in1k_only`); None keeps all.
    """
    from spurbench.reference.testbed import load_timm_results

    ref = load_timm_results(in1k_only=in1k_only)
    ref = ref.sort_values(["model", "img_size"]).drop_duplicates("model", keep="last")
    return _as_suite(ref)


def testbed_published(in1k_only: bool | None = True) -> pd.DataFrame:
    """imagenet-testbed's published results as suite accuracies (fractions), one row per model.

    Same columns as :func:`timm_published`, ObjectNet included. ``in1k_only=True`` (the ER
    baseline) keeps the testbed's standard ImageNet-1k models
    (:func:`~spurbench.reference.testbed.testbed_in1k_only`); None keeps all, False the others.
    """
    from spurbench.reference.testbed import load_testbed_results

    return _as_suite(load_testbed_results(in1k_only=in1k_only))


def published_baselines() -> pd.DataFrame:
    """Every published model the suite places the user's models among, with its group."""
    parts = []
    for source, table in (("timm", timm_published), ("testbed", testbed_published)):
        frame = table(in1k_only=None)
        frame.insert(1, "source", source)
        frame.insert(2, "group", f"{source} ImageNet-1k-only")
        frame.loc[~frame["in1k_only"].astype(bool), "group"] = f"{source} other"
        parts.append(frame.drop(columns="in1k_only"))
    clip = _openclip_baseline()
    clip.insert(1, "source", "openclip")
    clip.insert(2, "group", "open_clip zero-shot")
    return pd.concat([*parts, clip], ignore_index=True)


def _points(frame: pd.DataFrame, shifts: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    cols = [c for c in (REFERENCE, *shifts) if c in frame]
    if len(cols) < len(shifts) + 1:
        return np.empty(0), np.empty(0)
    ok = frame[cols].notna().all(axis=1)
    return (
        frame.loc[ok, REFERENCE].to_numpy(float),
        frame.loc[ok, list(shifts)].to_numpy(float).mean(axis=1),
    )


def _fit(
    x: np.ndarray, y: np.ndarray, transform: Transform, minimum: int = MIN_BASELINE
) -> BaselineFit | None:
    if x.size < max(minimum, MIN_BASELINE) or np.ptp(x) == 0.0:
        return None
    return fit_baseline(x, y, transform)


def store_baseline(acc: pd.DataFrame) -> pd.DataFrame:
    """The store's models that may form an ImageNet-1k-only baseline: not zero-shot, and named
    ImageNet-1k-only by :func:`~spurbench.reference.testbed.store_model_in1k_only` (the rule
    timm's published list is filtered by)."""
    from spurbench.reference.testbed import store_model_in1k_only

    keep = ~acc["zero_shot"].astype(bool) & acc["model"].map(store_model_in1k_only).astype(bool)
    return acc[keep]


def suite_table(
    store: ResultsStore | str | Path,
    *,
    baseline: BaselineSource | pd.DataFrame = "auto",
    transform: Transform = "logit",
) -> SuiteTable:
    """The suite's results for every model in ``store``, with effective robustness.

    ``baseline``: ``"store"`` (the store's ImageNet-1k-only models, :func:`store_baseline`),
    ``"timm"`` (timm's published ImageNet-1k-only models, :func:`timm_published`; no ObjectNet),
    ``"testbed"`` (imagenet-testbed's standard ImageNet-1k models, :func:`testbed_published`),
    ``"openclip"`` (open_clip's zero-shot CLIP models: columns named ``gap_vs_clip_trend_*``),
    ``"auto"`` (per ER column, the first of store (only with at least
    :data:`MIN_STORE_BASELINE` models having the numbers), timm, testbed that has a trend), or
    a DataFrame with columns ``imagenet`` and shift names (fractions), one row per model, e.g.
    another published ImageNet-model testbed.
    """
    acc = suite_accuracies(store)
    frames: dict[str, pd.DataFrame] = {}
    minimum = {"store": MIN_STORE_BASELINE if baseline == "auto" else MIN_BASELINE}
    if isinstance(baseline, pd.DataFrame):
        frames["given"] = baseline
    elif baseline in BASELINE_SOURCES:
        if baseline in ("auto", "store"):
            frames["store"] = store_baseline(acc)
        if baseline in ("auto", "timm"):
            frames["timm"] = timm_published(in1k_only=True)
        if baseline in ("auto", "testbed"):
            frames["testbed"] = testbed_published(in1k_only=True)
        if baseline == "openclip":
            frames["openclip"] = _openclip_baseline()
    else:
        raise ValueError(f"baseline must be one of {BASELINE_SOURCES} or a DataFrame: {baseline!r}")
    order = list(frames)

    trends: dict[tuple[str, ...], Baseline] = {}

    def trend(shifts: tuple[str, ...]) -> Baseline:
        if shifts not in trends:
            chosen = None
            for source in order:
                x, y = _points(frames[source], shifts)
                fit = _fit(x, y, transform, minimum.get(source, MIN_BASELINE))
                chosen = Baseline(shifts, source, _DESCRIPTIONS[source], int(x.size), fit)
                if chosen.fit is not None:
                    break
            assert chosen is not None
            trends[shifts] = chosen
        return trends[shifts]

    prefix = CLIP_GAP_PREFIX if baseline == "openclip" else "er_"
    table = acc.copy()
    present = table[list(SHIFTS)].notna()
    table["mean_shift"] = table[list(SHIFTS)].mean(axis=1, skipna=True)
    table["n_shifts"] = present.sum(axis=1).astype(int)
    for col in (*SHIFTS, "mean"):
        table[prefix + col] = np.nan
        table[prefix + col + "_baseline"] = ""
    for i, row in table.iterrows():
        if pd.isna(row[REFERENCE]):
            continue
        have = tuple(s for s in SHIFTS if not pd.isna(row[s]))
        for shift in have:
            _put(table, i, prefix + shift, trend((shift,)), row[REFERENCE], row[shift])
        mean_over = _mean_shifts(have, trend)
        if mean_over:
            mean_y = float(np.mean([row[s] for s in mean_over]))
            subset = (
                f", mean of {len(mean_over)} of {len(have)} shifts"
                if len(mean_over) < len(have)
                else ""
            )
            _put(table, i, prefix + "mean", trend(mean_over), row[REFERENCE], mean_y, subset)
    published = published_baselines() if not table.empty else pd.DataFrame()
    for shift in SHIFTS:
        if (shift,) in trends and not published.empty:
            published[prefix + shift] = _er_many(
                trends[(shift,)], published[REFERENCE], published[shift]
            )
    return SuiteTable(table, list(trends.values()), transform, published, prefix)


def _put(
    table: pd.DataFrame, i: object, col: str, base: Baseline, x: float, y: float, note: str = ""
) -> None:
    """One ER and, beside it, the source and size of the trend it was measured against."""
    table.at[i, col] = _er(base, x, y)
    if base.fit is not None:
        table.at[i, col + "_baseline"] = base.label + note


def _mean_shifts(
    have: tuple[str, ...], trend: Callable[[tuple[str, ...]], Baseline]
) -> tuple[str, ...]:
    """The shifts ``er_mean`` averages: all a model has, or, when no baseline model has all of
    them (``baseline="timm"``: no ObjectNet), those that have a trend; the mean's
    ``_baseline`` label then says "mean of 4 of 5 shifts", so it is never a silent subset.
    """
    if not have or trend(have).fit is not None:
        return have
    covered = tuple(s for s in have if trend((s,)).fit is not None)
    return covered if covered and trend(covered).fit is not None else have


def _er(base: Baseline, x: float, y: float) -> float:
    if base.fit is None:
        return float("nan")
    return float(effective_robustness(base.fit, x, y))


def _er_many(base: Baseline, x: pd.Series, y: pd.Series) -> np.ndarray:
    """ER of many models at once; NaN where a model lacks a number or there is no trend."""
    out = np.full(len(x), np.nan)
    ok = (x.notna() & y.notna()).to_numpy()
    if base.fit is not None and ok.any():
        out[ok] = effective_robustness(base.fit, x[ok].to_numpy(float), y[ok].to_numpy(float))
    return out


__all__ = [
    "BorderCropped",
    "SuiteResult",
    "SuiteTable",
    "locate_datasets",
    "run_suite",
    "store_baseline",
    "suite_accuracies",
    "suite_table",
    "testbed_published",
    "timm_published",
]
