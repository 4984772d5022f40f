"""The report's tables as plain rows, shared by the HTML page and the Markdown summary.

Both outputs format numbers here, once, so the page, ``summary.md`` and ``models.csv`` can never
disagree about a value or its rounding. A cell is ``(text, sort_key)``: the HTML table sorts on
the key (a number, or the text), so "9.5" sorts below "10.2" and empty cells sort last.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from spurbench.data.dataset import COMMON, COUNTER
from spurbench.evaluate.candidates import describe_source
from spurbench.report.collect import Panel, ReportData

__all__ = [
    "KIND_LABELS",
    "Cell",
    "Table",
    "cell_table",
    "fmt_ci",
    "fmt_pct",
    "model_table",
    "probe_tables",
    "trend_name",
]

KIND_LABELS = {
    "clip": "CLIP (zero-shot)",
    "imagenet": "ImageNet supervised",
    "supervised": "supervised",
    "lvlm": "LVLM",
}


@dataclass(frozen=True)
class Cell:
    """What a table cell shows, the value it sorts by, and optional hover text and shade."""

    text: str
    sort: float | str | None = None
    title: str = ""
    shade: float | None = None  # 0..1 failure intensity, drawn as a red background
    sub: str = ""  # secondary text (an interval), drawn smaller after ``text``

    @property
    def full(self) -> str:
        """Text and secondary text together, as plain-text outputs print them."""
        return f"{self.text} {self.sub}".strip()


@dataclass
class Table:
    """Columns, rows of cells, and a note; ``key`` is the HTML id (and the sort scope)."""

    key: str
    columns: list[str]
    rows: list[list[Cell]] = field(default_factory=list)
    note: str = ""
    row_attrs: list[dict[str, str]] = field(default_factory=list)
    numeric: list[bool] = field(default_factory=list)


def _finite(x: Any) -> bool:
    return x is not None and isinstance(x, int | float | np.floating) and math.isfinite(x)


def fmt_pct(x: Any, digits: int = 2, signed: bool = False) -> str:
    """A fraction as percent (or points), '' when missing."""
    if not _finite(x):
        return ""
    text = f"{100 * float(x):{'+' if signed else ''}.{digits}f}"
    return _no_negative_zero(text)


def _no_negative_zero(text: str) -> str:
    """'-0.00' and '+0.00' read as a direction the number does not have: print '0.00'."""
    return text[1:] if text[:1] in "+-" and not text.strip("+-0.") else text


def fmt_ci(lo: Any, hi: Any, digits: int = 1) -> str:
    if not (_finite(lo) and _finite(hi)):
        return ""
    a, b = (_no_negative_zero(f"{100 * float(v):.{digits}f}") for v in (lo, hi))
    return f"[{a}, {b}]"


def _num(x: Any) -> float | None:
    return float(x) if _finite(x) else None


def _pct_cell(r: pd.Series, col: str, signed: bool = False) -> Cell:
    text = fmt_pct(r[col], signed=signed)
    ci = fmt_ci(r.get(f"{col}_lo"), r.get(f"{col}_hi")) if text else ""
    return Cell(text, _num(r[col]), sub=ci)


def er_families(runs: pd.DataFrame) -> list[str]:
    """Families with an ER column in ``runs`` (added once the baseline trends are fitted)."""
    return [
        c[3:]
        for c in runs.columns
        if c.startswith("er_") and not c.endswith(("_lo", "_hi", "_baseline"))
    ]


def model_table(data: ReportData) -> Table:
    """Every run with its headline numbers and intervals: the table a reader sorts.

    Columns: balanced (class-mean) accuracies as the paper reports them, the per-image drop
    beside the balanced one, the worst (class, group) cell, and the effective robustness against
    each fitted baseline trend.
    """
    runs = data.runs
    fams = er_families(runs)
    columns = [
        "Model",
        "Type",
        "Dataset",
        "Protocol",
        "Images",
        "Common %",
        "Counter %",
        "Drop (pt)",
        "Drop per image (pt)",
        "Worst cell %",
    ]
    columns += [f"ER vs {trend_name(f)} trend (pt)" for f in fams]
    note = f"Intervals are {data.level:.0%} confidence intervals."
    if "classes_paired" in runs and (
        runs["classes_paired"] < runs[["classes_common", "classes_counter"]].max(axis=1)
    ).any():
        note += " Some drops cover only the classes with both groups (see Notes)."
    table = Table("models", columns, note=note)
    table.numeric = [False, False, False, False] + [True] * (len(columns) - 4)
    for _, r in runs.iterrows():
        images = int(r["n_images"]) - int(r["n_skipped"] or 0)
        row = [
            Cell(str(r["display"]), str(r["display"]).lower(), title=str(r["model"])),
            Cell(KIND_LABELS.get(r["kind"], r["kind"]), r["kind"]),
            Cell(str(r["dataset"]), str(r["dataset"])),
            _protocol_cell(r),
            Cell(f"{images:,}", images, title=f"{int(r['n_skipped'] or 0)} unreadable skipped"),
            _pct_cell(r, "common"),
            _pct_cell(r, "counter"),
            _pct_cell(r, "drop", signed=True),
            _pct_cell(r, "drop_pi", signed=True),
            Cell(
                fmt_pct(r["worst"], 1),
                _num(r["worst"]),
                title=fmt_ci(r["worst_lo"], r["worst_hi"]),
                sub=f"({r['worst_cell']})" if r["worst_cell"] else "",
            ),
        ]
        for f in fams:
            row.append(_er_cell(r, f"er_{f}"))
        table.rows.append(row)
        table.row_attrs.append({"data-model": str(r["model"]), "data-run": str(r["run_id"])})
    return table


def _protocol_cell(r: pd.Series) -> Cell:
    """The protocol, with a 1-vs-20 run's sets hash and source, and an LVLM's score."""
    sub = []
    if r.get("candidates_hash"):
        sub.append(f"sets {r['candidates_hash']}")
    if r.get("lvlm_score"):
        sub.append(f"score {r['lvlm_score']}")
    source = describe_source(r.get("candidates_source") or None)
    return Cell(
        str(r["protocol"]),
        str(r["protocol"]),
        title=f"1-vs-20 candidate sets: {source}" if source else "",
        sub=" · ".join(sub),
    )


def _er_cell(r: pd.Series, col: str) -> Cell:
    """An ER with its interval and the trend it was measured against ("published n=15")."""
    cell = _pct_cell(r, col, signed=True)
    baseline = r.get(f"{col}_baseline")
    if cell.text and isinstance(baseline, str) and baseline:
        return replace(cell, sub=f"{cell.sub} ({baseline})".strip())
    return cell


def trend_name(family: str) -> str:
    """Short family name for headers: 'CLIP', 'ImageNet', 'supervised', 'LVLM'."""
    return KIND_LABELS.get(family, family).split(" (")[0].replace(" supervised", "")


def models_frame(data: ReportData) -> pd.DataFrame:
    """The model table as numbers (percent), for ``models.csv``."""
    keep = ["model", "kind", "dataset", "protocol", "candidates_hash", "candidates_source"]
    keep += ["lvlm_score", "n_images", "n_skipped"]
    keep += [c for c in ("classes_common", "classes_counter", "classes_paired") if c in data.runs]
    pct = [
        c
        for c in data.runs.columns
        if c.split("_")[0] in ("common", "counter", "drop", "worst", "er")
        and c != "worst_cell"
        and pd.api.types.is_numeric_dtype(data.runs[c])
    ]
    baselines = [c for c in data.runs.columns if c.startswith("er_") and c.endswith("_baseline")]
    out = data.runs[keep + pct + baselines + ["worst_cell", "run_id"]].copy()
    out[pct] = (100 * out[pct]).round(4)  # percent; float noise beyond 1e-4 pt means nothing
    return out


def cell_table(data: ReportData, panel: Panel, max_models: int = 10) -> Table:
    """Accuracy of every (class, group, background) cell for each run of a panel, worst first.

    This is where a shortcut shows up concretely: a class whose counter-background cell is red
    for every model is one whose images models recognise by their background.
    """
    runs = data.panel_runs(panel).head(max_models)
    cells = data.cells[data.cells["run_id"].isin(runs["run_id"])]
    columns = ["Class", "Group", "Background", "Images", *runs["display"].tolist()]
    note = (
        f"Top-1 accuracy (%) per cell with {data.level:.0%} Clopper–Pearson intervals; shading "
        "grows with the error rate. Sorted worst first (mean over models); click a header to "
        "re-sort."
    )
    if len(data.panel_runs(panel)) > max_models:
        note += f" Only the first {max_models} models are shown."
    table = Table(f"cells-{panel.slug}", columns, note=note)
    table.numeric = [False, False, False, True] + [True] * len(runs)
    if cells.empty:
        return table
    keys = ["label", "class_name", "group_name", "background"]
    wide = cells.pivot_table(
        index=keys, columns="run_id", values=["accuracy", "ci_low", "ci_high", "n"], aggfunc="first"
    )
    order = wide["accuracy"].mean(axis=1).sort_values(kind="stable").index
    for idx in order:
        _, class_name, group, background = idx
        n = int(np.nanmax(wide.loc[idx, "n"].to_numpy(float)))
        row = [
            Cell(str(class_name), str(class_name).lower()),
            Cell(str(group), {COMMON: 0, COUNTER: 1}.get(group, 2)),
            Cell(str(background or "—"), str(background)),
            Cell(str(n), n),
        ]
        for run_id in runs["run_id"]:
            acc = wide.loc[idx].get(("accuracy", run_id), np.nan)
            if not _finite(acc):
                row.append(Cell("", None))
                continue
            ci = fmt_ci(wide.loc[idx, ("ci_low", run_id)], wide.loc[idx, ("ci_high", run_id)])
            row.append(Cell(fmt_pct(acc, 1), float(acc), sub=ci, shade=1.0 - float(acc)))
        table.rows.append(row)
    return table


# -- probes --------------------------------------------------------------------------------------


def _value(rows: pd.DataFrame, probe: str, metric: str, key: str = "") -> float | None:
    hit = rows[(rows["probe"] == probe) & (rows["metric"] == metric) & (rows["key"] == key)]
    return _num(float(hit["value"].iloc[0])) if len(hit) else None


def _f(x: float | None, digits: int = 2) -> str:
    return "" if x is None else f"{x:.{digits}f}"


def probe_tables(probes: pd.DataFrame, names: dict[str, str]) -> dict[str, Table]:
    """Kurtosis, directions, pruning and concept tables, one row per probed (model, dataset).

    ``probes`` carries a ``label`` column naming the (model, dataset) a row belongs to, and
    ``names`` maps those labels to what the reader sees. Tables with no data are left out.
    """
    out: dict[str, Table] = {}
    kurt = Table(
        "probe-kurtosis",
        [
            "Model",
            "Space",
            "Mean κ",
            "Median κ",
            "Mean κ rotated",
            "Mean per-dim κ",
            "Max per-dim κ",
            "Outlier dims",
            "Max/median |h|",
        ],
    )
    kurt.numeric = [False, False] + [True] * 7
    kurt.note = (
        "Kurtosis of each image's activations (3 for a Gaussian). 'Rotated' is the control: the "
        "same features after a random rotation; outlier features give κ ≫ 3 that falls to ≈ 3 "
        "rotated. Outlier dims: |h_j| beyond 6σ in at least 25% of images."
    )
    dirs = Table(
        "probe-directions",
        [
            "Model",
            "Head",
            "Directions",
            "Dim",
            "Top-1 share %",
            "Top-10 share %",
            "Head agreement %",
            "Top concepts of the top directions",
        ],
    )
    dirs.numeric = [False, False, True, True, True, True, True, False]
    dirs.note = (
        "Privileged directions: right singular vectors of the head W_H ranked by σᵢ·E|cos(h, vᵢ)|"
        "; share = importance of the top directions over the total. Head agreement: argmax "
        "agreement of the pre-head head with the model's own."
    )
    prune = Table(
        "probe-pruning",
        [
            "Model",
            "Head",
            "Held-out images",
            "Unpruned acc %",
            "Max prunable %",
            "Acc at 10% kept",
            "Acc at 50% kept",
            "Least-important 50% kept",
        ],
    )
    prune.numeric = [False, False] + [True] * 6
    prune.note = (
        "Pruning: accuracy (%) when the features are projected onto the head's k most important "
        "directions (k in brackets). Max prunable: the largest fraction of directions that can "
        "be removed with accuracy within the tolerance. Least-important: the control keeping "
        "the k least important directions instead. Directions are ranked on a seeded half of "
        "the images and accuracy is measured on the other, held-out half."
    )
    conc = Table(
        "probe-concepts",
        [
            "Model",
            "Head",
            "Concepts from",
            "Concepts",
            "Encoded by a direction",
            "Encoded by linear probe",
            "Polysemantic directions",
            "Encoded concepts (AP)",
        ],
    )
    conc.numeric = [False, False, False, True, True, True, True, False]
    for label, rows in probes.groupby("label", sort=False):
        name = names[str(label)]
        head = Cell(name, name.lower())
        for space in ("pre_head", "embedding"):
            mean = _value(rows, "kurtosis", "mean_image_kurtosis", space)
            n_out = _value(rows, "outliers", "n_outliers", space)
            if mean is None and n_out is None:
                continue
            vals = [
                mean,
                _value(rows, "kurtosis", "median_image_kurtosis", space),
                _value(rows, "kurtosis", "mean_image_kurtosis_rotated", space),
                _value(rows, "kurtosis", "mean_dimension_kurtosis", space),
                _value(rows, "kurtosis", "max_dimension_kurtosis", space),
            ]
            ratio = _value(rows, "outliers", "max_median_ratio", space)
            kurt.rows.append(
                [head, Cell(space.replace("_", "-"), space)]
                + [Cell(_f(v), v) for v in vals]
                + [Cell(_f(n_out, 0), n_out), Cell(_f(ratio, 1), ratio)]
            )
        n_dir = _value(rows, "directions", "n_directions")
        if n_dir is not None:
            c1 = _value(rows, "directions", "concentration_top1")
            c10 = _value(rows, "directions", "concentration_top10")
            agree = _value(rows, "directions", "head_argmax_agreement")
            dirs.rows.append(
                [
                    head,
                    Cell(_head(rows, "directions")),
                    Cell(_f(n_dir, 0), n_dir),
                    Cell(_f(_value(rows, "directions", "dim"), 0)),
                    Cell(fmt_pct(c1, 1), c1),
                    Cell(fmt_pct(c10, 1), c10),
                    Cell(fmt_pct(agree, 1), agree),
                    Cell(_top_concepts(rows)),
                ]
            )
        unpruned = _value(rows, "pruning", "unpruned_accuracy")
        if unpruned is not None:
            maxf = _value(rows, "pruning", "max_prunable_fraction")
            tol = _extra(rows, "pruning", "max_prunable_fraction").get("tolerance")
            cells = [
                Cell(fmt_pct(unpruned, 1), unpruned),
                Cell(fmt_pct(maxf, 0) + (f" (±{100 * tol:g} pt)" if tol else ""), maxf),
            ]
            for metric, frac in (("accuracy", 0.1), ("accuracy", 0.5), ("accuracy_least", 0.5)):
                acc, k = _at_fraction(rows, metric, frac)
                cells.append(Cell(f"{fmt_pct(acc, 1)} (k={k})" if acc is not None else "", acc))
            held = _value(rows, "pruning", "n_evaluation_images")
            prune.rows.append([head, Cell(_head(rows, "pruning")), Cell(_f(held, 0), held), *cells])
        n_con = _value(rows, "concepts", "n_concepts")
        if n_con is not None:
            by_dir = _value(rows, "concepts", "n_encoded", "directions")
            by_probe = _value(rows, "concepts", "n_encoded", "linear_probe")
            poly = _value(rows, "concepts", "polysemantic_directions")
            enc = rows[(rows["probe"] == "concepts") & (rows["metric"] == "encoded")]
            enc = enc.sort_values("value", ascending=False)
            listed = ", ".join(
                f"{k} ({v:.2f})" for k, v in zip(enc["key"][:8], enc["value"][:8], strict=True)
            )
            source = rows[(rows["probe"] == "concepts") & (rows["metric"] == "concept_source")]
            conc.rows.append(
                [
                    head,
                    Cell(_head(rows, "concepts")),
                    Cell(source["key"].iloc[0] if len(source) else ""),
                    Cell(_f(n_con, 0), n_con),
                    Cell(_f(by_dir, 0), by_dir),
                    Cell(_f(by_probe, 0), by_probe),
                    Cell(_f(poly, 0), poly),
                    Cell(listed + (" …" if len(enc) > 8 else "") or "none"),
                ]
            )
    threshold = _extra(probes, "concepts", "n_encoded").get("threshold")
    conc.note = (
        "Each (column, value) of the concept labels (the dataset's columns, or a Broden-layout "
        "concept folder) is one binary concept; it counts "
        f"as encoded when its average precision along a direction (or with a cross-validated "
        f"linear probe) is at least {threshold if threshold is not None else 0.9:g}."
    )
    for t in (kurt, dirs, prune, conc):
        if t.rows:
            out[t.key] = t
    return out


def _head(rows: pd.DataFrame, probe: str) -> str:
    """The head a probe read (``1v1000``, the paper's, or ``1vN (k classes)``); '' if unrecorded."""
    hit = rows[(rows["probe"] == probe) & (rows["metric"] == "head")]
    return str(hit["key"].iloc[0]) if len(hit) else ""


def _extra(rows: pd.DataFrame, probe: str, metric: str) -> dict[str, Any]:
    hit = rows[(rows["probe"] == probe) & (rows["metric"] == metric)]
    return json.loads(hit["extra"].iloc[0] or "{}") if len(hit) else {}


def _at_fraction(rows: pd.DataFrame, metric: str, fraction: float) -> tuple[float | None, int]:
    """Accuracy at the sampled k closest to ``fraction`` of the directions kept, and that k."""
    r = rows[(rows["probe"] == "pruning") & (rows["metric"] == metric)]
    if r.empty:
        return None, 0
    frac = np.array([json.loads(e or "{}").get("fraction_kept", np.nan) for e in r["extra"]])
    i = int(np.nanargmin(np.abs(frac - fraction)))
    return _num(float(r["value"].iloc[i])), int(r["key"].iloc[i])


def _top_concepts(rows: pd.DataFrame, n_dirs: int = 3) -> str:
    top = rows[(rows["probe"] == "concepts") & (rows["metric"] == "top_concept")]
    if top.empty:
        return ""
    parts = []
    for key, value, extra in zip(top["key"], top["value"], top["extra"], strict=True):
        direction, rank = (int(x) for x in key.split(":"))
        if direction < n_dirs and rank == 0:
            concept = json.loads(extra or "{}").get("concept", "?")
            parts.append((direction, f"#{direction + 1}: {concept} ({value:.2f})"))
    return "; ".join(p for _, p in sorted(parts))
