"""Reproduce published tables on the user's copy of the data, in one call.

CounterAnimal (:func:`reproduce_counteranimal`) and the ImageNet shift suite
(:func:`reproduce_imagenet_shifts`) both set ours beside the published numbers, model by model.

The CounterAnimal paper (Wang, Lin et al., NeurIPS 2024, Tables 3-5) reports class-balanced
accuracy on the common and counter groups, and their drop, for CLIP and ImageNet models under
1-vs-1000 and 1-vs-20 (candidate sets chosen by CLIP ViT-B-32 laion400m_e31). The model list
and numbers are data (``reference/counteranimal_models.csv``). Every listed model that loads
is evaluated through :func:`spurbench.evaluate` (so runs are stored and features cached: a
rerun encodes nothing again); each published number outside our bootstrap interval is flagged.

Models whose weights cannot be had (no network, no cache) are listed with the registry's
explanation of how to get them; the rest still run. A *weights map* (``{paper name: spurbench
model spec}``, JSON or a two-column CSV) points paper names at local checkpoints. LVLM rows
are descriptive names, not loadable models; they are reported as skipped.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from spurbench.data.dataset import ImageDataset
from spurbench.data.layouts import open_dataset
from spurbench.errors import SpurbenchError, UnknownModelError, WeightsUnavailableError
from spurbench.reference.testbed import load_counteranimal_models

#: The model whose confusions chose the paper's 1-vs-20 candidate sets.
PAPER_REFERENCE = "ViT-B-32,laion400m_e31"
PROTOCOLS = ("1v1000", "1v20")
LOADABLE_FAMILIES = ("clip", "imagenet")
#: The published columns, each named as the field of our run's headline it is compared with.
_COMPARED = ("common", "counter", "drop")


@dataclass
class Reproduction:
    """Ours beside the published numbers, and what could not be run."""

    #: One row per (model, protocol, quantity): ours with its interval, published, difference,
    #: and ``flagged`` when the published number lies outside our interval (percent).
    comparison: pd.DataFrame
    #: Paper name -> why it was not evaluated (how to get the weights, or why it cannot be).
    unavailable: dict[str, str] = field(default_factory=dict)


def paper_models(
    protocols: Sequence[str] = PROTOCOLS, patterns: Sequence[str] | None = None
) -> pd.DataFrame:
    """The paper's balanced-accuracy rows for ``protocols``, optionally only names matching."""
    rows = load_counteranimal_models(balanced=True)
    rows = rows[rows["protocol"].isin(protocols)]
    if patterns:
        keep = [any(fnmatch.fnmatchcase(n, p) for p in patterns) for n in rows["model_name"]]
        unmatched = [
            p for p in patterns if not any(fnmatch.fnmatchcase(n, p) for n in rows["model_name"])
        ]
        if unmatched:
            raise SpurbenchError(
                f"No model of the paper matches {unmatched}; its models are: "
                + ", ".join(sorted(set(rows["model_name"])))
            )
        rows = rows[keep]
    return rows.reset_index(drop=True)


def read_weights_map(path: str | Path, known: set[str]) -> dict[str, str]:
    """``{paper name: model spec}`` from a JSON object or a CSV with columns ``name, weights``."""
    path = Path(path).expanduser()
    try:
        if path.suffix.lower() == ".json":
            mapping = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(mapping, dict):
                raise ValueError("expected a JSON object {paper name: model spec}")
        else:
            df = pd.read_csv(path, dtype=str, keep_default_na=False)
            if not {"name", "weights"} <= set(df.columns):
                raise ValueError(f"expected columns name, weights; found {list(df.columns)}")
            mapping = dict(zip(df["name"], df["weights"], strict=True))
    except (OSError, ValueError) as e:
        raise SpurbenchError(f"Could not read the weights map {path}: {e}") from None
    unknown = sorted(set(mapping) - known)
    if unknown:
        raise SpurbenchError(
            f"The weights map {path} names models the paper does not list: {unknown}."
        )
    return {str(k): str(v) for k, v in mapping.items()}


