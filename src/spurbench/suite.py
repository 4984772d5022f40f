"""The ImageNet distribution-shift suite: evaluate a model on every shift present, then report
accuracies and effective robustness.

Effective robustness (ER) follows Taori et al. (NeurIPS 2020) as imagenet-testbed computes it:
on logit axes, fit a line of shift accuracy on ImageNet accuracy over a *baseline* of models, and
a model's ER is its shift accuracy minus the line's prediction at its ImageNet accuracy
(:mod:`spurbench.report.effective_robustness`). The baseline Taori et al. use is models trained
on ImageNet; here it is the supervised (not zero-shot) models in the results store when there
are at least three, else the published reference numbers shipped with spurbench, and the table
always says which one each ER column used and how many models it had.

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
from typing import Literal

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
from spurbench.errors import DatasetError
from spurbench.evaluate import RunResult, evaluate
from spurbench.evaluate import metrics as M
from spurbench.models.base import Features, LinearHead, ModelAdapter
from spurbench.models.registry import create_model
from spurbench.report.effective_robustness import (
    BaselineFit,
    Transform,
    effective_robustness,
    fit_baseline,
)
from spurbench.store.results import ResultsStore

PROTOCOL = "1v1000"
#: Fewest baseline models a trend is fitted on (fit_baseline's own minimum).
MIN_BASELINE = 3

BaselineSource = Literal["auto", "store", "openclip"]


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
    crop is part of ``preprocess_cfg`` (``extra["border_crop"]``), hence of the feature-cache key
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
        self.preprocess_cfg = dataclasses.replace(cfg, extra={**cfg.extra, "border_crop": border})
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
    cache_dir: str | Path | None = None,
    templates: str | list[str] | None = "openai",
    name_set: str = "openai",
    batch_size: int = 64,
    num_workers: int = 0,
    device: str = "cpu",
    objectnet_border: int = OBJECTNET_BORDER,
    n_boot: int = M.N_BOOT,
    show_progress: bool = True,
) -> SuiteResult:
    """Evaluate ``model`` on every suite dataset present under ``root``; skip the others.

    Every present dataset is opened (and its layout checked) before the model is loaded, so a
    wrong folder fails in seconds. Each is evaluated with :func:`spurbench.evaluate` under
    protocol 1-vs-1000 (masked to the dataset's classes where it has a subset) and written to
    ``store``. ``templates`` defaults to OpenAI's 80 prompts, what open_clip's published
    numbers use; ``objectnet_border=0`` turns the ObjectNet crop off.
    """
    found, missing = locate_datasets(root, datasets, paths)
    if not found:
        raise DatasetError(
            "None of the suite's datasets was found:\n" + "\n".join(missing.values())
        )
    loaded: dict[str, ImageDataset] = {
        name: load_shift(name, path, name_set=name_set) for name, path in found.items()
    }
    adapter = model if isinstance(model, ModelAdapter) else create_model(model, device=device)
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
            dataset,
            (PROTOCOL,),
            templates=templates,
            name_set=name_set,
            store=store,
            cache_dir=cache_dir,
            batch_size=batch_size,
            num_workers=num_workers,
            n_boot=n_boot,
            device=device,
            show_progress=show_progress,
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
    source: str  # "store", "openclip" or "given"
    description: str
    n: int
    fit: BaselineFit | None  # None when fewer than MIN_BASELINE models had the numbers

    @property
    def target(self) -> str:
        return self.shifts[0] if len(self.shifts) == 1 else "mean(" + ", ".join(self.shifts) + ")"


@dataclass
class SuiteTable:
    """Accuracies, mean shift accuracy and effective robustness, one row per model.

    Columns: ``model, zero_shot, imagenet``, one per shift, ``mean_shift`` (mean over the shifts
    the model has), ``n_shifts``, ``er_<shift>`` per shift and ``er_mean``; all fractions.
    """

    table: pd.DataFrame
    baselines: list[Baseline]
    transform: str

    def notes(self) -> list[str]:
        """One line per trend used: which baseline, how many models."""
        out = []
        for b in self.baselines:
            fit = (
                f"slope {b.fit.slope:.3f}, intercept {b.fit.intercept:.3f}"
                if b.fit is not None
                else f"no fit: fewer than {MIN_BASELINE} models"
            )
            out.append(f"ER {b.target}: {b.description}, n={b.n} ({fit}; {self.transform} axes)")
        return out


_DESCRIPTIONS = {
    "store": "ImageNet-trained (supervised, not zero-shot) models in this store",
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


def _points(frame: pd.DataFrame, shifts: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    cols = [c for c in (REFERENCE, *shifts) if c in frame]
    if len(cols) < len(shifts) + 1:
        return np.empty(0), np.empty(0)
    ok = frame[cols].notna().all(axis=1)
    return (
        frame.loc[ok, REFERENCE].to_numpy(float),
        frame.loc[ok, list(shifts)].to_numpy(float).mean(axis=1),
    )


def _fit(x: np.ndarray, y: np.ndarray, transform: Transform) -> BaselineFit | None:
    if x.size < MIN_BASELINE or np.ptp(x) == 0.0:
        return None
    return fit_baseline(x, y, transform)


def suite_table(
    store: ResultsStore | str | Path,
    *,
    baseline: BaselineSource | pd.DataFrame = "auto",
    transform: Transform = "logit",
) -> SuiteTable:
    """The suite's results for every model in ``store``, with effective robustness.

    ``baseline``: ``"store"`` (supervised models of the store), ``"openclip"`` (open_clip's
    published results, CLIP models only), ``"auto"`` (the store's where it has at least
    :data:`MIN_BASELINE` models with the numbers, else open_clip's; decided per ER column), or
    a DataFrame with columns ``imagenet`` and shift names (fractions), one row per model, e.g.
    a published ImageNet-model testbed.
    """
    acc = suite_accuracies(store)
    frames: dict[str, pd.DataFrame] = {}
    if isinstance(baseline, pd.DataFrame):
        frames["given"] = baseline
        order = ["given"]
    elif baseline in ("auto", "store", "openclip"):
        if baseline in ("auto", "store"):
            frames["store"] = acc[~acc["zero_shot"].astype(bool)]
        if baseline in ("auto", "openclip"):
            frames["openclip"] = _openclip_baseline()
        order = list(frames)
    else:
        raise ValueError(
            f"baseline must be 'auto', 'store', 'openclip' or a DataFrame: {baseline!r}"
        )

    trends: dict[tuple[str, ...], Baseline] = {}

    def trend(shifts: tuple[str, ...]) -> Baseline:
        if shifts not in trends:
            chosen = None
            for source in order:
                x, y = _points(frames[source], shifts)
                chosen = Baseline(
                    shifts, source, _DESCRIPTIONS[source], int(x.size), _fit(x, y, transform)
                )
                if chosen.fit is not None:
                    break
            assert chosen is not None
            trends[shifts] = chosen
        return trends[shifts]

    table = acc.copy()
    present = table[list(SHIFTS)].notna()
    table["mean_shift"] = table[list(SHIFTS)].mean(axis=1, skipna=True)
    table["n_shifts"] = present.sum(axis=1).astype(int)
    for shift in SHIFTS:
        table[f"er_{shift}"] = np.nan
    table["er_mean"] = np.nan
    for i, row in table.iterrows():
        if pd.isna(row[REFERENCE]):
            continue
        have = tuple(s for s in SHIFTS if not pd.isna(row[s]))
        for shift in have:
            table.at[i, f"er_{shift}"] = _er(trend((shift,)), row[REFERENCE], row[shift])
        if have:
            table.at[i, "er_mean"] = _er(trend(have), row[REFERENCE], row["mean_shift"])
    return SuiteTable(table, list(trends.values()), transform)


def _er(base: Baseline, x: float, y: float) -> float:
    if base.fit is None:
        return float("nan")
    return float(effective_robustness(base.fit, x, y))


__all__ = [
    "BorderCropped",
    "SuiteResult",
    "SuiteTable",
    "locate_datasets",
    "run_suite",
    "suite_accuracies",
    "suite_table",
]
