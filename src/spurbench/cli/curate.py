"""``spurbench curate``: build a CounterAnimal-style dataset from a labelled photo pool.

A thin layer over :mod:`spurbench.curate.pipeline`: each subcommand parses options, runs one
step on a work folder and prints what it found.

Typical session::

    spurbench curate clean    --pool photos/ --work cur/ -r ViT-B-32,laion400m_e31
    spurbench curate tag      --work cur/ --tagger ViT-L-14,openai
    (look at cur/review.html, correct cur/review.csv)
    spurbench curate review   --work cur/ --apply cur/review.csv
    spurbench curate discover --work cur/ -r ViT-B-32,laion400m_e31 --held-out ViT-B-16,openai
    spurbench curate export   --work cur/ --out MyCounterAnimal/
    spurbench curate diagnose -m ViT-B-16,openai --work cur/

or all at once: ``spurbench curate run --pool photos/ --work cur/ --out MyCounterAnimal/ -r ...``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.markup import escape
from rich.table import Table

from spurbench.cli.errors import friendly
from spurbench.cli.options import (
    ClassesOpt,
    CurateProtocol,
    JsonOpt,
    NameSet,
    NameSetOpt,
    OutsideOpt,
    RunOptions,
    SplitOpt,
    option_groups,
)
from spurbench.cli.output import console
from spurbench.curate.defaults import DEFAULT_THRESHOLD, NEAR_DISTANCE
from spurbench.errors import SpurbenchError
from spurbench.terminal import print_json, print_table, records

if TYPE_CHECKING:
    from spurbench.curate.discovery import Discovery, DiscoveryConfig
    from spurbench.curate.workspace import Workspace
    from spurbench.runtime import Runtime


__all__ = ["curate_app"]

F = TypeVar("F", bound=Callable[..., Any])

curate_app = typer.Typer(
    name="curate",
    help="Build a CounterAnimal-style dataset from any labelled photo pool: tag backgrounds, "
    "clean, discover spurious backgrounds, export with a datasheet, diagnose models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)


# -- shared options ------------------------------------------------------------------------------
WorkOpt = Annotated[Path, typer.Option("--work", "-w", help="Curation work folder.")]
PoolOpt = Annotated[
    str | None,
    typer.Option(
        "--pool",
        "-p",
        help="Photo pool (manifest or class folders); needed the first time a work folder is used.",
    ),
]
BgColumnOpt = Annotated[
    str,
    typer.Option(help="Manifest column with background labels; 'none' ignores the pool's."),
]
LabelsOpt = Annotated[
    Path | None, typer.Option(help="Labels CSV (image_id, background) a person edited.")
]
RefOpt = Annotated[
    list[str],
    typer.Option("--reference", "-r", help="Reference model selecting pairs; repeat for several."),
]
HeldOutOpt = Annotated[
    list[str] | None,
    typer.Option("--held-out", help="Evaluation model kept out of selection; repeatable."),
]
ProtocolOpt = Annotated[
    CurateProtocol,
    typer.Option(help="auto (1v1000 for ImageNet labels, else 1vN), 1v1000 or 1vN."),
]
TemplatesOpt = Annotated[
    str, typer.Option(help="Class prompts: 'paper' (\"A photo of {c}.\"), 'openai' or a file.")
]
TaggerOpt = Annotated[
    str | None, typer.Option(help="CLIP model tagging backgrounds [default: first reference].")
]
VocabOpt = Annotated[
    str, typer.Option(help="Backgrounds: 'paper' (the 14), a comma list, or a file.")
]
PromptOpt = Annotated[
    list[str] | None,
    typer.Option("--prompt", help="Background prompt with {bg}; repeat to ensemble."),
]
ThresholdOpt = Annotated[
    float, typer.Option(help="Softmax confidence below which a tag goes to review.")
]
NearOpt = Annotated[
    int, typer.Option(help="pHash Hamming distance for near duplicates; -1 turns it off.")
]
NoiseKOpt = Annotated[int, typer.Option(help="Label noise: label outside every model's top k.")]
GapOpt = Annotated[
    float, typer.Option(help="Keep a class if best − worst accuracy exceeds this (0.05 = paper).")
]
MinGroupOpt = Annotated[int, typer.Option(help="Backgrounds with fewer images are ineligible.")]
CiOpt = Annotated[
    bool, typer.Option(help="Also require the Clopper–Pearson intervals to separate.")
]
LevelOpt = Annotated[float, typer.Option(help="Confidence level of the intervals.")]


def _command(ctx: typer.Context) -> list[str]:
    """The invocation as a rebuildable argument list (recorded in the datasheet)."""
    args = [ctx.command_path]
    for key, value in ctx.params.items():
        flag = "--" + key.replace("_", "-")
        if value is None or value is False or value == []:
            continue
        if value is True:
            args.append(flag)
        elif isinstance(value, list | tuple):
            args += [f"{flag}={v}" for v in value]
        else:
            args.append(f"{flag}={value}")
    return args


@dataclass(frozen=True)
class PoolOptions:
    """How the pool's rows, labels and backgrounds are read (every step that reads the pool)."""

    background_column: BgColumnOpt = "background"
    labels: LabelsOpt = None
    name_set: NameSetOpt = NameSet.openai
    split: SplitOpt = None
    classes: ClassesOpt = None
    allow_outside_root: OutsideOpt = False


