"""Spurious discovery: which background of each class a reference model does best and worst on.

The paper's step (Wang, Lin et al., NeurIPS 2024, §3, "spurious discovery"): evaluate a reference
CLIP (LAION-400M ViT-B/32, 1-vs-1000, prompt "A photo of {c}.") on every (class, background)
group of the tagged pool; keep a class when its accuracy varies by more than 5 points across its
backgrounds; its **common** group is the background with the highest accuracy and its **counter**
group the one with the lowest. Options the paper lacked, all off or neutral by default except a
minimum group size:

* ties: top-1 accuracies of groups of a few dozen images tie often (several backgrounds at
  0 % or 100 %); the paper does not say how it broke them. Here a tie goes to the background
  with the lower (counter) or higher (common) mean softmax probability of the true class, then
  to the larger group, then to the name. The gap that decides whether a class is kept is still
  the accuracy gap.
* ``min_group_size``: a background with fewer images is not eligible (a 2-image group has
  accuracy 0, 50 or 100 % and would win the argmin/argmax by noise). ``1`` is the paper.
* ``require_ci_separation``: keep a class only if, for every reference model, the exact
  (Clopper–Pearson) interval of the common group lies entirely above the counter group's.
* several reference models: the selection uses their mean accuracy per group.
* held-out models: evaluated on every group but not used to select. Choosing the argmax and
  argmin of noisy accuracies inflates the selecting models' own drop (a winner's curse); the
  drop of models that took no part in the choice, on the same pairs, shows how much. The
  ``selection_bias`` column is (mean drop of the reference models) − (this model's drop).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from spurbench.curate.pool import in_dataset
from spurbench.curate.scoring import (
    AUTO_PROTOCOL,
    ModelCache,
    Predictions,
    curation_runtime,
    predict,
)
from spurbench.data.dataset import ImageDataset
from spurbench.errors import SpurbenchError
from spurbench.evaluate.metrics import LEVEL, cell_counts, clopper_pearson
from spurbench.models.base import ModelAdapter
from spurbench.runtime import Runtime

REFERENCE, HELD_OUT = "reference", "held_out"
#: Gaps within float rounding of the threshold count as equal to it.
_EPS = 1e-9
CELL_COLUMNS = (
    "label",
    "class_name",
    "background",
    "n",
    "correct",
    "accuracy",
    "ci_low",
    "ci_high",
    "p_true",
)


@dataclass(frozen=True)
class DiscoveryConfig:
    """The selection rule; recorded in the datasheet."""

    #: keep a class if best − worst background accuracy exceeds this (paper: 5 points)
    threshold: float = 0.05
    min_group_size: int = 10
    require_ci_separation: bool = False
    level: float = LEVEL
    protocol: str = AUTO_PROTOCOL
    templates: str | tuple[str, ...] = "paper"

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold < 1.0:
            raise SpurbenchError(
                f"The gap threshold is a fraction in [0, 1), not {self.threshold}."
            )
        if self.min_group_size < 1:
            raise SpurbenchError("The minimum group size must be at least 1.")


@dataclass
class Discovery:
    """Per-group accuracies of every model, the selected pairs, and the selection-bias check."""

    #: model, role, label, class_name, background, n, correct, accuracy, ci_low, ci_high, p_true
    cells: pd.DataFrame
    #: label, class_name, kept, reason, common, counter, acc_common, acc_counter, gap,
    #: n_common, n_counter, ci_separated, n_backgrounds
    selection: pd.DataFrame
    #: model, role, label, common, counter, acc_common, acc_counter, drop
    drops: pd.DataFrame
    #: model, role, n_classes, common, counter, drop, selection_bias
    bias: pd.DataFrame
    #: name, fingerprint, role, protocol of every model
    models: list[dict[str, str]]
    config: DiscoveryConfig

    @property
    def kept(self) -> pd.DataFrame:
        return self.selection[self.selection["kept"]].reset_index(drop=True)

    def pairs(self) -> dict[int, tuple[str, str]]:
        """label -> (common background, counter background) of every kept class."""
        return {int(r.label): (r.common, r.counter) for r in self.kept.itertuples()}

    def summary(self) -> dict[str, object]:
        return {
            "config": asdict(self.config),
            "models": self.models,
            "n_classes": len(self.selection),
            "n_kept": int(self.selection["kept"].sum()),
            "dropped": {
                str(r.class_name): str(r.reason) for r in self.selection.itertuples() if not r.kept
            },
            "bias": self.bias.to_dict(orient="records"),
        }


def cell_accuracy(
    labels: np.ndarray, backgrounds: np.ndarray, correct: np.ndarray, level: float = LEVEL
) -> pd.DataFrame:
    """Accuracy per (class, background) with exact Clopper–Pearson intervals."""
    cells = cell_counts(np.asarray(labels), np.asarray(backgrounds).astype(str), correct)
    lo, hi = clopper_pearson(cells.k, cells.n, level)
    return pd.DataFrame(
        {
            "label": cells.labels.astype(int),
            "background": cells.groups,
            "n": cells.n.astype(int),
            "correct": cells.k.astype(int),
            "accuracy": cells.k / cells.n,
            "ci_low": lo,
            "ci_high": hi,
        }
    )


def model_cells(
    dataset: ImageDataset, predictions: Predictions, level: float = LEVEL
) -> pd.DataFrame:
    """One model's per-(class, background) accuracy on the images that enter the dataset."""
    rows = dataset.table[in_dataset(dataset)][["image_id", "background"]]
    merged = rows.merge(predictions.table, on="image_id", how="inner")
    if merged.empty:
        raise SpurbenchError(
            "No image has a background label yet: tag backgrounds, or correct the review file "
            "(review.csv) and feed it back, first."
        )
    df = cell_accuracy(merged["label"], merged["background"], merged["correct"], level)
    df.insert(1, "class_name", [dataset.classes.names[i] for i in df["label"]])
    mean_p = merged.groupby(["label", "background"])["p_true"].mean()
    df["p_true"] = [
        mean_p.get((y, b), np.nan) for y, b in zip(df["label"], df["background"], strict=True)
    ]
    return df


