"""``spurbench candidates``: write the 1-vs-20 candidate sets once, evaluate anywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from spurbench.cli.errors import friendly
from spurbench.cli.options import (
    BatchOpt,
    CacheOpt,
    DataOpt,
    DeviceOpt,
    ForceOpt,
    NameSet,
    NameSetOpt,
    OutsideOpt,
    QuietOpt,
    SplitOpt,
)
from spurbench.cli.output import console


@friendly
def candidates_cmd(
    data: DataOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="JSON file to write.")],
    reference: Annotated[
        str, typer.Option(help="Model ranking the labels (the paper's by default).")
    ] = "ViT-B-32,laion400m_e31",
    name_set: NameSetOpt = NameSet.openai,
    split: SplitOpt = None,
    allow_outside_root: OutsideOpt = False,
    force: ForceOpt = False,
    batch_size: BatchOpt = 64,
    device: DeviceOpt = "cpu",
    cache_dir: CacheOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Write each class's 1-vs-20 candidate sets, for `spurbench eval --candidates FILE`.

    Compute them once where the reference's weights are, and evaluate anywhere with the same
    sets (the reference always ranks with the paper's prompt and OpenAI class names).

    Example:

        spurbench candidates -d ~/data/CounterAnimal -o counteranimal_1v20.json
    """
    from spurbench.evaluate.candidates import describe_source, export_candidates

    sets, digest = export_candidates(
        data,
        out,
        reference=reference,
        name_set=NameSet(name_set).value,
        split=split,
        allow_outside_root=allow_outside_root,
        overwrite=force,
        cache_dir=cache_dir,
        batch_size=batch_size,
        device=device,
        show_progress=not quiet,
    )
    console.print(
        f"wrote {out}: {len(sets)} classes, 20 candidates each, from the "
        f"{describe_source(reference)}; sets hash {digest}.",
        highlight=False,
    )
