"""What the report shows, read from the results store in a few queries before anything is drawn.

Reading everything first keeps rendering free of database access (the store's lock is held only
for short queries, so a running evaluation is never blocked for the minutes a report may take),
and gives tests one object to compare the HTML and Markdown against.

Runs are compared in *panels*: the runs that share a dataset and a protocol, because accuracies
under different label spaces (1-vs-1000 vs 1-vs-N) or on different images are not comparable.
1-vs-20 runs are further split by the hash of their candidate sets: accuracies among different
sets are never pooled.
A panel is placed among the published CounterAnimal numbers only when that comparison means
something: the protocol is one the paper reports (1v1000, 1v20) and every class of the run is a
CounterAnimal class (ImageNet labels). Any other panel is plotted on its own, with a note.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from spurbench.data.dataset import COMMON, COUNTER, DROP_GROUP
from spurbench.errors import SpurbenchError
from spurbench.evaluate.candidates import FILE_PREFIX, PAPER_REFERENCE, describe_source
from spurbench.evaluate.metrics import LEVEL, clopper_pearson
from spurbench.reference.testbed import (
    PROTOCOLS as PUBLISHED_PROTOCOLS,
)
from spurbench.reference.testbed import (
    load_counteranimal_classes,
    load_counteranimal_models,
)
from spurbench.store.results import ResultsStore, paired_drop_note

__all__ = [
    "Panel",
    "ReportData",
    "ReportError",
    "collect",
    "model_kind",
    "newcombe_difference",
    "panel_points",
    "short_names",
]

#: Overall metrics that become columns of the model table: alias -> (metric, group).
_HEADLINE: dict[str, tuple[str, str]] = {
    "common": ("balanced_accuracy", COMMON),
    "counter": ("balanced_accuracy", COUNTER),
    "drop": ("drop", DROP_GROUP),
    "common_pi": ("accuracy", COMMON),
    "counter_pi": ("accuracy", COUNTER),
    "drop_pi": ("drop_per_image", DROP_GROUP),
    "common_top5": ("top5_accuracy", COMMON),
    "counter_top5": ("top5_accuracy", COUNTER),
}


#: Classes behind the balanced accuracies and the drop: alias -> (metric, group).
_CLASS_COUNTS: dict[str, tuple[str, str]] = {
    "classes_common": ("balanced_accuracy", COMMON),
    "classes_counter": ("balanced_accuracy", COUNTER),
    "classes_paired": ("drop", DROP_GROUP),
}


def _paired_drop_notes(runs: pd.DataFrame) -> list[str]:
    """A note per run whose drop covers fewer classes than its common or counter accuracy."""
    notes = []
    for r in runs.itertuples():
        note = paired_drop_note(r.classes_common, r.classes_counter, r.classes_paired)
        if note:
            notes.append(f"{r.display} · {r.dataset} · {r.protocol}: {note}.")
    return notes


class ReportError(SpurbenchError):
    """The report cannot be written as asked (no store, no runs, nothing matching)."""


@dataclass
class Panel:
    """Runs sharing a dataset and a protocol: one counter-vs-common plot and one cell table.

    ``published`` holds the reference rows (percent, as published) when the runs can be placed
    among them, else None and ``note`` says why.
    """

    slug: str
    dataset: str
    protocol: str
    dataset_path: str
    run_ids: list[str]
    n_classes: int
    published: pd.DataFrame | None = None
    note: str = ""
    #: 1-vs-20 panels: the hash of the candidate sets all their runs share, and their source.
    candidates_hash: str = ""
    candidates_source: str = ""

    @property
    def title(self) -> str:
        sets = f" · sets {self.candidates_hash}" if self.candidates_hash else ""
        return f"{self.dataset} · {self.protocol}{sets}"


@dataclass
class ReportData:
    """Everything the report needs, as tidy frames keyed by ``run_id``.

    Attributes:
        runs: one row per run: identity (model, display name, kind, dataset, protocol, images),
            the headline numbers of :data:`_HEADLINE` with ``*_lo`` / ``*_hi`` interval columns
            (fractions), and the worst (class, group) cell. ER columns are added by the caller
            once the baseline trends are fitted.
        classes: one row per (run, class): common / counter accuracy with Clopper–Pearson
            intervals, and the drop with an interval (see :func:`_class_table`).
        cells: one row per (run, class, group, background): n, correct, accuracy and interval.
        panels: the comparisons to draw, in store order.
        probes: probe rows (``store.probe_results()``) of the reported models.
        examples: the images of one run per dataset folder (image_id, class, group,
            background), from which per-class thumbnails are picked; empty without images.
        wrong: every misclassified image of every run with its top prediction (pred_label);
            empty without images.
    """

    store_path: Path
    runs: pd.DataFrame
    classes: pd.DataFrame
    cells: pd.DataFrame
    panels: list[Panel]
    probes: pd.DataFrame
    examples: pd.DataFrame = field(default_factory=pd.DataFrame)
    wrong: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: background counterfactual artifacts of the runs (run_id, content JSON); may be empty
    counterfactuals: pd.DataFrame = field(default_factory=pd.DataFrame)
    level: float = LEVEL
    notes: list[str] = field(default_factory=list)

    def panel_runs(self, panel: Panel) -> pd.DataFrame:
        return self.runs[self.runs["run_id"].isin(panel.run_ids)]


def model_kind(family: str, zero_shot: bool, imagenet_labels: bool) -> str:
    """The family name the reference testbed and the plots use: clip, imagenet, lvlm, supervised.

    A supervised model evaluated on ImageNet labels is an ImageNet classifier (the paper's
    "ImageNet models"); one trained on its own classes (the demo's) is just "supervised".
    """
    if family == "lvlm":
        return "lvlm"
    if zero_shot:
        return "clip"
    return "imagenet" if imagenet_labels else "supervised"


def short_names(models: Sequence[str]) -> dict[str, str]:
    """Readable labels for plots and tables: local folders lose their path, names stay unique.

    ``local-dir:/long/path/to/models/abc123/tiny_clip`` becomes ``tiny_clip`` (or
    ``abc123/tiny_clip`` if two folders end the same way); registry names are kept as they are,
    because those are what a reader looks up.
    """

    def tail(name: str, parts: int) -> str:
        prefix, sep, rest = name.partition(":")
        if sep and prefix in ("local-dir", "timm") and "/" in rest:
            return "/".join(Path(rest).parts[-parts:])
        if "/" in name and not sep:
            return "/".join(Path(name).parts[-parts:])
        return name

    unique = list(dict.fromkeys(models))
    for parts in (1, 2, 3):
        names = {m: tail(m, parts) for m in unique}
        if len(set(names.values())) == len(unique):
            return names
    return {m: m for m in unique}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower() or "panel"


def _matches(model: str, patterns: Sequence[str]) -> bool:
    """Glob when the pattern has wildcards, else substring (as ``spurbench models`` matches)."""
    for p in patterns:
        if any(c in p for c in "*?[") and fnmatch.fnmatchcase(model, p):
            return True
        if p in model:
            return True
    return False


def collect(
    store: str | Path,
    *,
    models: Sequence[str] | None = None,
    with_published: bool = True,
    images: bool = True,
    level: float = LEVEL,
) -> ReportData:
    """Read the runs (optionally only models matching ``models``) and their tables.

    ``images`` also reads the image lists behind the thumbnails (skip it for a text-only
    report of a huge store).

    Raises :class:`ReportError` when the store file is missing, has no runs, or no run matches;
    a missing store is never created (opening one would leave an empty database behind).
    """
    path = Path(store).expanduser()
    if not path.is_file():
        raise ReportError(
            f"No results store at {path}; run `spurbench eval` (or `spurbench demo`) first, "
            "or point --store at an existing .duckdb file."
        )
    rs = ResultsStore(path, read_only=True)
    runs = rs.runs()
    if runs.empty:
        raise ReportError(f"The results store {path} has no runs yet; run `spurbench eval`.")
    if models:
        runs = runs[[_matches(m, models) for m in runs["model"]]]
        if runs.empty:
            known = ", ".join(sorted(set(rs.runs()["model"]))[:10])
            raise ReportError(
                f"No run in {path} has a model matching {list(models)}; models stored: {known}."
            )
    runs = runs.reset_index(drop=True)
    ids = runs["run_id"].tolist()
    marks = ", ".join("?" * len(ids))
    metrics = rs.query(f"SELECT * FROM metrics WHERE run_id IN ({marks})", ids)
    cell_counts = rs.query(
        f"""SELECT run_id, label, class_name, group_name, background,
                   count(*) AS n, sum(CAST(correct AS INTEGER)) AS k
            FROM predictions WHERE run_id IN ({marks}) GROUP BY ALL""",
        ids,
    )
    probes = rs.probe_results()
    probes = probes[
        probes["fingerprint"].isin(runs["fingerprint"]) | probes["model"].isin(runs["model"])
    ].reset_index(drop=True)

    examples = wrong = pd.DataFrame()
    if images:
        firsts = runs.drop_duplicates("dataset_path")["run_id"].tolist()
        examples = rs.query(
            f"""SELECT run_id, image_id, label, class_name, group_name, background
                FROM predictions WHERE run_id IN ({", ".join("?" * len(firsts))})
                ORDER BY run_id, image_id""",
            firsts,
        )
        wrong = rs.query(
            f"""SELECT run_id, image_id, label, class_name, group_name, background,
                       topk_labels[1] AS pred_label, topk_scores[1] AS pred_score
                FROM predictions WHERE run_id IN ({marks}) AND NOT correct
                ORDER BY run_id, image_id""",
            ids,
        )

    counterfactuals = rs.query(
        f"SELECT run_id, content FROM artifacts WHERE kind = 'counterfactual' "
        f"AND run_id IN ({marks}) ORDER BY run_id",
        ids,
    )
    overall = metrics[metrics["scope"] == "overall"]
    table = _run_table(runs, overall)
    classes = _class_table(metrics[metrics["scope"] == "class"])
    cells = _cell_table(cell_counts, level)
    table["worst_cell"] = _worst_cell_names(table, classes)
    panels, notes = _panels(table, classes, with_published, rs.published())
    notes += _paired_drop_notes(table)
    return ReportData(
        store_path=path,
        runs=table,
        classes=classes,
        cells=cells,
        panels=panels,
        probes=probes,
        examples=examples,
        wrong=wrong,
        counterfactuals=counterfactuals,
        level=level,
        notes=notes,
    )


def _run_table(runs: pd.DataFrame, overall: pd.DataFrame) -> pd.DataFrame:
    """One row per run with the headline numbers and their intervals as columns."""
    out = runs[
        [
            "run_id",
            "model",
            "family",
            "zero_shot",
            "fingerprint",
            "dataset",
            "dataset_path",
            "protocol",
            "name_set",
            "n_images",
            "n_skipped",
            "created_at",
        ]
    ].copy()
    for col in ("candidates_source", "candidates_hash"):  # absent from stores read read-only
        values = runs[col] if col in runs else pd.Series([None] * len(runs), index=runs.index)
        out[col] = values.where(values.notna(), "").astype(str)
    out["lvlm_score"] = [
        _lvlm_score(f, c) for f, c in zip(runs["family"], runs["config"], strict=True)
    ]
    out["image_pass"] = [_image_pass(c) for c in runs["config"]]
    idx = overall.set_index(["run_id", "metric", "group_name"])
    for alias, (metric, group) in _HEADLINE.items():
        for suffix, col in (("", "value"), ("_lo", "ci_low"), ("_hi", "ci_high")):
            out[alias + suffix] = [
                float(idx[col].get((r, metric, group), np.nan)) for r in out["run_id"]
            ]
    worst = overall[overall["metric"] == "worst_cell_accuracy"].set_index("run_id")
    for col, src in (
        ("worst", "value"),
        ("worst_lo", "ci_low"),
        ("worst_hi", "ci_high"),
        ("worst_cell", "group_name"),
    ):
        out[col] = out["run_id"].map(worst[src]) if len(worst) else np.nan
    out["worst_cell"] = out["worst_cell"].fillna("").astype(str)
    for col, (metric, group) in _CLASS_COUNTS.items():
        out[col] = [int(idx["n"].get((r, metric, group), 0)) for r in out["run_id"]]
    out["display"] = out["model"].map(short_names(out["model"].tolist()))
    other = out["lvlm_score"].ne("") & out["lvlm_score"].ne("paper")
    out.loc[other, "display"] = out.loc[other, "display"] + " · " + out.loc[other, "lvlm_score"]
    off = out["image_pass"].ne("")  # not the papers' fp32 / eager / exact-decode image pass
    out.loc[off, "display"] = out.loc[off, "display"] + " · " + out.loc[off, "image_pass"]
    imagenet = out["protocol"].isin(PUBLISHED_PROTOCOLS)
    out["kind"] = [
        model_kind(f, bool(z), bool(i))
        for f, z, i in zip(out["family"], out["zero_shot"], imagenet, strict=True)
    ]
    return out


def _lvlm_score(family: str, config: object) -> str:
    """How an LVLM run scored its answers ('' for other models; 'paper' when not recorded)."""
    if family != "lvlm":
        return ""
    try:
        scoring = json.loads(str(config)).get("scoring", {})
    except (ValueError, AttributeError):
        scoring = {}
    return str(scoring.get("score") or "paper")


def _image_pass(config: object) -> str:
    """'bf16 · onnx · draft decode' for a run off the papers' image pass ('' on it)."""
    try:
        cfg = json.loads(str(config))
    except ValueError:
        cfg = {}
    cfg = cfg if isinstance(cfg, dict) else {}
    parts = [
        cfg.get("precision", "fp32") if cfg.get("precision", "fp32") != "fp32" else "",
        cfg.get("engine", "eager") if cfg.get("engine", "eager") != "eager" else "",
        "draft decode" if cfg.get("decode", "exact") != "exact" else "",
    ]
    return " · ".join(p for p in parts if p)


def _worst_cell_names(runs: pd.DataFrame, classes: pd.DataFrame) -> list[str]:
    """'10/counter' (how the metrics table keys the worst cell) as 'brambling, counter'."""
    names = {
        (r, int(lab)): str(c)
        for r, lab, c in zip(
            classes["run_id"], classes["label"], classes["class_name"], strict=True
        )
    }
    out = []
    for run_id, cell in zip(runs["run_id"], runs["worst_cell"], strict=True):
        label, _, group = str(cell).partition("/")
        name = names.get((run_id, int(label)), label) if label.lstrip("-").isdigit() else label
        out.append(f"{name}, {group}" if group else name)
    return out


def newcombe_difference(
    p1: np.ndarray,
    lo1: np.ndarray,
    hi1: np.ndarray,
    p2: np.ndarray,
    lo2: np.ndarray,
    hi2: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Interval of p1 − p2 from the two proportions' own intervals (Newcombe 1998, method 10).

    Why this and not a bootstrap: the per-class drop of a run is reported with its two
    Clopper–Pearson intervals already in the store, and the square-and-add combination of their
    half-widths is the standard, cheap interval for a difference of independent proportions.
    """
    d = p1 - p2
    lo = d - np.sqrt((p1 - lo1) ** 2 + (hi2 - p2) ** 2)
    hi = d + np.sqrt((hi1 - p1) ** 2 + (p2 - lo2) ** 2)
    return lo, hi


def _class_table(per_class: pd.DataFrame) -> pd.DataFrame:
    """Per (run, class): common and counter accuracy with intervals, and the drop with one."""
    acc = per_class[
        (per_class["metric"] == "accuracy") & per_class["group_name"].isin([COMMON, COUNTER])
    ]
    if acc.empty:
        return pd.DataFrame(columns=["run_id", "label", "class_name", "common", "counter", "drop"])
    wide = acc.pivot_table(
        index=["run_id", "label", "class_name"],
        columns="group_name",
        values=["value", "ci_low", "ci_high", "n"],
        aggfunc="first",
    )
    out = pd.DataFrame(index=wide.index)
    for group in (COMMON, COUNTER):
        for stat, suffix in (("value", ""), ("ci_low", "_lo"), ("ci_high", "_hi"), ("n", "_n")):
            out[group + suffix] = wide.get((stat, group), np.nan)
    out = out.reset_index()
    lo, hi = newcombe_difference(
        out[COMMON].to_numpy(float),
        out["common_lo"].to_numpy(float),
        out["common_hi"].to_numpy(float),
        out[COUNTER].to_numpy(float),
        out["counter_lo"].to_numpy(float),
        out["counter_hi"].to_numpy(float),
    )
    out["drop"] = out[COMMON] - out[COUNTER]
    out["drop_lo"], out["drop_hi"] = lo, hi
    return out


def _cell_table(counts: pd.DataFrame, level: float) -> pd.DataFrame:
    """Accuracy per (run, class, group, background) with exact binomial intervals."""
    if counts.empty:
        return counts.assign(accuracy=[], ci_low=[], ci_high=[])
    counts = counts.copy()
    counts["background"] = counts["background"].fillna("").astype(str)
    counts["group_name"] = counts["group_name"].fillna("").astype(str)
    k, n = counts["k"].to_numpy(float), counts["n"].to_numpy(float)
    lo, hi = clopper_pearson(k, n, level)
    return counts.assign(accuracy=k / n, ci_low=lo, ci_high=hi)


def _panels(
    runs: pd.DataFrame,
    classes: pd.DataFrame,
    with_published: bool,
    imported: pd.DataFrame | None = None,
) -> tuple[list[Panel], list[str]]:
    """Group runs by (dataset, protocol) and decide which panels join the published testbed.

    ``imported`` rows (results published elsewhere, ``spurbench import-results``) of the same
    dataset and protocol that carry common and counter accuracies join their panel.
    """
    ca_labels = set(load_counteranimal_classes()["imagenet_idx"])
    n_ca = len(ca_labels)
    panels: list[Panel] = []
    notes: list[str] = []
    seen: set[str] = set()
    keys = ["dataset", "protocol", "candidates_hash"]
    for (dataset, protocol, digest), group in runs.groupby(keys, sort=False):
        slug = _slug(f"{dataset}_{protocol}" + (f"_{digest}" if digest else ""))
        while slug in seen:
            slug += "_"
        seen.add(slug)
        labels = set(classes.loc[classes["run_id"].isin(group["run_id"]), "label"].astype(int))
        sources = sorted(set(group["candidates_source"]) - {""})
        panel = Panel(
            slug=slug,
            dataset=str(dataset),
            protocol=str(protocol),
            dataset_path=str(group["dataset_path"].iloc[0]),
            run_ids=group["run_id"].tolist(),
            n_classes=len(labels),
            candidates_hash=str(digest),
            candidates_source=" / ".join(describe_source(s) for s in sources),
        )
        paper_sets = sources == [PAPER_REFERENCE]
        from_file = bool(sources) and all(s.startswith(FILE_PREFIX) for s in sources)
        if not with_published:
            panel.note = "Published models left out (--no-published)."
        elif protocol not in PUBLISHED_PROTOCOLS:
            panel.note = (
                f"Protocol {protocol} is not one the CounterAnimal paper reports (1v1000, "
                "1v20), so these models are shown on their own: accuracies among a different "
                "set of candidate labels are not comparable with the published ones."
            )
        elif not labels or not labels <= ca_labels:
            panel.note = (
                f"{dataset} has classes outside CounterAnimal's {n_ca}, so its accuracies are "
                "not comparable with the published ones; these models are shown on their own."
            )
        elif protocol == "1v20" and not (paper_sets or from_file):
            origin = panel.candidates_source or "not recorded (stored by an older spurbench)"
            panel.note = (
                f"1-vs-20 candidate sets: {origin}. Not the paper's reference sets, so these "
                "models are shown on their own, since the published 1-vs-20 numbers use the "
                "sets of CLIP ViT-B-32 (laion400m_e31)."
            )
        else:
            pub = load_counteranimal_models(protocol, balanced=True)  # type: ignore[arg-type]
            panel.published = pub.assign(source="published")
            if len(labels) < n_ca:
                panel.note = (
                    f"Evaluated on {len(labels)} of CounterAnimal's {n_ca} classes; published "
                    "numbers average over all of them, so the placement is indicative only."
                )
            if protocol == "1v20":
                panel.note += (
                    f" 1-vs-20 sets {digest}: {panel.candidates_source}. The published "
                    "accuracies use the 20 classes CLIP ViT-B-32 (laion400m_e31) confuses most"
                    + (
                        "."
                        if paper_sets
                        else ", so this placement holds only if the file holds those sets."
                    )
                )
        if with_published and imported is not None:
            _add_imported(panel, imported)
        panels.append(panel)
    split = runs[runs["protocol"] == "1v20"].groupby("dataset")["candidates_hash"].nunique()
    for dataset, n in split[split > 1].items():
        notes.append(
            f"1-vs-20 runs on {dataset} used {n} different candidate sets; they are shown in "
            "separate panels (one per sets hash) and never pooled."
        )
    panels.sort(key=lambda p: p.published is None)  # comparisons with the testbed first
    missing = runs[runs["common"].isna() | runs["counter"].isna()]
    if len(missing):
        notes.append(
            f"{len(missing)} run(s) have no common/counter groups and are only listed in the "
            "model table: " + ", ".join(missing["display"].astype(str))
        )
    return panels, notes


def _add_imported(panel: Panel, imported: pd.DataFrame) -> None:
    rows = imported[
        (imported["dataset"] == panel.dataset)
        & (imported["protocol"] == panel.protocol)
        & imported["common"].notna()
        & imported["counter"].notna()
    ]
    if rows.empty:
        return
    elsewhere = pd.DataFrame(
        {
            "family": np.where(rows["task"] == "zeroshot_classification", "clip", "imagenet"),
            "model_name": rows["model"] + "," + rows["pretrained"],
            "protocol": rows["protocol"],
            "common": 100 * rows["common"],
            "counter": 100 * rows["counter"],
            "source": "published elsewhere",
        }
    )
    panel.published = pd.concat([panel.published, elsewhere], ignore_index=True)


def panel_points(data: ReportData, panel: Panel) -> pd.DataFrame:
    """The rows :func:`~spurbench.report.plots.plot_counter_vs_common` draws for a panel.

    Our runs in percent with ``source="ours"`` when the panel joins the published testbed; on
    their own, they carry no source column, so families with three or more models get a trend.
    """
    runs = data.panel_runs(panel).dropna(subset=["common", "counter"])
    ours = pd.DataFrame(
        {
            "family": runs["kind"],
            "model_name": runs["display"],
            "protocol": runs["protocol"],
            "common": 100 * runs["common"],
            "counter": 100 * runs["counter"],
            "run_id": runs["run_id"],
        }
    )
    if panel.published is None:
        return ours.reset_index(drop=True)
    pub = panel.published[["family", "model_name", "protocol", "common", "counter", "source"]]
    clash = ours["model_name"].isin(set(pub["model_name"]))
    ours.loc[clash, "model_name"] = ours.loc[clash, "model_name"] + " (ours)"
    return pd.concat([pub, ours.assign(source="ours")], ignore_index=True)