def select_pairs(
    cells: pd.DataFrame,
    references: Sequence[str],
    config: DiscoveryConfig,
    classes: dict[int, str] | None = None,
) -> pd.DataFrame:
    """Apply the selection rule to the reference models' cells (``model`` column names them).

    ``classes`` (label -> name) lists every class of the pool, so classes without any labelled
    image appear as dropped instead of vanishing.
    """
    ref = cells[cells["model"].isin(references)]
    if "p_true" not in ref.columns:
        ref = ref.assign(p_true=np.nan)
    mean = ref.groupby(["label", "background"], sort=True).agg(
        class_name=("class_name", "first"),
        accuracy=("accuracy", "mean"),
        p_true=("p_true", "mean"),
        n=("n", "min"),
    )
    names = dict(classes or {})
    names.update({int(k): v for k, v in ref.groupby("label")["class_name"].first().items()})
    rows = []
    for label in sorted(names):
        base = {"label": label, "class_name": names[label]}
        if label not in mean.index.get_level_values(0):
            rows.append({**base, **_dropped("no labelled images", 0)})
            continue
        g = mean.loc[label].reset_index()
        eligible = g[g["n"] >= config.min_group_size]
        if len(eligible) < 2:
            reason = f"fewer than 2 backgrounds with ≥ {config.min_group_size} images"
            rows.append({**base, **_dropped(reason, len(eligible))})
            continue
        # ties in accuracy (several groups at 0 % or 100 %) go to the lower / higher mean
        # probability of the true class, then to the larger group, then to the name
        order = ["accuracy", "p_true", "n", "background"]
        common = eligible.sort_values(
            order, ascending=[False, False, False, True], na_position="last"
        ).iloc[0]
        others = eligible[eligible["background"] != common["background"]]  # distinct on ties
        counter = others.sort_values(
            order, ascending=[True, True, False, True], na_position="last"
        ).iloc[0]
        gap = float(common["accuracy"] - counter["accuracy"])
        separated = _separated(ref, label, common["background"], counter["background"])
        reason = ""
        if not gap > config.threshold + _EPS:  # 15/20 - 14/20 is 5 points, not more
            reason = f"gap {100 * gap:.1f} ≤ {100 * config.threshold:g} points"
        elif config.require_ci_separation and not separated:
            reason = f"{100 * config.level:g}% intervals overlap"
        rows.append(
            {
                **base,
                "kept": reason == "",
                "reason": reason,
                "common": common["background"],
                "counter": counter["background"],
                "acc_common": float(common["accuracy"]),
                "acc_counter": float(counter["accuracy"]),
                "gap": gap,
                "n_common": int(common["n"]),
                "n_counter": int(counter["n"]),
                "ci_separated": separated,
                "n_backgrounds": len(eligible),
            }
        )
    return pd.DataFrame(rows)


