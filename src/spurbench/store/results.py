"""The results store: one DuckDB file holding runs, per-image predictions, metrics and skips.

DuckDB allows one writer process at a time, and evaluations may run side by side (or be killed
with -9). Every access takes a file lock beside the database and holds the connection only for
one short transaction, so concurrent runs queue for a moment instead of failing, and a killed
writer leaves either its whole run or none of it (DuckDB rolls back an unfinished transaction
from its WAL on the next open). A run is keyed by what determines its result, so re-running the
same evaluation replaces its rows instead of duplicating them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pandas as pd
from filelock import FileLock, Timeout

from spurbench.atomic import is_disk_full
from spurbench.errors import StoreError

DEFAULT_PATH = "spurbench.duckdb"
LOCK_TIMEOUT_S = 600

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY, created_at TIMESTAMP, model VARCHAR, family VARCHAR,
    arch VARCHAR, pretrained VARCHAR, fingerprint VARCHAR, zero_shot BOOLEAN, dataset VARCHAR,
    dataset_path VARCHAR, dataset_hash VARCHAR, protocol VARCHAR, templates VARCHAR,
    name_set VARCHAR, n_images INTEGER, n_skipped INTEGER, config JSON, versions JSON
);
CREATE TABLE IF NOT EXISTS predictions (
    run_id VARCHAR, image_id VARCHAR, label INTEGER, class_name VARCHAR, group_name VARCHAR,
    background VARCHAR, topk_labels INTEGER[], topk_scores FLOAT[], correct BOOLEAN,
    correct_top5 BOOLEAN
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id VARCHAR, scope VARCHAR, label INTEGER, class_name VARCHAR, group_name VARCHAR,
    metric VARCHAR, value DOUBLE, ci_low DOUBLE, ci_high DOUBLE, n INTEGER
);
CREATE TABLE IF NOT EXISTS skipped (run_id VARCHAR, image_id VARCHAR, reason VARCHAR);
CREATE TABLE IF NOT EXISTS artifacts (run_id VARCHAR, kind VARCHAR, content JSON);
CREATE TABLE IF NOT EXISTS probe_runs (
    probe_id VARCHAR PRIMARY KEY, created_at TIMESTAMP, model VARCHAR, fingerprint VARCHAR,
    dataset VARCHAR, dataset_hash VARCHAR, probe VARCHAR, config JSON
);
CREATE TABLE IF NOT EXISTS probes (
    probe_id VARCHAR, probe VARCHAR, metric VARCHAR, key VARCHAR, value DOUBLE, extra JSON
);
CREATE TABLE IF NOT EXISTS published (
    source VARCHAR, dataset VARCHAR, model VARCHAR, pretrained VARCHAR, task VARCHAR,
    acc1 DOUBLE, acc5 DOUBLE, mean_per_class_recall DOUBLE, metrics JSON,
    protocol VARCHAR, common DOUBLE, counter DOUBLE
);
"""
_TABLES = ("runs", "predictions", "metrics", "skipped", "artifacts")
_SUMMARY_COLUMNS = (  # alias, metric, group, field
    ("common", "balanced_accuracy", "common", "value"),
    ("counter", "balanced_accuracy", "counter", "value"),
    ("drop", "drop", "common-counter", "value"),
    ("drop_ci_low", "drop", "common-counter", "ci_low"),
    ("drop_ci_high", "drop", "common-counter", "ci_high"),
    ("common_per_image", "accuracy", "common", "value"),
    ("counter_per_image", "accuracy", "counter", "value"),
)


_DISK_FULL_MARKERS = ("No space left", "Disk full", "disk is full", "Disk quota exceeded")


@contextmanager
def _transaction(con: Any) -> Iterator[None]:
    """BEGIN ... COMMIT, rolled back on any failure without hiding the failure.

    When the commit itself fails (a full disk while DuckDB writes its WAL), DuckDB has already
    dropped the transaction and ROLLBACK raises "no transaction is active"; that secondary
    error must not replace the real one, which says what the user has to fix.
    """
    import duckdb

    con.execute("BEGIN TRANSACTION")
    try:
        yield
        con.execute("COMMIT")
    except BaseException:
        with suppress(duckdb.Error):
            con.execute("ROLLBACK")
        raise


