"""Every number the demo stores, keyed so that two runs can be compared one number at a time.

The numbers are read back from what ``spurbench demo`` wrote (the DuckDB store and
``discovery.csv``), not from in-memory objects, so the goldens pin what a user sees. Models are
keyed by their zoo name (the checkpoint folder's name), not by the absolute path they ran from.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import duckdb
import pandas as pd

#: Absolute tolerance of every comparison.
TOLERANCE = 1e-6
GOLDEN = Path(__file__).parent / "data" / "demo_seed0.json"


def _zoo_name(model: str) -> str:
    return model.rstrip("/").rsplit("/", 1)[-1]


def _number(x: object) -> float | None:
    x = float(x)  # type: ignore[arg-type]
    return None if math.isnan(x) else x


def _unique(rows: dict[str, object], key: str, value: object) -> None:
    if key in rows:
        raise ValueError(f"two stored values for {key}: the demo store holds more than one run")
    rows[key] = value


def demo_numbers(out: Path) -> dict[str, dict[str, object]]:
    """metrics (value, ci_low, ci_high, n), probe values and the discovery table of a demo run."""
    metrics: dict[str, object] = {}
    probes: dict[str, object] = {}
    with duckdb.connect(str(out / "spurbench.duckdb"), read_only=True) as db:
        m = db.sql(
            "select r.model, m.scope, m.label, m.group_name, m.metric, m.value, m.ci_low, "
            "m.ci_high, m.n from metrics m join runs r using (run_id)"
        ).df()
        p = db.sql(
            "select r.model, p.probe, p.metric, p.key, p.value, p.extra "
            "from probes p join probe_runs r using (probe_id)"
        ).df()
    for r in m.itertuples():
        label = "" if pd.isna(r.label) else int(r.label)
        key = f"{_zoo_name(r.model)}|{r.scope}|{label}|{r.group_name}|{r.metric}"
        n = None if pd.isna(r.n) else int(r.n)
        _unique(metrics, key, [_number(r.value), _number(r.ci_low), _number(r.ci_high), n])
    for r in p.itertuples():
        key = f"{_zoo_name(r.model)}|{r.probe}|{r.metric}|{r.key}"
        extra = json.loads(r.extra) if isinstance(r.extra, str) and r.extra else {}
        # a top concept's name says which concept a direction encodes: part of the result
        value = [_number(r.value), extra.get("concept")] if "concept" in extra else _number(r.value)
        _unique(probes, key, value)
    disc = pd.read_csv(out / "discovery.csv", keep_default_na=False)
    discovery = {
        str(int(r["label"])): {
            "kept": str(r["kept"]) == "True",
            "common": r["common"],
            "counter": r["counter"],
            "acc_common": _number(r["acc_common"] if r["acc_common"] != "" else "nan"),
            "acc_counter": _number(r["acc_counter"] if r["acc_counter"] != "" else "nan"),
            "gap": _number(r["gap"] if r["gap"] != "" else "nan"),
        }
        for _, r in disc.iterrows()
    }
    return {"metrics": metrics, "probes": probes, "discovery": discovery}


def differences(expected: object, actual: object, path: str = "") -> list[str]:
    """Every place where ``actual`` differs from ``expected`` (numbers: by more than TOLERANCE)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        out = [f"{path}/{k}: missing" for k in expected.keys() - actual.keys()]
        out += [f"{path}/{k}: unexpected" for k in actual.keys() - expected.keys()]
        for k in expected.keys() & actual.keys():
            out += differences(expected[k], actual[k], f"{path}/{k}")
        return out
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        return [d for i, (e, a) in enumerate(zip(expected, actual, strict=True)) for d in
                differences(e, a, f"{path}[{i}]")]  # fmt: skip
    numeric = (int, float)
    if (isinstance(expected, numeric) and not isinstance(expected, bool)
            and isinstance(actual, numeric) and not isinstance(actual, bool)):  # fmt: skip
        return [] if abs(expected - actual) <= TOLERANCE else [f"{path}: {expected} -> {actual}"]
    return [] if expected == actual else [f"{path}: {expected!r} -> {actual!r}"]
