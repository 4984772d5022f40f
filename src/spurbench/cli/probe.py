"""``spurbench probe``: the representation probes of Crabbé et al. from the command line.

Crabbé, Rodríguez, Shankar, Zappella & Blaas, *Interpreting CLIP: Insights on the Robustness to
ImageNet Distribution Shifts* (TMLR 2024; arXiv:2310.13040). A thin layer over
:func:`spurbench.probes.run.probe`: it parses options, probes each model in turn (features come
from the evaluation's cache), prints one table per probe across models — so models can be
compared side by side, including the concepts only one of them encodes — and optionally exports
everything as CSV and JSON. Results also go to the results store beside the evaluations.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from spurbench.cli.errors import friendly
from spurbench.cli.options import (
    DEFAULT_STORE,
    CandidatesOpt,
    ClassesOpt,
    DataOpt,
    EncodeOptions,
    JsonOpt,
    NameSet,
    NameSetOpt,
    ProbeProtocol,
    SplitOpt,
    StoreOpt,
    option_groups,
)
from spurbench.cli.output import console
from spurbench.probes.names import PROBES, SPACES
from spurbench.terminal import print_json, print_table

if TYPE_CHECKING:
    import pandas as pd

    from spurbench.probes.run import ProbeResult

__all__ = ["probe_cmd"]

#: Kept fractions shown in the pruning summary (the full curve is in the store and --out).
SHOWN_FRACTIONS = (0.1, 0.2, 0.5)
#: Directions listed per model in the directions table.
SHOWN_DIRECTIONS = 5


def _split(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [t.strip() for t in text.split(",") if t.strip()]


@friendly
@option_groups(run=EncodeOptions)
def probe_cmd(
    model: Annotated[
        list[str], typer.Option("--model", "-m", help="Model name; repeat for several.")
    ],
    data: DataOpt,
    probe_names: Annotated[
        str, typer.Option("--probe", help=f"Comma list among {','.join(PROBES)}.")
    ] = ",".join(PROBES),
    concepts: Annotated[
        str | None,
        typer.Option(
            "--concepts",
            help="A Broden-layout concept folder (index.csv, label.csv, images/), or a comma "
            "list of concept columns of the dataset table (default: badge_colour,badge_texture,"
            "background where present, else background,group).",
        ),
    ] = None,
    protocol: Annotated[
        ProbeProtocol,
        typer.Option(
            help="Class set of the head: auto (the paper's 1v1000 ImageNet head when the labels "
            "are ImageNet classes and the model has one, else 1vN, with a note), 1vN (dataset "
            "classes: an extension, labelled in every table), 1v1000 or 1v20."
        ),
    ] = ProbeProtocol.auto,
    templates: Annotated[
        str, typer.Option(help="'paper', 'openai' (80 prompts) or a file.")
    ] = "paper",
    name_set: NameSetOpt = NameSet.openai,
    split: SplitOpt = None,
    classes: ClassesOpt = None,
    reference: Annotated[
        str | None, typer.Option(help="Reference model choosing 1-vs-20 candidates.")
    ] = None,
    candidates: CandidatesOpt = None,
    ap_threshold: Annotated[
        float, typer.Option(help="AP at which a concept counts as encoded.")
    ] = 0.9,
    tolerance: Annotated[
        float, typer.Option(help="Accuracy loss allowed when pruning (0.01 = 1 point).")
    ] = 0.01,
    seed: Annotated[int, typer.Option(help="Rotation-control and probe-fold seed.")] = 0,
    store: StoreOpt = DEFAULT_STORE,
    out: Annotated[
        Path | None, typer.Option("--out", help="Also write the results as CSV and JSON here.")
    ] = None,
    run: EncodeOptions = EncodeOptions(),
    as_json: JsonOpt = False,
) -> None:
    """Probe what models represent: outlier features, privileged directions, pruning, concepts.

    Reads the features an evaluation cached (or encodes them once), and stores one probe run per
    model, dataset and probe beside the evaluations.

    Examples:

        spurbench probe -m ViT-B-32,laion400m_e31 -d ~/data/CounterAnimal --protocol 1v1000

        spurbench probe -m local-dir:./clip_a -m local-dir:./clip_b -d world/manifest.csv
          --split test --concepts badge_colour,badge_texture,background --out probes/
    """
    from spurbench.data.spec import DataSpec
    from spurbench.probes.run import json_safe, probe

    names = _split(probe_names) or []
    concept_folder = _concept_folder(concepts)
    spec = DataSpec(data, name_set=NameSet(name_set).value, split=split, classes=classes)
    runtime = run.runtime(as_json)
    results: list[ProbeResult] = []
    for name in model:
        results.append(
            probe(
                name,
                spec,
                probes=names,
                concept_columns=None if concept_folder else _split(concepts),
                concept_images=concept_folder,
                protocol=str(protocol),
                templates=templates,
                store=store,  # opened by probe() once the request is validated
                reference=reference,
                candidates=candidates,
                seed=seed,
                ap_threshold=ap_threshold,
                prune_tolerance=tolerance,
                runtime=runtime,
            )
        )
    if out is not None:
        written = write_outputs(results, out)
    if as_json:
        print_json(json_safe(_row_records(results)))
        return
    print_probe_tables(results)
    for r in results:
        for note in r.notes:
            console.print(f"[yellow]{escape(r.model)}[/]: {escape(note)}", highlight=False)
    if out is not None:
        for path in written:
            console.print(f"wrote {escape(str(path))}", highlight=False)
    console.print(f"Probe results stored in [bold]{escape(str(store))}[/].")


def _concept_folder(concepts: str | None) -> Path | None:
    """``--concepts`` names a folder (a Broden-layout concept set) rather than columns."""
    if concepts is None or not Path(concepts).expanduser().is_dir():
        return None
    return Path(concepts).expanduser()


# -- tables --------------------------------------------------------------------------------------


def print_probe_tables(
    results: list[ProbeResult],
    tables: Sequence[str] = ("kurtosis", "directions", "pruning", "concepts"),
) -> None:
    """Print the probe tables asked for (the CLI prints all; the demo a short tour)."""
    printers = {
        "kurtosis": _print_kurtosis,
        "directions": _print_directions,
        "pruning": _print_pruning,
        "concepts": _print_concepts,
    }
    for name in tables:
        printers[name](results)


def _f(x: float | None, digits: int = 2) -> str:
    return "" if x is None or x != x else f"{x:.{digits}f}"


def _pct(x: float | None) -> str:
    return "" if x is None or x != x else f"{100 * x:.1f}"


def _print_kurtosis(results: list[ProbeResult]) -> None:
    if not any(r.kurtosis or r.outliers for r in results):
        return
    t = Table(
        title="Outlier features · kurtosis of each image's activations (3 = Gaussian); "
        "'rotated' is the random-rotation control (≈ 3 when outliers are axis-aligned)",
        title_justify="left",
    )
    cols = ("model", "space", "dim", "mean κ", "median κ", "mean κ rotated", "per-dim κ (mean)",
            "outlier dims", "max/median |h|")  # fmt: skip
    for c in cols:
        t.add_column(c, justify="left" if c in ("model", "space") else "right")
    for r in results:
        for space in SPACES:
            k = r.kurtosis.get(space)
            o = r.outliers.get(space)
            dims = "" if o is None else _dims(o.dims.tolist())
            t.add_row(
                escape(r.model),
                space,
                str(k.dim if k else (o.mean_abs_activation.size if o else "")),
                _f(k.mean_image_kurtosis if k else None),
                _f(k.median_image_kurtosis if k else None),
                _f(k.mean_image_kurtosis_rotated if k else None),
                _f(k.mean_dimension_kurtosis if k else None),
                dims,
                _f(o.max_median_ratio if o else None, 1),
            )
    print_table(console, t)


def _dims(dims: list[int], n: int = 6) -> str:
    if not dims:
        return "none"
    shown = ", ".join(str(d) for d in dims[:n])
    return f"{len(dims)}: {shown}" + (" …" if len(dims) > n else "")


def _print_directions(results: list[ProbeResult]) -> None:
    shown = [r for r in results if r.directions is not None and "directions" in r.probes]
    if not shown:
        return
    t = Table(
        title="Privileged directions of the head W_H (SVD), ranked by importance = "
        "σᵢ/Σσ · E|cos(h, vᵢ)|",
        title_justify="left",
    )
    cols = ("model", "head", "top-1 / top-10 share %", "rank", "SVD index", "σ", "importance",
            "share %", "E|cos|", "top concept (AP)")  # fmt: skip
    for c in cols:
        t.add_column(c, justify="left" if c in ("model", "head", "top concept (AP)") else "right")
    for r in shown:
        d = r.directions
        assert d is not None
        total = float(d.importance.sum()) or float("nan")
        top = _top_concept_by_direction(r)
        n = min(SHOWN_DIRECTIONS, len(d))
        for i in range(n):
            first = i == 0
            t.add_row(
                escape(r.model) if first else "",
                escape(r.head_label) if first else "",
                f"{_pct(d.concentration(1))} / {_pct(d.concentration(10))}" if first else "",
                str(i),
                str(int(d.original_index[i])),
                _f(float(d.singular_values[i]), 3),
                f"{float(d.importance[i]):.4g}",
                _pct(float(d.importance[i]) / total),
                _f(float(d.mean_abs_cos[i]), 3),
                escape(top.get(i, "")),
                end_section=i == n - 1,
            )
    print_table(console, t)


def _top_concept_by_direction(r: ProbeResult) -> dict[int, str]:
    s = r.concept_direction_scores
    if s is None or s.empty:
        return {}
    best = s.sort_values(["direction", "ap"], ascending=[True, False]).drop_duplicates("direction")
    return {int(x.direction): f"{x.concept} ({x.ap:.2f})" for x in best.itertuples()}


def _print_pruning(results: list[ProbeResult]) -> None:
    shown = [r for r in results if r.pruning is not None]
    if not shown:
        return
    t = Table(
        title="Pruning: accuracy (%) keeping only the k most important directions "
        "('least' keeps the least important: the control), on held-out images: directions "
        "ranked on a seeded half of the images, accuracy measured on the other half",
        title_justify="left",
    )
    cols = ["model", "head", "held-out n", "directions", "full"]
    cols += [f"top {int(100 * f)}%" for f in SHOWN_FRACTIONS]
    cols += [f"least {int(100 * SHOWN_FRACTIONS[-1])}%", "max prunable"]
    for c in cols:
        t.add_column(c, justify="left" if c in ("model", "head") else "right")
    for r in shown:
        curve = r.pruning
        assert curve is not None
        most, least = curve[curve["keep"] == "most"], curve[curve["keep"] == "least"]
        n_dir = int(most["n_directions"].iloc[0])
        full = float(most.loc[most["k"] == n_dir, "accuracy"].iloc[0])
        t.add_row(
            escape(r.model),
            escape(r.head_label),
            str(int(most["n_images"].iloc[0])),
            str(n_dir),
            _pct(full),
            *[_at_fraction(most, f) for f in SHOWN_FRACTIONS],
            _at_fraction(least, SHOWN_FRACTIONS[-1]),
            f"{_pct(r.max_prunable_fraction)}% (±{100 * r.prune_tolerance:g} pt)",
        )
    print_table(console, t)


def _at_fraction(curve: pd.DataFrame, fraction: float) -> str:
    """Accuracy at the sampled k closest to ``fraction`` of the directions kept, with that k.

    k is shown because with few directions the closest sample can be far from ``fraction``.
    """
    if curve.empty:
        return ""
    row = curve.loc[(curve["fraction_kept"] - fraction).abs().idxmin()]
    return f"{_pct(float(row['accuracy']))} (k={int(row['k'])})"


def _print_concepts(results: list[ProbeResult]) -> None:
    from spurbench.probes.concepts import unique_concepts

    shown = [r for r in results if r.concepts is not None]
    if not shown:
        return
    views = ("directions", "linear_probe")
    unique = {v: unique_concepts({r.model: r.encoded_concepts(v) for r in shown}) for v in views}
    threshold = shown[0].ap_threshold
    t = Table(
        title=f"Concepts encoded (AP ≥ {threshold:g}) by a privileged direction, and by a "
        "cross-validated linear probe",
        title_justify="left",
    )
    for c in ("model", "head", "concepts from", "concepts", "by directions", "unique",
              "by linear probe", "unique ", "encoded by directions"):  # fmt: skip
        t.add_column(
            c,
            justify="left"
            if c in ("model", "head", "concepts from", "encoded by directions")
            else "right",
        )
    for r in shown:
        assert r.concepts is not None
        enc = r.concepts[r.concepts["encoded_by_direction"].astype(bool)]
        enc = enc.sort_values("direction_ap", ascending=False)
        pairs = list(zip(enc["concept"], enc["direction_ap"], strict=True))
        listed = ", ".join(f"{c} ({a:.2f})" for c, a in pairs[:6])
        listed += " …" if len(pairs) > 6 else ""
        t.add_row(
            escape(r.model),
            escape(r.head_label),
            escape(r.concept_source),
            str(len(r.concepts)),
            str(len(r.encoded_concepts("directions"))),
            str(len(unique["directions"][r.model])) if len(shown) > 1 else "",
            str(len(r.encoded_concepts("linear_probe"))),
            str(len(unique["linear_probe"][r.model])) if len(shown) > 1 else "",
            listed or "none",
        )
    print_table(console, t)


# -- export --------------------------------------------------------------------------------------


def _row_records(results: list[ProbeResult]) -> list[dict]:
    """Every model's tidy probe rows, ``extra`` decoded: what ``--json`` and ``--out`` write."""
    import pandas as pd  # not at start-up (--help)

    rows = pd.concat([r.rows for r in results], ignore_index=True).to_dict(orient="records")
    for rec in rows:
        rec["extra"] = json.loads(rec["extra"])
    return rows