@dataclass(frozen=True)
class DiscoveryOptions:
    """The selection rule of spurious discovery (``discover`` and ``run``)."""

    gap: GapOpt = 0.05
    min_group_size: MinGroupOpt = 10
    require_ci: CiOpt = False
    level: LevelOpt = 0.95
    protocol: ProtocolOpt = CurateProtocol.auto
    templates: TemplatesOpt = "paper"

    def config(self) -> DiscoveryConfig:
        from spurbench.curate.discovery import DiscoveryConfig

        return DiscoveryConfig(self.gap, self.min_group_size, self.require_ci, self.level,
                               str(self.protocol), self.templates)  # fmt: skip


def _step(name: str, **groups: type) -> Callable[[F], F]:
    """A curate subcommand: registered, its errors one line, the pool and run options added
    (and ``groups``; see :func:`~spurbench.cli.options.option_groups`)."""

    def decorate(fn: F) -> F:
        with_options = option_groups(**groups, pool_options=PoolOptions, run_options=RunOptions)
        return curate_app.command(name)(friendly(with_options(fn)))

    return decorate


def _runtime(run: RunOptions, as_json: bool = False) -> Runtime:
    from spurbench.runtime import Runtime

    return Runtime(
        run.cache_dir, run.batch_size, device=run.device, show_progress=run.shows_progress(as_json)
    )


def _workspace(work: Path, pool: str | None, opts: PoolOptions) -> Workspace:
    from spurbench.curate.workspace import PoolSpec, Workspace

    if pool is None:
        return Workspace.open(work)
    column = opts.background_column
    spec = PoolSpec(
        source=pool,
        background_column=None if column.lower() == "none" else column,
        labels=str(opts.labels) if opts.labels else None,
        name_set=NameSet(opts.name_set).value,
        split=opts.split,
        classes=str(opts.classes) if opts.classes else None,
        allow_outside_root=opts.allow_outside_root,
    )
    return Workspace.create(work, spec)


def _review_note(ws: Workspace, n: int) -> None:
    from spurbench.curate.workspace import REVIEW_CSV, REVIEW_HTML

    if n:
        console.print(
            escape(
                f"{n} images to review: open {ws.path(REVIEW_HTML)}, correct "
                f"{ws.path(REVIEW_CSV)}, then `spurbench curate review --work {ws.root} "
                f"--apply {ws.path(REVIEW_CSV)}`."
            )
        )


