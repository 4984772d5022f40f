"""The results store: one DuckDB file holding runs, per-image predictions, metrics and skips.

DuckDB allows one writer process at a time, and evaluations may run side by side (or be killed
with -9). Every access takes a file lock beside the database and holds the connection only for
one short transaction, so concurrent runs queue for a moment instead of failing, and a killed
writer leaves either its whole run or none of it (DuckDB rolls back an unfinished transaction
from its WAL on the next open). A run is keyed by what determines its result, so re-running the
same evaluation replaces its rows instead of duplicating them.

Reading commands (``results``, ``report``) open the store read-only and never create the lock
file, so a store on read-only media, or in a folder the user cannot write, can still be read;
they take the lock when it already exists and can be opened, to wait for a writer in progress.
The path is checked before anything opens it: a FIFO would block DuckDB forever (with the lock
held), and a file of another kind (a SQLite database) would make DuckDB try to download an
extension to read it.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, suppress
from pathlib import Path
from typing import Any

import pandas as pd
from filelock import FileLock, Timeout

from spurbench.atomic import is_disk_full
from spurbench.data.dataset import COMMON, COUNTER, DROP_GROUP
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
#: Columns added after the first release, migrated into older stores when they are opened:
#: where a 1-vs-20 run's candidate sets came from, and their hash (NULL for other protocols).
_ADDED_RUN_COLUMNS = (("candidates_source", "VARCHAR"), ("candidates_hash", "VARCHAR"))
#: How an LVLM run scored its answers (runs stored before the choice existed used the paper's).
_LVLM_SCORE = (
    "CASE WHEN r.family = 'lvlm' THEN "
    "coalesce(json_extract_string(r.config, '$.scoring.score'), 'paper') END"
)
#: Columns of :meth:`ResultsStore.probe_results`.
_PROBE_RESULT_COLUMNS = (
    *("model", "dataset", "fingerprint"),
    *("probe_id", "probe", "metric", "key", "value", "extra"),
)
_PUBLISHED_COLUMNS = (
    "source", "dataset", "model", "pretrained", "task", "acc1", "acc5",
    "mean_per_class_recall", "metrics", "protocol", "common", "counter",
)  # fmt: skip
_TABLES = ("runs", "predictions", "metrics", "skipped", "artifacts")
_SUMMARY_COLUMNS = (  # alias, metric, group, field
    ("common", "balanced_accuracy", COMMON, "value"),
    ("counter", "balanced_accuracy", COUNTER, "value"),
    ("drop", "drop", DROP_GROUP, "value"),
    ("drop_ci_low", "drop", DROP_GROUP, "ci_low"),
    ("drop_ci_high", "drop", DROP_GROUP, "ci_high"),
    ("classes_common", "balanced_accuracy", COMMON, "n"),
    ("classes_counter", "balanced_accuracy", COUNTER, "n"),
    ("classes_paired", "drop", DROP_GROUP, "n"),
    ("common_per_image", "accuracy", COMMON, "value"),
    ("counter_per_image", "accuracy", COUNTER, "value"),
)


#: A DuckDB database file has this magic at byte 8 (after its header checksum).
DUCKDB_MAGIC = b"DUCK"
SQLITE_MAGIC = b"SQLite format 3\0"


def check_store_path(path: str | Path) -> Path:
    """``path`` if it can be a results store (absent, or a DuckDB file), else :class:`StoreError`.

    Cheap and done before a model loads: it reads at most 16 bytes of a regular file, and never
    opens anything else (opening a FIFO for reading blocks until a writer appears).
    """
    path = Path(path).expanduser()
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return path
    except OSError as e:
        raise StoreError(f"Cannot use {path} as the results store: {e.strerror}.") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise StoreError(f"The results store {path} is {kind}; pass a .duckdb file path.")
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as e:
        raise StoreError(f"Cannot read the results store {path}: {e.strerror}.") from None
    if head and head[8:12] != DUCKDB_MAGIC:
        kind = "a SQLite database" if head.startswith(SQLITE_MAGIC) else "not a DuckDB database"
        raise StoreError(
            f"{path} is {kind}, not a spurbench results store; pass a new or existing "
            ".duckdb file."
        )
    return path


def paired_drop_note(n_common: Any, n_counter: Any, n_paired: Any) -> str:
    """Why the drop differs from common − counter when some class lacks a group ('' if not).

    The balanced accuracies average over every class with images in the group; the drop only
    over classes that have both groups (a class without counter images has no drop to add).
    Counts may be missing (NA, NaN, None: a run without that group), read as 0.
    """
    n_common, n_counter, n_paired = (
        0 if pd.isna(n) else int(n) for n in (n_common, n_counter, n_paired)
    )
    if n_paired == 0 or n_paired == n_common == n_counter:
        return ""
    return (
        f"the drop is over the {n_paired} classes with both groups only, while common averages "
        f"{n_common} classes and counter {n_counter}: it is not common − counter"
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
    """Open (creating if needed) a results database at ``path``.

    ``read_only``: for commands that only read; the store must exist, is opened read-only and
    no lock file is created (see the module docstring).
    """

    def __init__(self, path: str | Path = DEFAULT_PATH, *, read_only: bool = False) -> None:
        self.path = check_store_path(path)
        self.read_only = read_only
        self._lock = FileLock(str(self.path) + ".lock", timeout=LOCK_TIMEOUT_S)
        if read_only:
            if not self.path.is_file():
                raise StoreError(f"No results store at {self.path}; run `spurbench eval` first.")
            return
        with self._connect() as con:
            con.execute(_SCHEMA)
            for column, kind in _ADDED_RUN_COLUMNS:
                con.execute(f"ALTER TABLE runs ADD COLUMN IF NOT EXISTS {column} {kind}")

    def _reader_lock(self) -> Any:
        """The lock when it exists and can be opened; else nothing (read-only media)."""
        lock_path = Path(self._lock.lock_file)
        if lock_path.exists() and os.access(lock_path, os.R_OK | os.W_OK):
            return self._lock
        return nullcontext()

    @contextmanager
    def _connect(self) -> Iterator[Any]:
        """One connection under the store's file lock; failures become :class:`StoreError`.

        A full disk is the usual way a week-long sweep dies while writing; DuckDB reports it as
        an IOException (or, mid-transaction, as a failed commit), the lock file as an OSError.
        Either way the user gets one line saying so, and the unfinished transaction is gone.
        """
        import duckdb

        try:
            if not self.read_only:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._reader_lock() if self.read_only else self._lock:
                con = duckdb.connect(str(self.path), read_only=self.read_only)
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
        """Results published elsewhere that were imported into this store.

        A store opened read-only is not migrated: one written before imports existed has none.
        """
        if self.read_only and not self._has_tables("published"):
            return pd.DataFrame(columns=[*_PUBLISHED_COLUMNS])
        return self.query("SELECT * FROM published ORDER BY dataset, model, pretrained")

    def probe_results(self, probe: str | None = None) -> pd.DataFrame:
        """Probe rows joined with their run (model, dataset).

        A store opened read-only is not migrated: one written before probes existed has no
        probe tables, and has no probe rows.
        """
        if self.read_only and not self._has_tables("probes", "probe_runs"):
            return pd.DataFrame(columns=[*_PROBE_RESULT_COLUMNS])
        sql = (
            "SELECT r.model, r.dataset, r.fingerprint, p.* FROM probes p "
            "JOIN probe_runs r USING (probe_id)"
        )
        return self.query(sql + (" WHERE p.probe = ?" if probe else ""), [probe] if probe else [])

    def _has_tables(self, *names: str) -> bool:
        found = self.query(
            "SELECT table_name FROM information_schema.tables WHERE table_name IN "
            f"({', '.join('?' * len(names))})",
            list(names),
        )
        return len(set(found["table_name"])) == len(names)

    def _has_run_column(self, column: str) -> bool:
        found = self.query(
            "SELECT 1 FROM information_schema.columns WHERE table_name = 'runs' "
            "AND column_name = ?",
            [column],
        )
        return len(found) > 0

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

    def write_artifact(self, run_id: str, kind: str, content: Any) -> None:
        """Attach (or replace) one JSON artifact of kind ``kind`` to a stored run."""
        text = json.dumps(content, default=str)
        with self._connect() as con, _transaction(con):
            con.execute("DELETE FROM artifacts WHERE run_id = ? AND kind = ?", [run_id, kind])
            con.execute("INSERT INTO artifacts VALUES (?, ?, ?)", [run_id, kind, text])

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
        added = ", ".join(
            f"r.{column}" if not self.read_only or self._has_run_column(column)
            else f"NULL::{kind} AS {column}"  # an old store opened read-only is not migrated
            for column, kind in _ADDED_RUN_COLUMNS
        )
        return self.query(f"""
            SELECT r.run_id, r.model, r.dataset, r.protocol, {added},
                   {_LVLM_SCORE} AS lvlm_score, r.n_images, r.n_skipped,
                   {cols}, r.created_at
            FROM runs r LEFT JOIN metrics m ON m.run_id = r.run_id AND m.scope = 'overall'
            GROUP BY ALL ORDER BY r.created_at
        """)

    def export(self, out_dir: str | Path, fmt: str = "csv") -> list[Path]:
        """Write every table as CSV, JSON (records) or Parquet; returns the files written."""
        from spurbench.atomic import atomic_path
        from spurbench.store.spreadsheet import spreadsheet_safe

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for table in (*_TABLES, "probe_runs", "probes", "summary"):
            df = self.summary() if table == "summary" else self.query(f"SELECT * FROM {table}")
            target = out / f"{table}.{fmt}"
            with atomic_path(target) as tmp:
                if fmt == "csv":
                    spreadsheet_safe(df).to_csv(tmp, index=False)
                elif fmt == "json":
                    df.to_json(tmp, orient="records", indent=1, date_format="iso")
                elif fmt == "parquet":
                    df.to_parquet(tmp, index=False)
                else:
                    raise StoreError(f"Unknown export format {fmt!r}: csv, json or parquet.")
            written.append(target)
        return written