def _dropped(reason: str, n_backgrounds: int) -> dict[str, object]:
    return {
        "kept": False,
        "reason": reason,
        "common": "",
        "counter": "",
        "acc_common": np.nan,
        "acc_counter": np.nan,
        "gap": np.nan,
        "n_common": 0,
        "n_counter": 0,
        "ci_separated": False,
        "n_backgrounds": n_backgrounds,
    }


def _separated(ref: pd.DataFrame, label: int, common: str, counter: str) -> bool:
    """Every reference model's common interval lies above its counter interval."""
    c = ref[ref["label"] == label]
    for _, m in c.groupby("model"):
        lo = m.loc[m["background"] == common, "ci_low"]
        hi = m.loc[m["background"] == counter, "ci_high"]
        if lo.empty or hi.empty or not float(lo.iloc[0]) > float(hi.iloc[0]):
            return False
    return True


def pair_drops(cells: pd.DataFrame, selection: pd.DataFrame) -> pd.DataFrame:
    """Every model's accuracy on each kept class's selected common and counter groups."""
    kept = selection[selection["kept"]][["label", "common", "counter"]]
    acc = cells.set_index(["model", "label", "background"])["accuracy"]
    rows = []
    for (model, role), _ in cells.groupby(["model", "role"], sort=False):
        for r in kept.itertuples():
            a_c = acc.get((model, r.label, r.common), np.nan)
            a_x = acc.get((model, r.label, r.counter), np.nan)
            rows.append((model, role, int(r.label), r.common, r.counter, a_c, a_x, a_c - a_x))
    cols = ["model", "role", "label", "common", "counter", "acc_common", "acc_counter", "drop"]
    return pd.DataFrame(rows, columns=cols)


def selection_bias(drops: pd.DataFrame) -> pd.DataFrame:
    """Class-balanced common, counter and drop per model on the selected pairs.

    ``selection_bias`` = mean drop of the reference models − this model's drop: positive for a
    held-out model means the pairs look harder to the models that chose them than to others.
    """
    if drops.empty:
        return pd.DataFrame(
            columns=["model", "role", "n_classes", "common", "counter", "drop", "selection_bias"]
        )
    per = (
        drops.groupby(["model", "role"], sort=False)
        .agg(
            n_classes=("drop", "count"),
            common=("acc_common", "mean"),
            counter=("acc_counter", "mean"),
            drop=("drop", "mean"),
        )
        .reset_index()
    )
    ref_drop = float(per.loc[per["role"] == REFERENCE, "drop"].mean())
    per["selection_bias"] = ref_drop - per["drop"]
    return per


def discover(
    dataset: ImageDataset,
    references: Sequence[str | ModelAdapter],
    *,
    held_out: Sequence[str | ModelAdapter] = (),
    config: DiscoveryConfig | None = None,
    runtime: Runtime | None = None,
    models: ModelCache | None = None,
    **options: Any,
) -> Discovery:
    """Evaluate every model on every (class, background) group and select the pairs.

    ``runtime``, ``models`` and ``options`` are as for :func:`~spurbench.curate.scoring.predict`.
    """
    config = config or DiscoveryConfig()
    runtime = curation_runtime(runtime, options, "discover")
    if not references:
        raise SpurbenchError("Spurious discovery needs at least one reference model.")
    models = models or ModelCache(runtime.device)
    frames, described = [], []
    for role, names in ((REFERENCE, references), (HELD_OUT, held_out)):
        for name in names:
            pred = predict(
                name,
                dataset,
                config.protocol,
                templates=_templates(config.templates),
                runtime=runtime,
                models=models,
            )
            frames.append(
                model_cells(dataset, pred, config.level).assign(model=pred.model, role=role)
            )
            described.append(
                {
                    "name": pred.model,
                    "fingerprint": pred.fingerprint,
                    "role": role,
                    "protocol": pred.protocol,
                }
            )
    cells = pd.concat(frames, ignore_index=True)[["model", "role", *CELL_COLUMNS]]
    ref_names = [d["name"] for d in described if d["role"] == REFERENCE]
    overlap = {d["name"] for d in described if d["role"] == HELD_OUT} & set(ref_names)
    if overlap:
        raise SpurbenchError(f"Models cannot be both reference and held out: {sorted(overlap)}.")
    pool_classes = {int(y): dataset.classes.names[int(y)] for y in dataset.present_labels}
    selection = select_pairs(cells, ref_names, config, pool_classes)
    drops = pair_drops(cells, selection)
    return Discovery(cells, selection, drops, selection_bias(drops), described, config)


def _templates(spec: str | tuple[str, ...]) -> str | list[str]:
    return spec if isinstance(spec, str) else list(spec)