# -- steps ---------------------------------------------------------------------------------------
@_step("tag")
def tag_cmd(
    ctx: typer.Context,
    work: WorkOpt,
    pool: PoolOpt = None,
    tagger: Annotated[str | None, typer.Option(help="CLIP model tagging backgrounds.")] = None,
    vocabulary: VocabOpt = "paper",
    prompt: PromptOpt = None,
    threshold: ThresholdOpt = DEFAULT_THRESHOLD,
    retag: Annotated[bool, typer.Option(help="Re-tag earlier automatic labels too.")] = False,
    pool_options: PoolOptions = PoolOptions(),
    run_options: RunOptions = RunOptions(),
) -> None:
    """Tag missing backgrounds zero-shot; low-confidence images go to the review files.

    Labels given with the pool (a manifest column, background folders, --labels) are kept as
    `manual` and never re-tagged; with all images labelled no model is loaded.
    """
    from spurbench.curate.pipeline import tag_step
    from spurbench.curate.tagging import DEFAULT_PROMPTS, read_vocabulary

    ws = _workspace(work, pool, pool_options)
    result = tag_step(
        ws,
        tagger,
        vocabulary=read_vocabulary(vocabulary),
        prompts=tuple(prompt) if prompt else DEFAULT_PROMPTS,
        threshold=threshold,
        retag=retag,
        runtime=_runtime(run_options),
        command=_command(ctx),
    )
    s = result.summary()
    if result.skipped:
        console.print("Every image has a background label: nothing to tag.")
    else:
        console.print(
            f"Tagged {s['n_tagged']} images with {s['tagger']}; "
            f"{s['n_low_confidence']} below confidence {threshold:g}."
        )
    console.print(escape(f"Label sources: {s['sources']}"))
    _review_note(ws, ws.last("tag")["summary"]["n_to_review"])  # type: ignore[index]


@curate_app.command("review")
@friendly
def review_cmd(
    ctx: typer.Context,
    work: WorkOpt,
    apply: Annotated[Path, typer.Option("--apply", help="The edited review CSV.")],
) -> None:
    """Feed a corrected review CSV back: its labels become `reviewed`, `exclude=yes` excludes."""
    from spurbench.curate.pipeline import review_step
    from spurbench.curate.workspace import Workspace

    ws = Workspace.open(work)
    counts = review_step(ws, apply, command=_command(ctx))
    console.print(
        f"{counts['labelled']} labels reviewed ({counts['changed']} changed), "
        f"{counts['excluded']} images excluded, {counts['blank']} rows left blank."
    )
    _review_note(ws, counts["n_to_review"])


@_step("clean")
def clean_cmd(
    ctx: typer.Context,
    work: WorkOpt,
    pool: PoolOpt = None,
    reference: Annotated[
        list[str] | None,
        typer.Option("--reference", "-r", help="Models flagging likely label noise; repeatable."),
    ] = None,
    near_distance: NearOpt = NEAR_DISTANCE,
    noise_k: NoiseKOpt = 5,
    protocol: ProtocolOpt = CurateProtocol.auto,
    templates: TemplatesOpt = "paper",
    pool_options: PoolOptions = PoolOptions(),
    run_options: RunOptions = RunOptions(),
) -> None:
    """Drop unreadable files and exact/near duplicates (listed); flag likely label noise."""
    from spurbench.curate.pipeline import clean_step

    ws = _workspace(work, pool, pool_options)
    report = clean_step(
        ws,
        references=reference or (),
        near_distance=None if near_distance < 0 else near_distance,
        noise_k=noise_k,
        protocol=str(protocol),
        templates=templates,
        runtime=_runtime(run_options),
        command=_command(ctx),
    )
    s = report.summary()
    console.print(
        escape(
            f"{s['n_images']} images checked; dropped: {s['dropped'] or 'none'}; "
            f"flagged as likely label noise: {s['label_noise_flagged']}."
        )
    )
    _review_note(ws, ws.last("clean")["summary"]["n_to_review"])  # type: ignore[index]


@_step("discover", discovery=DiscoveryOptions)
def discover_cmd(
    ctx: typer.Context,
    work: WorkOpt,
    reference: RefOpt,
    pool: PoolOpt = None,
    held_out: HeldOutOpt = None,
    discovery: DiscoveryOptions = DiscoveryOptions(),
    pool_options: PoolOptions = PoolOptions(),
    run_options: RunOptions = RunOptions(),
    as_json: JsonOpt = False,
) -> None:
    """Spurious discovery: per class, the best (common) and worst (counter) background."""
    from spurbench.curate.pipeline import discover_step

    ws = _workspace(work, pool, pool_options)
    result = discover_step(
        ws,
        reference,
        held_out=held_out or (),
        config=discovery.config(),
        runtime=_runtime(run_options, as_json),
        command=_command(ctx),
    )
    if as_json:
        print_json(discovery_records(result))
        return
    print_discovery(result)


