"""A results store as pandas frames, for notebooks and scripts.

``spurbench.load_results("spurbench.duckdb")`` returns every table a user analyses — runs,
the one-row-per-run summary, metrics (overall, per group, per class, with intervals), skipped
images, probe results and results published elsewhere — as DataFrames; per-image predictions,
the one table that grows with the data, are read per run with ``ResultsStore.predictions``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import pandas as pd

from spurbench.errors import StoreError
from spurbench.store.results import ResultsStore


@dataclass
class ResultFrames:
    """The store's tables as DataFrames."""

    summary: pd.DataFrame
    runs: pd.DataFrame
    metrics: pd.DataFrame
    skipped: pd.DataFrame
    probes: pd.DataFrame
    published: pd.DataFrame

    def _repr_html_(self) -> str:
        counts = ", ".join(f"{f.name}: {len(getattr(self, f.name))} rows" for f in fields(self))
        return f"<p><b>spurbench results</b> ({counts})</p>" + self.summary.to_html(index=False)


def load_results(store: ResultsStore | str | Path) -> ResultFrames:
    """Every table of ``store`` (a ResultsStore or the path of one) as DataFrames."""
    if not isinstance(store, ResultsStore):
        if not Path(store).expanduser().exists():
            raise StoreError(f"No results store at {store}.")
        store = ResultsStore(store, read_only=True)
    return ResultFrames(
        summary=store.summary(),
        runs=store.runs(),
        metrics=store.metrics(),
        skipped=store.query("SELECT * FROM skipped"),
        probes=store.probe_results(),
        published=store.published(),
    )
