"""``spurbench results`` and ``import-results``: the store's runs, exported or imported
(clip_benchmark JSON)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from spurbench.cli.errors import friendly
from spurbench.cli.options import DEFAULT_STORE, ExportFormat, JsonOpt, StoreOpt
from spurbench.cli.output import console, opt_pct
from spurbench.errors import SpurbenchError
from spurbench.terminal import print_json, print_table, records


@friendly
def results_cmd(
    store: StoreOpt = DEFAULT_STORE,
    export: Annotated[Path | None, typer.Option(help="Write every table to this folder.")] = None,
    fmt: Annotated[
        ExportFormat,
        typer.Option("--format", help="clip_benchmark writes one clip_benchmark JSON per run."),
    ] = ExportFormat.csv,
    as_json: JsonOpt = False,
) -> None:
    """Print the stored runs (balanced common/counter accuracy and drop), or export them."""
    from spurbench.store import ResultsStore
    from spurbench.store.results import paired_drop_note

    if not store.exists():
        raise SpurbenchError(f"No results store at {store}; run `spurbench eval` first.")
    rs = ResultsStore(store, read_only=True)
    df = rs.summary()
    if export is not None:
        if fmt is ExportFormat.clip_benchmark:
            from spurbench.store.clip_benchmark import export_runs

            written = export_runs(rs, export)
        else:
            written = rs.export(export, fmt.value)
        for p in written:
            console.print(f"wrote {escape(str(p))}", highlight=False)
        return
    published = rs.published()
    if as_json:
        print_json({"runs": records(df), "published": records(published)})
        return
    t = Table(title=escape(f"spurbench results · {store}"))
    for col in (
        "model",
        "dataset",
        "protocol",
        "1v20 sets",
        "common",
        "counter",
        "drop",
        "drop 95% CI",
        "n",
        "skipped",
    ):
        left = ("model", "dataset", "protocol", "1v20 sets")
        t.add_column(col, justify="left" if col in left else "right")
    for r in df.itertuples():
        ci = (
            ""
            if r.drop != r.drop or r.drop is None
            else f"[{100 * r.drop_ci_low:.1f}, {100 * r.drop_ci_high:.1f}]"
        )
        t.add_row(
            escape(str(r.model)),
            escape(str(r.dataset)),
            escape(str(r.protocol))
            + (f" · score {r.lvlm_score}" if isinstance(r.lvlm_score, str) else ""),
            _candidate_sets_cell(r.candidates_hash, r.candidates_source),
            opt_pct(r.common),
            opt_pct(r.counter),
            opt_pct(r.drop),
            ci,
            str(r.n_images),
            str(r.n_skipped),
        )
    print_table(console, t)
    for r in df.itertuples():
        note = paired_drop_note(r.classes_common, r.classes_counter, r.classes_paired)
        if note:
            console.print(f"[yellow]Note:[/] {r.model} · {r.dataset} · {r.protocol}: {note}.")
    if len(published):
        p = Table(title="published elsewhere (imported)")
        for col in ("dataset", "model", "pretrained", "task", "acc1", "acc5", "mean recall"):
            p.add_column(col, justify="right" if col[0] in "am" else "left")
        for r in published.itertuples():
            p.add_row(
                r.dataset,
                r.model,
                r.pretrained,
                r.task,
                opt_pct(r.acc1),
                opt_pct(r.acc5),
                opt_pct(r.mean_per_class_recall),
            )
        print_table(console, p)


@friendly
def import_results_cmd(
    files: Annotated[list[Path], typer.Argument(help="clip_benchmark result JSON files.")],
    store: StoreOpt = DEFAULT_STORE,
) -> None:
    """Bring clip_benchmark results into the store as rows published elsewhere.

    Example: spurbench import-results benchmark_*.json --store spurbench.duckdb
    """
    from spurbench.store import ResultsStore
    from spurbench.store.clip_benchmark import import_files, read_file

    for f in files:  # every file checked before the store is touched
        read_file(f)
    rows = import_files(ResultsStore(store), list(files))
    console.print(f"imported {len(rows)} results into {store}; see `spurbench results`.")


def _candidate_sets_cell(digest: Any, source: Any) -> str:
    """'3fa2c19e0b7d · paper reference ...' for a 1-vs-20 run, empty for other protocols."""
    from spurbench.evaluate.candidates import describe_source

    if not isinstance(digest, str):
        return ""
    return f"{digest} · {describe_source(source if isinstance(source, str) else None) or '?'}"