@curate_app.command("export")
@friendly
def export_cmd(
    ctx: typer.Context,
    work: WorkOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder of the new dataset.")],
    name: Annotated[str | None, typer.Option(help="Dataset name in the datasheet.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an earlier export there.")] = False,
) -> None:
    """Write the selected pairs in the CounterAnimal layout with a manifest and a datasheet."""
    from spurbench.curate.pipeline import export_step
    from spurbench.curate.workspace import Workspace

    ws = Workspace.open(work)
    result = export_step(ws, out, name=name, overwrite=overwrite, command=_command(ctx))
    c = result.datasheet["counts"]
    console.print(
        escape(
            f"Exported {c['n_classes']} classes, {c['n_images']} images ({c['n_common']} "
            f"common, {c['n_counter']} counter) to {result.root}; datasheet in DATASHEET.md / "
            "datasheet.json."
        )
    )


@_step("diagnose")
def diagnose_cmd(
    model: Annotated[
        list[str], typer.Option("--model", "-m", help="Model name; repeat for several.")
    ],
    data: Annotated[
        str | None,
        typer.Option("--data", "-d", help="Pool or dataset with background labels."),
    ] = None,
    work: Annotated[
        Path | None, typer.Option("--work", "-w", help="Use a curation folder's labels instead.")
    ] = None,
    protocol: ProtocolOpt = CurateProtocol.auto,
    templates: TemplatesOpt = "paper",
    level: LevelOpt = 0.95,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Folder for one CSV per model.")
    ] = None,
    pool_options: PoolOptions = PoolOptions(),
    run_options: RunOptions = RunOptions(),
    as_json: JsonOpt = False,
) -> None:
    """Accuracy of a model on every class × background group, with exact intervals."""
    from spurbench.curate.diagnose import diagnose
    from spurbench.curate.workspace import Workspace

    if (data is None) == (work is None):
        raise SpurbenchError("Give exactly one of --data and --work.")
    source = Workspace.open(work).pool() if work is not None else data
    runtime = _runtime(run_options, as_json)
    pool = pool_options
    diagnoses = []
    for name in model:
        d = diagnose(
            name,
            source,  # type: ignore[arg-type]
            protocol=str(protocol),
            templates=templates,
            background_column=pool.background_column,
            labels=pool.labels,
            level=level,
            name_set=NameSet(pool.name_set).value,
            split=pool.split,
            classes=pool.classes,
            allow_outside_root=pool.allow_outside_root,
            runtime=runtime,
        )
        diagnoses.append({"model": d.model, "protocol": d.protocol, "cells": records(d.cells)})
        if out is not None:
            path = out / f"diagnosis-{_slug(d.model)}.csv"
            d.to_csv(path)
        if as_json:
            continue
        print_table(console, d.table())
        if out is not None:
            console.print(escape(f"wrote {path}"))
    if as_json:
        print_json(diagnoses)


