"""Results in clip_benchmark's JSON format, both ways.

clip_benchmark (LAION-AI/CLIP_benchmark, ``clip_benchmark/cli.py``) writes one JSON per
evaluation: ``{"dataset", "model", "pretrained", "task", "metrics", "language"}`` with, for
zero-shot classification, ``metrics = {"acc1", "acc5", "mean_per_class_recall"}`` as fractions.
Scripts that gather those files can read spurbench's runs through :func:`export_runs`, and
:func:`import_files` brings clip_benchmark's results into the store as *published elsewhere*
rows (table ``published``), kept apart from spurbench's own runs.

Exported metrics are recomputed from the stored per-image predictions: ``acc1`` and ``acc5``
over all scored images, ``mean_per_class_recall`` the mean over classes of per-class top-1
accuracy (clip_benchmark's balanced accuracy). spurbench's own numbers (protocol, common and
counter balanced accuracy, drop) ride along under the extra key ``spurbench``; clip_benchmark
readers ignore it. The dataset is named ``<dataset>/<protocol>`` because the same images give
different accuracies under 1-vs-1000 and 1-vs-20. Imported files that carry those numbers
(exported by another spurbench) keep them, and the report places them on the counter-vs-common
plot of the same dataset and protocol.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from spurbench.atomic import write_json_atomic
from spurbench.errors import StoreError
from spurbench.store.results import ResultsStore

TASK = "zeroshot_classification"
#: The task of a supervised model's run (its own trained head, not a zero-shot one).
SUPERVISED_TASK = "classification"
METRICS = ("acc1", "acc5", "mean_per_class_recall")


def run_records(store: ResultsStore) -> list[dict]:
    """One clip_benchmark record per stored run."""
    runs = store.runs()
    summary = store.summary().set_index("run_id")
    records = []
    for run in runs.itertuples():
        preds = store.predictions(run.run_id)
        if preds.empty:
            continue
        per_class = preds.groupby("label")["correct"].mean()
        s = summary.loc[run.run_id]
        records.append(
            {
                "dataset": f"{run.dataset}/{run.protocol}",
                "model": run.arch,
                "pretrained": run.pretrained,
                "task": TASK if run.zero_shot else SUPERVISED_TASK,
                "metrics": {
                    "acc1": float(preds["correct"].mean()),
                    "acc5": float(preds["correct_top5"].mean()),
                    "mean_per_class_recall": float(per_class.mean()),
                },
                "language": "en",
                "spurbench": {
                    "run_id": run.run_id,
                    "model": run.model,
                    "protocol": run.protocol,
                    **{k: _number(s[k]) for k in ("common", "counter", "drop")},
                },
            }
        )
    return records


def export_runs(store: ResultsStore, out_dir: str | Path) -> list[Path]:
    """Write one clip_benchmark JSON per run into ``out_dir``; returns the files written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for rec in run_records(store):
        name = "_".join(
            _slug(str(rec[k])) for k in ("dataset", "pretrained", "model", "language", "task")
        )
        target = out / f"{name}.json"
        write_json_atomic(target, rec)
        written.append(target)
    return written


def read_file(path: str | Path) -> dict:
    """A clip_benchmark result file, checked: one row for the ``published`` table."""
    path = Path(path)
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise StoreError(f"Could not read {path} as JSON: {e}") from None
    if not isinstance(rec, dict):
        rec = {}
    missing = [k for k in ("dataset", "model", "pretrained", "task", "metrics") if k not in rec]
    if missing or not isinstance(rec.get("metrics"), dict):
        raise StoreError(
            f"{path} is not a clip_benchmark result (needs dataset, model, pretrained, task and "
            f"a metrics object; lacks {missing or ['metrics as an object']})."
        )
    numbers = {k: v for k, v in rec["metrics"].items() if isinstance(v, int | float)}
    ours = rec.get("spurbench") if isinstance(rec.get("spurbench"), dict) else {}
    protocol = ours.get("protocol")
    dataset = str(rec["dataset"])
    if protocol and dataset.endswith(f"/{protocol}"):
        dataset = dataset[: -len(protocol) - 1]
    return {
        "source": str(path.resolve()),
        "dataset": dataset,
        "model": str(rec["model"]),
        "pretrained": str(rec["pretrained"]),
        "task": str(rec["task"]),
        **{k: _number(numbers.get(k)) for k in METRICS},
        "metrics": json.dumps(numbers, sort_keys=True),
        "protocol": protocol,
        "common": _number(ours.get("common")),
        "counter": _number(ours.get("counter")),
    }


def import_files(store: ResultsStore, files: list[str | Path]) -> pd.DataFrame:
    """Read clip_benchmark JSONs into the store's ``published`` table (replacing same rows)."""
    rows = pd.DataFrame([read_file(f) for f in files])
    store.write_published(rows)
    return rows


def _number(x) -> float | None:
    return None if x is None or x != x else float(x)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")
