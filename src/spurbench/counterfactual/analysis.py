"""From per-variant predictions to per-image causes and per-model background reliance.

* Attribution of a counter photo (CounterAnimal's rare-background group): *robust* if the model
  gets it right; *background* if it fails on the photo but succeeds once only the background is
  swapped to a common one of its class (SWAP-TO-COMMON); *object* if it fails on both, so the
  object itself (pose, size, lighting) is not recognised whatever the background.
* BG-gap (Xiao et al., ICLR 2021) = acc(MIXED-SAME) − acc(MIXED-RAND): how much a background of
  the right class helps over a random one; its interval is a paired percentile bootstrap over
  source images (both variants share the object, so the pairing removes the object's variance).
* Share of the CounterAnimal drop explained by background = (acc(SWAP-TO-COMMON on counter
  photos) − acc(counter photos)) / (acc(common photos) − acc(counter photos)).

Accuracies here are per image (Xiao et al.'s convention), not class-balanced.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from spurbench.counterfactual import variants as V
from spurbench.data.dataset import COMMON, COUNTER
from spurbench.evaluate.metrics import LEVEL, N_BOOT

ROBUST, BACKGROUND, OBJECT = "robust", "background", "object"


def per_image(predictions: pd.DataFrame, variants: pd.DataFrame) -> pd.DataFrame:
    """One row per source image: ``correct_<variant>`` and ``pred_<variant>`` columns, and
    ``attribution`` for counter photos (empty for the others)."""
    p = predictions[["image_id", "correct", "topk_labels"]].merge(
        variants[["image_id", "source_id", "source_group", "label", "class_name", "variant"]],
        on="image_id",
    )
    p["pred"] = [int(t[0]) for t in p["topk_labels"]]
    wide = p.pivot(index="source_id", columns="variant", values=["correct", "pred"])
    wide.columns = [f"{what}_{variant}" for what, variant in wide.columns]
    meta = p.drop_duplicates("source_id").set_index("source_id")[
        ["label", "class_name", "source_group"]
    ]
    out = (
        meta.join(wide)
        .reset_index()
        .rename(columns={"source_id": "image_id", "source_group": "group"})
    )
    out["attribution"] = [
        attribution(r.get(f"correct_{V.ORIGINAL}"), r.get(f"correct_{V.SWAP_TO_COMMON}"))
        if r["group"] == COUNTER
        else ""
        for _, r in out.iterrows()
    ]
    return out.sort_values("image_id").reset_index(drop=True)


def attribution(correct_original: object, correct_swapped: object) -> str:
    """robust / background / object for one counter photo; empty without the swap."""
    if correct_original is None or pd.isna(correct_original):
        return ""
    if bool(correct_original):
        return ROBUST
    if correct_swapped is None or pd.isna(correct_swapped):
        return ""
    return BACKGROUND if bool(correct_swapped) else OBJECT


def paired_gap(
    a: np.ndarray, b: np.ndarray, *, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL
) -> tuple[float, float, float]:
    """mean(a) − mean(b) of paired 0/1 outcomes, with a percentile bootstrap interval."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if len(d) == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    boot = d[rng.integers(len(d), size=(n_boot, len(d)))].mean(axis=1)
    lo, hi = np.percentile(boot, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    return float(d.mean()), float(lo), float(hi)


def _acc(images: pd.DataFrame, variant: str, group: str | None = None) -> float:
    col = f"correct_{variant}"
    if col not in images:
        return float("nan")
    sel = images if group is None else images[images["group"] == group]
    values = sel[col].dropna()
    return float(values.astype(float).mean()) if len(values) else float("nan")


def model_summary(images: pd.DataFrame, *, n_boot: int = N_BOOT, seed: int = 0) -> dict[str, float]:
    """Accuracy per variant, the BG-gap and its interval, the drop and its share explained."""
    out = {f"acc_{v}": _acc(images, v) for v in V.VARIANTS}
    # a counter photo's background is, by construction, another class's usual one: the
    # background alone can only point at the photo's own class on common photos
    out["acc_only_bg_common"] = _acc(images, V.ONLY_BG, COMMON)
    pair = images.dropna(subset=[f"correct_{V.MIXED_SAME}", f"correct_{V.MIXED_RAND}"])
    gap = paired_gap(
        pair[f"correct_{V.MIXED_SAME}"].astype(float).to_numpy(),
        pair[f"correct_{V.MIXED_RAND}"].astype(float).to_numpy(),
        n_boot=n_boot,
        seed=seed,
    )
    out.update(bg_gap=gap[0], bg_gap_ci_low=gap[1], bg_gap_ci_high=gap[2])
    common = _acc(images, V.ORIGINAL, COMMON)
    counter = _acc(images, V.ORIGINAL, COUNTER)
    swapped = _acc(images, V.SWAP_TO_COMMON, COUNTER)
    drop = common - counter
    out.update(
        acc_common=common,
        acc_counter=counter,
        acc_counter_swapped=swapped,
        drop=drop,
        drop_explained=(swapped - counter) / drop if drop > 0 else float("nan"),
    )
    counts = images["attribution"].value_counts()
    for label in (ROBUST, BACKGROUND, OBJECT):
        out[f"n_{label}"] = int(counts.get(label, 0))
    return out