def write_outputs(results: list[ProbeResult], out: Path) -> list[Path]:
    """Write the tidy rows (CSV, JSON), pruning curves and concept tables of every model."""
    import pandas as pd

    from spurbench.atomic import atomic_path
    from spurbench.probes.run import json_safe

    out.mkdir(parents=True, exist_ok=True)
    frames: dict[str, pd.DataFrame] = {
        "probe_rows": pd.concat([r.rows for r in results], ignore_index=True),
        "pruning_curve": _stack(results, "pruning"),
        "concepts": _stack(results, "concepts"),
    }
    written = []
    for name, df in frames.items():
        if df.empty and name != "probe_rows":
            continue
        for fmt in ("csv", "json"):
            target = out / f"{name}.{fmt}"
            with atomic_path(target) as tmp:
                if fmt == "csv":
                    df.to_csv(tmp, index=False)
                else:
                    rows = _row_records(results) if name == "probe_rows" else df
                    if isinstance(rows, pd.DataFrame):
                        rows = rows.to_dict(orient="records")
                    tmp.write_text(
                        json.dumps(json_safe(rows), indent=1, allow_nan=False, default=str)
                    )
            written.append(target)
    return written


def _stack(results: list[ProbeResult], attr: str) -> pd.DataFrame:
    import pandas as pd

    frames = [
        getattr(r, attr).assign(model=r.model, dataset=r.dataset)
        for r in results
        if getattr(r, attr) is not None
    ]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