@_step("run", discovery=DiscoveryOptions)
def run_cmd(
    ctx: typer.Context,
    pool: Annotated[str, typer.Option("--pool", "-p", help="Photo pool (manifest or folders).")],
    work: WorkOpt,
    reference: RefOpt,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Export here (omit to stop before).")
    ] = None,
    held_out: HeldOutOpt = None,
    tagger: TaggerOpt = None,
    vocabulary: VocabOpt = "paper",
    prompt: PromptOpt = None,
    threshold: ThresholdOpt = DEFAULT_THRESHOLD,
    near_distance: NearOpt = NEAR_DISTANCE,
    flag_noise: Annotated[bool, typer.Option(help="Flag likely label noise for review.")] = True,
    noise_k: NoiseKOpt = 5,
    discovery: DiscoveryOptions = DiscoveryOptions(),
    name: Annotated[str | None, typer.Option(help="Dataset name in the datasheet.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an earlier export.")] = False,
    pool_options: PoolOptions = PoolOptions(),
    run_options: RunOptions = RunOptions(),
    as_json: JsonOpt = False,
) -> None:
    """The whole pipeline: clean → tag → discover → export, in one work folder.

    Example:

        spurbench curate run --pool photos/manifest.csv --work cur/ --out MyCounterAnimal/
          -r ViT-B-32,laion400m_e31 --held-out ViT-B-16,openai --tagger ViT-L-14,openai
    """
    from spurbench.curate.pipeline import curate
    from spurbench.curate.tagging import DEFAULT_PROMPTS, read_vocabulary

    ws = _workspace(work, pool, pool_options)
    result = curate(
        ws.spec,
        work,
        out,
        reference,
        held_out=held_out or (),
        tagger=tagger,
        vocabulary=read_vocabulary(vocabulary),
        prompts=tuple(prompt) if prompt else DEFAULT_PROMPTS,
        threshold=threshold,
        near_distance=None if near_distance < 0 else near_distance,
        flag_noise=flag_noise,
        noise_k=noise_k,
        config=discovery.config(),
        name=name,
        overwrite=overwrite,
        runtime=_runtime(run_options, as_json),
        command=_command(ctx),
    )
    if as_json:
        export = None if result.export is None else str(result.export.root)
        print_json(
            {
                "cleaning": result.cleaning.summary(),
                "discovery": discovery_records(result.discovery),
                "export": export,
            }
        )
        return
    s = result.cleaning.summary()
    console.print(
        escape(
            f"Cleaning: dropped {s['dropped'] or 'none'}; "
            f"{s['label_noise_flagged']} flagged as likely label noise."
        )
    )
    from spurbench.curate.pool import source_counts  # pandas: not at start-up

    console.print(escape(f"Label sources: {source_counts(result.tagging.dataset)}"))
    print_discovery(result.discovery)
    if result.export is not None:
        c = result.export.datasheet["counts"]
        console.print(
            escape(
                f"Exported {c['n_classes']} classes, {c['n_images']} images to "
                f"{result.export.root}."
            )
        )
    _review_note(result.workspace, result.workspace.last("tag")["summary"]["n_to_review"])  # type: ignore[index]


# -- printing ------------------------------------------------------------------------------------
def discovery_records(result: Discovery) -> dict:
    """The discovery's selection and selection-bias tables as JSON-ready records."""
    return {"selection": records(result.selection), "bias": records(result.bias)}


def print_discovery(result: Discovery) -> None:
    """The selected pairs (and why classes were dropped), then the selection-bias table."""
    t = Table(
        title="Spurious discovery (accuracy %, mean over reference models)", title_justify="left"
    )
    for col in (
        "class",
        "kept",
        "common",
        "acc",
        "n",
        "counter",
        "acc ",
        "n ",
        "gap",
        "CIs apart",
        "why dropped",
    ):
        t.add_column(col, justify="right" if col.strip() in ("acc", "n", "gap") else "left")
    for r in result.selection.itertuples():
        t.add_row(
            escape(str(r.class_name)),
            "yes" if r.kept else "no",
            escape(str(r.common)),
            _pct(r.acc_common),
            str(r.n_common),
            escape(str(r.counter)),
            _pct(r.acc_counter),
            str(r.n_counter),
            _pct(r.gap),
            "yes" if r.ci_separated else "no",
            escape(str(r.reason)),
        )
    print_table(console, t)
    b = Table(
        title="Drop on the selected pairs (class-balanced %); selection bias = reference "
        "drop − model drop",
        title_justify="left",
    )
    for col in ("model", "role", "classes", "common", "counter", "drop", "selection bias"):
        b.add_column(col, justify="left" if col in ("model", "role") else "right")
    for r in result.bias.itertuples():
        b.add_row(
            escape(str(r.model)),
            str(r.role),
            str(r.n_classes),
            _pct(r.common),
            _pct(r.counter),
            _pct(r.drop),
            _pct(r.selection_bias),
        )
    print_table(console, b)


def _pct(x: float) -> str:
    return "" if x is None or x != x else f"{100 * float(x):.1f}"


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("_")[:80]
