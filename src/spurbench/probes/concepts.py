"""Concept counting: which human concepts each privileged direction (or a linear probe) encodes.

Follows the concept analysis of Crabbé, Rodríguez, Shankar, Zappella & Blaas, *Interpreting
CLIP: Insights on the Robustness to ImageNet Distribution Shifts* (TMLR 2024; arXiv:2310.13040).
A direction v_i *encodes* a binary concept when ranking images by their coordinate ⟨h(x), v_i⟩
puts the concept's images first, measured by average precision (AP); counting concepts encoded by
some direction, and concepts that only one model encodes, compares what representation spaces
store. The v1 abstract reports robust models encode more concepts, with highly polysemantic
directions; the TMLR version finds zero-shot CLIP encodes more *unique* concepts but attributes
that to language supervision rather than robustness.

Concept tables are pandas DataFrames aligned with the feature rows; each column is categorical
and each (column, value) pair is one binary concept named ``"column=value"``. Boolean columns
contribute only their True value; a boolean column already named ``"category=name"`` is one
concept of a multi-label table (an image may show many objects, as in Broden) and keeps that
name. Missing values (NaN/None) count as "not this value".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.model_selection import StratifiedKFold

from spurbench.probes.directions import Directions

__all__ = [
    "binary_concepts",
    "concept_direction_scores",
    "concepts_per_direction",
    "count_concepts",
    "encoded_concepts",
    "linear_probe_concepts",
    "top_concepts_per_direction",
    "unique_concepts",
]

# Cap on the (n_images × n_concepts) work block of the vectorised AP, in elements.
_BLOCK_ELEMENTS = 4_000_000
# Rows of H converted to float64 at a time.
_CHUNK_ROWS = 8192


def _sort_key(v: object) -> tuple[int, float, str]:
    if isinstance(v, (int, float, np.number)):
        return (0, float(v), "")  # type: ignore[arg-type]
    return (1, 0.0, str(v))


def binary_concepts(concepts: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """Expand a categorical concept table into binary concepts.

    Returns ``(meta, Y)``: ``meta`` has one row per concept with columns ``concept`` ("col=val"),
    ``column``, ``value``; ``Y`` is the (n_images, n_concepts) boolean membership matrix.
    Values are ordered numerically-then-by-string so concept order is deterministic.
    """
    if not isinstance(concepts, pd.DataFrame):
        raise TypeError("concepts must be a pandas DataFrame")
    names: list[str] = []
    cols: list[object] = []
    vals: list[object] = []
    blocks: list[np.ndarray] = []
    for col in concepts.columns:
        s = concepts[col]
        if pd.api.types.is_bool_dtype(s.dtype) and "=" in str(col):
            category, _, value = str(col).partition("=")
            names.append(str(col))
            cols.append(category)
            vals.append(value)
            blocks.append(s.to_numpy(dtype=bool))
            continue
        if pd.api.types.is_bool_dtype(s.dtype):
            values: list[object] = [True]
        else:
            values = sorted(pd.unique(s.dropna()), key=_sort_key)
        for v in values:
            names.append(f"{col}={v}")
            cols.append(col)
            vals.append(v)
            blocks.append((s == v).fillna(False).to_numpy(dtype=bool))
    n = len(concepts)
    Y = np.column_stack(blocks) if blocks else np.zeros((n, 0), dtype=bool)
    meta = pd.DataFrame({"concept": names, "column": cols, "value": vals})
    if meta["concept"].duplicated().any():
        dup = meta.loc[meta["concept"].duplicated(), "concept"].tolist()
        raise ValueError(f"concept names collide after 'column=value' formatting: {dup}")
    return meta, Y


def _average_precision_columns(scores: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AP of ranking by +scores and by −scores, for every column of boolean ``Y`` at once.

    Identical to ``sklearn.metrics.average_precision_score(Y[:, j], ±scores)``: tied scores form
    one threshold, AP = Σ_t (R_t − R_{t−1})·P_t over distinct thresholds. One sort serves both
    orientations, since ranking by −scores visits the same tie groups in reverse. Columns without
    positives give NaN.
    """
    n, m = Y.shape
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    ends = np.flatnonzero(np.append(s[1:] != s[:-1], True))
    seen = (ends + 1).astype(np.float64)  # images ranked up to the end of each tie group
    seen_before = np.append(0.0, seen[:-1])
    ap_pos = np.empty(m)
    ap_neg = np.empty(m)
    step = max(1, _BLOCK_ELEMENTS // max(n, 1))
    for j in range(0, m, step):
        tp = np.cumsum(Y[order, j : j + step], axis=0, dtype=np.int64)[ends].astype(np.float64)
        npos = tp[-1]
        tp_before = np.vstack([np.zeros((1, tp.shape[1])), tp[:-1]])
        gain = tp - tp_before  # positives inside each tie group
        with np.errstate(invalid="ignore", divide="ignore"):
            ap_pos[j : j + step] = (gain * (tp / seen[:, None])).sum(axis=0) / npos
            prec_rev = (npos - tp_before) / (n - seen_before)[:, None]
            ap_neg[j : j + step] = (gain * prec_rev).sum(axis=0) / npos
    return ap_pos, ap_neg


def concept_direction_scores(
    H: np.ndarray,
    directions: Directions,
    concepts: pd.DataFrame,
    top_n_directions: int | None = None,
    *,
    min_positives: int = 1,
) -> pd.DataFrame:
    """AP of every (concept, direction) pair, ranking images by ⟨h(x), v_i⟩.

    A singular vector's sign is arbitrary (v and −v are the same SVD direction), so the score is
    max(AP(+v), AP(−v)); ``sign`` records which orientation won (+1: the concept's images have
    large ⟨h, v_i⟩ for the stored ``v_i``). Note max over two orientations biases a random
    concept's AP slightly above its prevalence.

    Args:
        H: (n_images, d_H) features; concepts: concept table with n_images rows (see module doc).
        top_n_directions: only score the n most important directions (None: all).
        min_positives: concepts with fewer positive images, or with no negatives, are skipped
            (AP is undefined or trivially 1); they are listed in ``result.attrs["skipped"]``
            as {concept: reason}.

    Returns a long DataFrame with columns ``concept``, ``column``, ``value``, ``direction`` (rank
    in importance order, 0 = most important), ``original_index``, ``importance``, ``ap``,
    ``sign``, ``n_positives``, ``prevalence``.
    """
    H = np.asarray(H)
    if H.ndim != 2 or H.shape[1] != directions.dim:
        raise ValueError(f"H must be (n_images, {directions.dim}), got {H.shape}")
    if len(concepts) != H.shape[0]:
        raise ValueError(f"concepts has {len(concepts)} rows but H has {H.shape[0]} images")
    n = H.shape[0]
    meta, Y = binary_concepts(concepts)
    npos = Y.sum(axis=0)
    skipped: dict[str, str] = {}
    keep = np.ones(len(meta), dtype=bool)
    for i, name in enumerate(meta["concept"]):
        if npos[i] < max(min_positives, 1):
            skipped[name] = f"{int(npos[i])} positives < {max(min_positives, 1)}"
            keep[i] = False
        elif npos[i] == n:
            skipped[name] = "no negatives"
            keep[i] = False
    meta, Y, npos = meta.loc[keep].reset_index(drop=True), Y[:, keep], npos[keep]

    r = len(directions) if top_n_directions is None else min(int(top_n_directions), len(directions))
    if r < 0:
        raise ValueError("top_n_directions must be ≥ 0")
    V = np.asarray(directions.vectors[:r], dtype=np.float64)
    proj = np.empty((n, r))
    for start in range(0, n, _CHUNK_ROWS):
        proj[start : start + _CHUNK_ROWS] = (
            np.asarray(H[start : start + _CHUNK_ROWS], dtype=np.float64) @ V.T
        )
    m = len(meta)
    ap = np.empty((r, m))
    sign = np.empty((r, m), dtype=np.int8)
    for i in range(r):
        ap_pos, ap_neg = _average_precision_columns(proj[:, i], Y)
        sign[i] = np.where(ap_pos >= ap_neg, 1, -1)
        ap[i] = np.maximum(ap_pos, ap_neg)

    out = pd.DataFrame(
        {
            "concept": np.tile(meta["concept"].to_numpy(), r),
            "column": np.tile(meta["column"].to_numpy(dtype=object), r),
            "value": np.tile(meta["value"].to_numpy(dtype=object), r),
            "direction": np.repeat(np.arange(r), m),
            "original_index": np.repeat(directions.original_index[:r], m),
            "importance": np.repeat(directions.importance[:r], m),
            "ap": ap.reshape(-1),
            "sign": sign.reshape(-1),
            "n_positives": np.tile(npos, r),
            "prevalence": np.tile(npos / n, r),
        }
    )
    out.attrs["skipped"] = skipped
    return out


def encoded_concepts(scores: pd.DataFrame, threshold: float = 0.9) -> set[str]:
    """Concepts encoded by at least one direction: some AP ≥ ``threshold``."""
    return set(scores.loc[scores["ap"] >= threshold, "concept"])


def count_concepts(scores: pd.DataFrame, threshold: float = 0.9) -> int:
    """Number of distinct concepts encoded by at least one direction."""
    return len(encoded_concepts(scores, threshold))


def concepts_per_direction(scores: pd.DataFrame, threshold: float = 0.9) -> pd.Series:
    """How many concepts each direction encodes (its polysemanticity), indexed by ``direction``.

    Directions that encode nothing are included with 0, so the distribution is not truncated.
    """
    hits = scores.loc[scores["ap"] >= threshold].groupby("direction")["concept"].nunique()
    idx = pd.Index(np.sort(scores["direction"].unique()), name="direction")
    return hits.reindex(idx, fill_value=0).astype(np.int64).rename("n_concepts")


def unique_concepts(per_model: Mapping[str, set[str]]) -> dict[str, set[str]]:
    """For each model, the concepts it encodes that no other model in ``per_model`` encodes."""
    out: dict[str, set[str]] = {}
    for name, mine in per_model.items():
        others: set[str] = set()
        for other, theirs in per_model.items():
            if other != name:
                others |= set(theirs)
        out[name] = set(mine) - others
    return out


def top_concepts_per_direction(scores: pd.DataFrame, n: int = 5) -> pd.DataFrame:
    """The ``n`` highest-AP concepts of every direction, with a 0-based ``rank`` column.

    Ties in AP are broken by concept name so the table is deterministic.
    """
    if n < 1:
        raise ValueError(f"n must be ≥ 1, got {n}")
    s = scores.sort_values(["direction", "ap", "concept"], ascending=[True, False, True])
    top = s.groupby("direction", sort=True).head(n).copy()
    top["rank"] = top.groupby("direction").cumcount()
    cols = ["direction", "rank", "concept", "ap", "sign", "original_index", "importance"]
    return top[[c for c in cols if c in top.columns]].reset_index(drop=True)


def _cv_scores(
    H: np.ndarray,
    y: np.ndarray,
    folds: StratifiedKFold,
    metric: str,
    C: float,
    max_iter: int,
    solver: str,
) -> np.ndarray:
    """Per-fold scores of a standardised logistic regression (a plain loop: cross_val_score's
    scorer machinery costs more than these small fits)."""
    out = []
    for train, test in folds.split(H, y):
        mu = H[train].mean(axis=0)
        sd = H[train].std(axis=0)
        sd[sd == 0] = 1.0
        model = LogisticRegression(C=C, max_iter=max_iter, solver=solver)
        model.fit((H[train] - mu) / sd, y[train])
        Xt = (H[test] - mu) / sd
        if metric == "average_precision":
            out.append(average_precision_score(y[test], model.decision_function(Xt)))
        else:
            out.append(float((model.predict(Xt) == y[test]).mean()))
    return np.asarray(out)


def linear_probe_concepts(
    H: np.ndarray,
    concepts: pd.DataFrame,
    cv: int = 5,
    seed: int = 0,
    *,
    metric: Literal["average_precision", "accuracy"] = "average_precision",
    min_positives: int | None = None,
    C: float = 1.0,
    max_iter: int = 2000,
    solver: str = "newton-cholesky",
) -> pd.DataFrame:
    """Cross-validated logistic-regression probe for every binary concept.

    The direction view asks whether a concept is aligned with one privileged direction; a probe
    asks whether it is linearly decodable at all, an upper bound that does not depend on the
    head. Features are standardised inside each fold (outlier dimensions would otherwise
    dominate the L2 penalty and the optimiser's conditioning). Folds are StratifiedKFold,
    shuffled with ``seed``. The default solver is Newton–Cholesky: a handful of iterations on
    these well-conditioned standardised problems, and unlike L-BFGS it does not slow to a crawl
    when BLAS threads compete for a loaded machine.

    Concepts with fewer than ``min_positives`` positives or negatives (default ``cv``, the
    minimum StratifiedKFold accepts) are skipped and listed in ``result.attrs["skipped"]``.

    Returns columns ``concept``, ``column``, ``value``, ``n_positives``, ``prevalence``,
    ``metric``, ``score_mean``, ``score_std`` (over folds).
    """
    if metric not in ("average_precision", "accuracy"):
        raise ValueError(f"metric must be 'average_precision' or 'accuracy', got {metric!r}")
    if cv < 2:
        raise ValueError(f"cv must be ≥ 2, got {cv}")
    H = np.asarray(H, dtype=np.float64)
    if H.ndim != 2:
        raise ValueError(f"H must be 2-D, got {H.shape}")
    if len(concepts) != H.shape[0]:
        raise ValueError(f"concepts has {len(concepts)} rows but H has {H.shape[0]} images")
    floor = cv if min_positives is None else max(int(min_positives), cv)
    n = H.shape[0]
    meta, Y = binary_concepts(concepts)
    rows = []
    skipped: dict[str, str] = {}
    folds = StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed)
    for i, row in meta.iterrows():
        y = Y[:, i]
        pos = int(y.sum())
        if pos < floor or n - pos < floor:
            skipped[row["concept"]] = f"{pos} positives / {n - pos} negatives, need ≥ {floor} each"
            continue
        s = _cv_scores(H, y, folds, metric, C, max_iter, solver)
        rows.append(
            {
                "concept": row["concept"],
                "column": row["column"],
                "value": row["value"],
                "n_positives": pos,
                "prevalence": pos / n,
                "metric": metric,
                "score_mean": float(np.mean(s)),
                "score_std": float(np.std(s)),
            }
        )
    cols = ["concept", "column", "value", "n_positives", "prevalence", "metric", "score_mean",
            "score_std"]
    out = pd.DataFrame(rows, columns=cols)
    out.attrs["skipped"] = skipped
    return out