def reproduce_counteranimal(
    data: str | Path | ImageDataset,
    *,
    models: Sequence[str] | None = None,
    weights_map: dict[str, str] | None = None,
    protocols: Sequence[str] = PROTOCOLS,
    notify: Callable[[str], None] = lambda _: None,
    **evaluate_kwargs,
) -> Reproduction:
    """Evaluate the paper's models on ``data`` and compare with the published numbers.

    ``models`` are glob patterns over the paper's names (``"ViT-B-32,*"``); ``weights_map``
    maps paper names to what to load instead; ``evaluate_kwargs`` go to
    :func:`spurbench.evaluate` (``store``, ``cache_dir``, ``device``, ``batch_size`` ...).
    """
    from spurbench.evaluate import evaluate
    from spurbench.models import create_model

    bad = [p for p in protocols if p not in PROTOCOLS]
    if bad:
        raise SpurbenchError(f"The paper reports protocols {PROTOCOLS}, not {bad}.")
    published = paper_models(protocols, models)
    weights_map = weights_map or {}
    dataset = data if isinstance(data, ImageDataset) else open_dataset(data)
    unavailable: dict[str, str] = {}
    reference = None
    if "1v20" in protocols:
        reference = _load(create_model, weights_map.get(PAPER_REFERENCE, PAPER_REFERENCE))
        if isinstance(reference, str):
            unavailable[PAPER_REFERENCE + " (1-vs-20 reference)"] = reference
            published = published[published["protocol"] != "1v20"]
            reference = None
    lvlm = published.loc[~published["family"].isin(LOADABLE_FAMILIES), "model_name"]
    for name in set(lvlm) - set(weights_map):
        unavailable[name] = "a vision-language chat model named descriptively: not loadable"
    published = published[~published["model_name"].isin(unavailable)]
    rows = []
    for name, adapter in _loaded(
        published["model_name"].unique(), weights_map, unavailable, notify
    ):
        theirs = published[published["model_name"] == name]
        runs = evaluate(
            adapter, dataset, tuple(theirs["protocol"]), reference=reference, **evaluate_kwargs
        )
        for run in runs:
            pub = theirs[theirs["protocol"] == run.protocol].iloc[0]
            rows += _compare(name, run, pub)
    return Reproduction(pd.DataFrame(rows, columns=_COLUMNS), unavailable)


def shift_models(patterns: Sequence[str] | None = None) -> pd.DataFrame:
    """The published ImageNet-shift results (open_clip's and timm's), one row per model."""
    from spurbench.suite import published_baselines

    rows = published_baselines()
    if patterns:
        rows = rows[[any(fnmatch.fnmatchcase(n, p) for p in patterns) for n in rows["model"]]]
        if rows.empty:
            raise SpurbenchError(f"No published shift result matches {list(patterns)}.")
    return rows.drop_duplicates("model").reset_index(drop=True)


def reproduce_imagenet_shifts(
    root: str | Path | None,
    *,
    models: Sequence[str] | None = None,
    weights_map: dict[str, str] | None = None,
    notify: Callable[[str], None] = lambda _: None,
    **suite_kwargs,
) -> Reproduction:
    """The ImageNet shift suite (Crabbé et al.'s testbed) over published models, ours beside theirs.

    Published numbers are open_clip's zero-shot results and timm's (no ObjectNet); each model
    runs through :func:`spurbench.suite.run_suite` on the datasets present under ``root``, and
    a published accuracy outside our Clopper–Pearson interval is flagged. ``models`` are glob
    patterns over the published names (``"ViT-B-32,*"``, ``"timm:resnet50*"``).
    """
    from spurbench.suite import run_suite

    published = shift_models(models).set_index("model")
    weights_map = weights_map or {}
    unavailable: dict[str, str] = {}
    rows = []
    for name, adapter in _loaded(list(published.index), weights_map, unavailable, notify):
        result = run_suite(adapter, root, **suite_kwargs)
        for dataset, run in result.runs.items():
            pub = published.loc[name, dataset]
            if pub != pub:  # timm publishes no ObjectNet
                continue
            acc = run.summary[run.summary["metric"] == "accuracy"].iloc[0]
            ours, lo, hi = (100 * float(acc[k]) for k in ("value", "ci_low", "ci_high"))
            pub = 100 * float(pub)
            rows.append([name, "1v1000", dataset, ours, lo, hi, pub, ours - pub,
                         not lo <= pub <= hi, run.run_id])  # fmt: skip
    return Reproduction(pd.DataFrame(rows, columns=_COLUMNS), unavailable)


def _loaded(names, weights_map: dict[str, str], unavailable: dict[str, str], notify):
    """(paper name, adapter) for each name that loads; the others go to ``unavailable``."""
    from spurbench.models import create_model

    for name in names:
        adapter = _load(create_model, weights_map.get(name, name))
        if isinstance(adapter, str):
            unavailable[name] = adapter
            notify(f"skipped {name}: {adapter}")
            continue
        yield name, adapter
        notify(f"done {name}")


_COLUMNS = [
    "model", "protocol", "quantity", "ours", "ci_low", "ci_high", "published", "difference",
    "flagged", "run_id",
]  # fmt: skip


def _load(create_model: Callable, spec: str):
    """The adapter, or the registry's message when the weights are not to be had."""
    try:
        return create_model(spec)
    except (WeightsUnavailableError, UnknownModelError) as e:
        return str(e)


def _compare(name: str, run, published: pd.Series) -> list[list]:
    headline = run.headline
    out = []
    for column in _COMPARED:
        s = getattr(headline, column)
        if s is None:
            raise SpurbenchError(
                f"{run.dataset} has no common/counter groups: it is not CounterAnimal-shaped."
            )
        ours, lo, hi = 100 * s.value, 100 * s.lo, 100 * s.hi
        pub = float(published[column])
        flagged = not lo <= pub <= hi
        out.append([name, run.protocol, column, ours, lo, hi, pub, ours - pub, flagged, run.run_id])
    return out
