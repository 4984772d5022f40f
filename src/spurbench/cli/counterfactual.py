"""``spurbench counterfactual``: background counterfactuals of a dataset, per model.

A thin layer over :func:`spurbench.counterfactual.counterfactual`: it checks everything it can
(protocol, fill, data, masks) before any model loads, then prints per model the BG-gap with its
interval, ONLY-FG against ORIGINAL, the share of the CounterAnimal drop that swapping only the
background recovers, and the attribution counts. Results go to the results store.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from spurbench.cli.errors import friendly
from spurbench.cli.options import (
    DEFAULT_STORE,
    MASK_SOURCES,
    SEGMENTATION,
    Fill,
    JsonOpt,
    NameSet,
    NameSetOpt,
    Protocol,
    RunOptions,
    StoreOpt,
    option_groups,
    parse_mask_source,
)
from spurbench.cli.output import console
from spurbench.terminal import print_json, print_table

if TYPE_CHECKING:
    from spurbench.counterfactual.run import CounterfactualResult

__all__ = ["counterfactual_cmd"]


@friendly
@option_groups(run=RunOptions)
def counterfactual_cmd(
    data: Annotated[str, typer.Argument(help="CounterAnimal folder, class folders or manifest.")],
    model: Annotated[
        list[str], typer.Option("--model", "-m", help="Model name; repeat for several.")
    ],
    protocol: Annotated[Protocol, typer.Option(help="1v1000, 1v20 or 1vN.")] = Protocol.v1000,
    masks: Annotated[
        Path | None,
        typer.Option(help="Folder of PNG masks mirroring the image tree (white = object)."),
    ] = None,
    boxes: Annotated[
        bool, typer.Option("--boxes", help="GrabCut from manifest columns x0,y0,x1,y1 (pixels).")
    ] = False,
    mask_source: Annotated[
        str,
        typer.Option(
            parser=parse_mask_source,
            metavar=f"<{'|'.join(MASK_SOURCES)}|{SEGMENTATION}NAME>",
            help="auto: --masks, else the synthetic world's exact masks, else --boxes; "
            f"{SEGMENTATION}NAME[:WEIGHTS]: a torchvision segmentation model.",
        ),
    ] = "auto",
    fill: Annotated[Fill, typer.Option(help="How ONLY-BG fills the object's box.")] = Fill.tile,
    seed: Annotated[int, typer.Option(help="Seed of the donor backgrounds.")] = 0,
    templates: Annotated[
        str, typer.Option(help="'paper', 'openai' (80 prompts) or a file.")
    ] = "paper",
    name_set: NameSetOpt = NameSet.openai,
    export: Annotated[Path | None, typer.Option(help="Also write the variant images here.")] = None,
    store: StoreOpt = DEFAULT_STORE,
    run: RunOptions = RunOptions(),
    as_json: JsonOpt = False,
) -> None:
    """Did the background cause the drop? Xiao et al.'s counterfactuals, per image.

    Examples:

        spurbench counterfactual ~/data/CounterAnimal -m ViT-B-32,openai --masks ~/data/masks

        spurbench counterfactual photos.csv -m ViT-B-32,openai --boxes --protocol 1vN
    """
    from spurbench.counterfactual.run import counterfactual
    from spurbench.evaluate.preflight import check_batch_size, check_device

    check_batch_size(run.batch_size)
    check_device(run.device)
    options = dict(masks=masks, mask_source=mask_source, boxes=boxes, seed=seed, fill=str(fill),
                   cache_dir=run.cache_dir, name_set=NameSet(name_set).value)  # fmt: skip
    # counterfactual() builds (or finds) the variants before it loads the model, so bad data or
    # masks fail before any model loads
    results = []
    for name in model:
        r = counterfactual(
            name, data, protocol=str(protocol), templates=templates, store=store, export=export,
            batch_size=run.batch_size, device=run.device,
            show_progress=run.shows_progress(as_json),
            **options,  # type: ignore[arg-type]
        )  # fmt: skip
        results.append(r)
        if not as_json:
            _print_result(r)
    if as_json:
        print_json([result_record(r) for r in results])
        return
    console.print(
        f"Attributions stored in [bold]{escape(str(store))}[/]; "
        f"`spurbench report --store {escape(str(store))}` shows them with thumbnails."
    )


def result_record(r: CounterfactualResult) -> dict:
    """What ``--json`` prints for one model."""
    return {
        "run_id": r.run.run_id,
        "model": r.model,
        "protocol": r.protocol,
        "fill": r.fill,
        "seed": r.seed,
        "mask_sources": r.mask_sources,
        "mask_counts": r.mask_counts,
        "summary": r.summary,
    }


def _pct(x: float) -> str:
    return "-" if x != x else f"{100 * x:.1f}"


def _print_result(r: CounterfactualResult) -> None:
    s = r.summary
    t = Table(title=f"{escape(r.model)}: background counterfactuals ({r.protocol}, fill {r.fill})")
    for col in ("measure", "value (%)"):
        t.add_column(col)
    t.add_row(
        "BG-gap = MIXED-SAME − MIXED-RAND",
        f"{_pct(s['bg_gap'])} [{_pct(s['bg_gap_ci_low'])}, {_pct(s['bg_gap_ci_high'])}]",
    )
    t.add_row("ORIGINAL / ONLY-FG", f"{_pct(s['acc_original'])} / {_pct(s['acc_only_fg'])}")
    t.add_row("ONLY-BG (all / common photos)",
              f"{_pct(s['acc_only_bg'])} / {_pct(s['acc_only_bg_common'])}")  # fmt: skip
    t.add_row("common − counter drop", _pct(s["drop"]))
    t.add_row("share of the drop explained by background", _pct(s["drop_explained"]))
    t.add_row(
        "counter photos: robust / background / object",
        f"{s['n_robust']} / {s['n_background']} / {s['n_object']} (counts)",
    )
    masks = ", ".join(f"{k} {v}" for k, v in r.mask_sources.items()) or "none"
    flagged = r.mask_counts["too_small"] + r.mask_counts["too_large"]
    t.add_row("masks (source: images)", f"{masks}; {flagged} flagged, "
              f"{r.mask_counts['missing']} missing (counts)")  # fmt: skip
    print_table(console, t)


def demo_line(r: CounterfactualResult) -> str:
    """One sentence for ``spurbench demo``: what the background caused, for one model."""
    s = r.summary
    return (
        f"Background counterfactuals ({escape(r.model.split('/')[-1])}, fill {r.fill}): BG-gap "
        f"{_pct(s['bg_gap'])} [{_pct(s['bg_gap_ci_low'])}, {_pct(s['bg_gap_ci_high'])}] points; "
        f"swapping only the background to a common one recovers {_pct(s['drop_explained'])} % "
        f"of the drop; counter photos: {s['n_background']} background-caused, "
        f"{s['n_object']} object-caused, {s['n_robust']} robust."
    )