class ResultsStore:
    """Open (creating if needed) a results database at ``path``."""

    def __init__(self, path: str | Path = DEFAULT_PATH) -> None:
        self.path = Path(path).expanduser()
        self._lock = FileLock(str(self.path) + ".lock", timeout=LOCK_TIMEOUT_S)
        with self._connect() as con:
            con.execute(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[Any]:
        """One connection under the store's file lock; failures become :class:`StoreError`.

        A full disk is the usual way a week-long sweep dies while writing; DuckDB reports it as
        an IOException (or, mid-transaction, as a failed commit), the lock file as an OSError.
        Either way the user gets one line saying so, and the unfinished transaction is gone.
        """
        import duckdb

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._lock:
                con = duckdb.connect(str(self.path))
                try:
                    yield con
                finally:
                    con.close()
        except Timeout:
            raise StoreError(
                f"The results store {self.path} stayed locked for {LOCK_TIMEOUT_S}s by another "
                "spurbench process. Wait for it, or use another --store path."
            ) from None
        except (OSError, duckdb.Error) as e:
            if is_disk_full(e) or any(m in str(e) for m in _DISK_FULL_MARKERS):
                raise StoreError(
                    f"No space left on device while writing the results store {self.path}: "
                    "this run was not stored, earlier results are intact. Free some space and "
                    "rerun (cached features make the rerun quick)."
                ) from None
            if isinstance(e, OSError | duckdb.IOException):
                raise StoreError(
                    f"Could not open or write the results store {self.path}: {e}"
                ) from None
            raise

    def write_run(
        self,
        run: dict[str, Any],
        predictions: pd.DataFrame,
        metrics: pd.DataFrame,
        skipped: pd.DataFrame | None = None,
        artifacts: dict[str, Any] | None = None,
    ) -> None:
        """Store one run and everything it produced, all or nothing."""
        run_id = run["run_id"]
        run_df = pd.DataFrame(
            [
                {
                    **run,
                    "config": json.dumps(run.get("config", {}), default=str),
                    "versions": json.dumps(run.get("versions", {})),
                }
            ]
        )
        art = pd.DataFrame(
            [(run_id, k, json.dumps(v, default=str)) for k, v in (artifacts or {}).items()],
            columns=["run_id", "kind", "content"],
        )
        skipped = (
            skipped
            if skipped is not None
            else pd.DataFrame(columns=["run_id", "image_id", "reason"])
        )
        with self._connect() as con, _transaction(con):
            for table in _TABLES:
                con.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
            for table, df in (
                ("runs", run_df),
                ("predictions", predictions),
                ("metrics", metrics),
                ("skipped", skipped),
                ("artifacts", art),
            ):
                if len(df):
                    con.register("incoming", df)
                    cols = ", ".join(df.columns)
                    con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM incoming")
                    con.unregister("incoming")

    def write_probe(self, record: dict[str, Any], rows: pd.DataFrame) -> None:
        """Store one probe run (``record`` keyed by ``probe_id``) and its tidy result rows.

        ``rows`` has columns ``metric, key, value`` and optionally ``extra`` (JSON text); one
        probe run is one (model, dataset, probe, config), so re-running it replaces its rows.
        """
        probe_id = record["probe_id"]
        rec = pd.DataFrame(
            [{**record, "config": json.dumps(record.get("config", {}), default=str)}]
        )
        rows = rows.assign(probe_id=probe_id, probe=record["probe"])
        if "extra" not in rows:
            rows = rows.assign(extra="{}")
        rows = rows[["probe_id", "probe", "metric", "key", "value", "extra"]]
        with self._connect() as con, _transaction(con):
            for table in ("probe_runs", "probes"):
                con.execute(f"DELETE FROM {table} WHERE probe_id = ?", [probe_id])
            for table, df in (("probe_runs", rec), ("probes", rows)):
                con.register("incoming", df)
                cols = ", ".join(df.columns)
                con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM incoming")
                con.unregister("incoming")

    def write_published(self, rows: pd.DataFrame) -> None:
        """Store results published elsewhere (see :mod:`spurbench.store.clip_benchmark`).

        A row replaces an earlier one of the same (dataset, model, pretrained, task), so
        importing a file twice, or a corrected file, leaves one row.
        """
        key = ["dataset", "model", "pretrained", "task"]
        rows = rows.drop_duplicates(key, keep="last")
        with self._connect() as con, _transaction(con):
            con.register("incoming", rows)
            con.execute(
                "DELETE FROM published p USING incoming i WHERE "
                + " AND ".join(f"p.{k} = i.{k}" for k in key)
            )
            cols = ", ".join(rows.columns)
            con.execute(f"INSERT INTO published ({cols}) SELECT {cols} FROM incoming")
            con.unregister("incoming")

    def published(self) -> pd.DataFrame:
        """Results published elsewhere that were imported into this store."""
        return self.query("SELECT * FROM published ORDER BY dataset, model, pretrained")

    def probe_results(self, probe: str | None = None) -> pd.DataFrame:
        """Probe rows joined with their run (model, dataset)."""
        sql = (
            "SELECT r.model, r.dataset, r.fingerprint, p.* FROM probes p "
            "JOIN probe_runs r USING (probe_id)"
        )
        return self.query(sql + (" WHERE p.probe = ?" if probe else ""), [probe] if probe else [])

    def query(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
        with self._connect() as con:
            return con.execute(sql, params or []).df()

    def runs(self) -> pd.DataFrame:
        return self.query("SELECT * FROM runs ORDER BY created_at")

    def has_run(self, run_id: str) -> bool:
        return len(self.query("SELECT 1 FROM runs WHERE run_id = ?", [run_id])) > 0

    def metrics(self, run_ids: list[str] | None = None, scope: str | None = None) -> pd.DataFrame:
        sql = "SELECT * FROM metrics WHERE 1=1"
        params: list[Any] = []
        if run_ids is not None:
            sql += f" AND run_id IN ({', '.join('?' * len(run_ids))})" if run_ids else " AND false"
            params += run_ids
        if scope is not None:
            sql += " AND scope = ?"
            params.append(scope)
        return self.query(sql, params)

    def predictions(self, run_id: str) -> pd.DataFrame:
        return self.query("SELECT * FROM predictions WHERE run_id = ? ORDER BY image_id", [run_id])

    def artifact(self, run_id: str, kind: str) -> Any:
        df = self.query(
            "SELECT content FROM artifacts WHERE run_id = ? AND kind = ?", [run_id, kind]
        )
        return json.loads(df["content"].iloc[0]) if len(df) else None

    def _repr_html_(self) -> str:
        """The run summary as a table, for notebooks."""
        return f"<p><b>{self.path}</b></p>" + self.summary().to_html(index=False)

    def summary(self) -> pd.DataFrame:
        """One row per run: model, dataset, protocol and the headline numbers."""
        cols = ",\n".join(
            f"max(m.{field}) FILTER (m.metric = '{metric}' AND m.group_name = '{group}') AS {alias}"
            for alias, metric, group, field in _SUMMARY_COLUMNS
        )
        return self.query(f"""
            SELECT r.run_id, r.model, r.dataset, r.protocol, r.n_images, r.n_skipped, {cols},
                   r.created_at
            FROM runs r LEFT JOIN metrics m ON m.run_id = r.run_id AND m.scope = 'overall'
            GROUP BY ALL ORDER BY r.created_at
        """)

    def export(self, out_dir: str | Path, fmt: str = "csv") -> list[Path]:
        """Write every table as CSV, JSON (records) or Parquet; returns the files written."""
        from spurbench.atomic import atomic_path

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for table in (*_TABLES, "probe_runs", "probes", "summary"):
            df = self.summary() if table == "summary" else self.query(f"SELECT * FROM {table}")
            target = out / f"{table}.{fmt}"
            with atomic_path(target) as tmp:
                if fmt == "csv":
                    df.to_csv(tmp, index=False)
                elif fmt == "json":
                    df.to_json(tmp, orient="records", indent=1, date_format="iso")
                elif fmt == "parquet":
                    df.to_parquet(tmp, index=False)
                else:
                    raise StoreError(f"Unknown export format {fmt!r}: csv, json or parquet.")
            written.append(target)
        return written
