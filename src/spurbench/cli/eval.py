"""``spurbench eval``: score models on a grouped dataset and store the run."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from spurbench.cli.errors import friendly
from spurbench.cli.options import (
    BOTH,
    DEFAULT_STORE,
    Backend,
    BatchOpt,
    CacheOpt,
    CandidatesOpt,
    ClassesOpt,
    DataOpt,
    Decode,
    DecodeOpt,
    DeviceOpt,
    EngineOpt,
    GroupColumnOpt,
    ImageColumnOpt,
    JsonOpt,
    LabelColumnOpt,
    NameSet,
    NameSetOpt,
    OutsideOpt,
    PrecisionOpt,
    ProtocolsOpt,
    QuietOpt,
    ReferenceOpt,
    Score,
    SplitOpt,
    StoreOpt,
    TemplatesOpt,
)
from spurbench.cli.output import ci, console, pct
from spurbench.cli.runtime import command_runtime
from spurbench.errors import SpurbenchError
from spurbench.terminal import print_json, print_table, records


@friendly
def eval_cmd(
    model: Annotated[
        list[str], typer.Option("--model", "-m", help="Model name; repeat for several.")
    ],
    data: DataOpt,
    protocol: ProtocolsOpt = "1v1000",
    templates: TemplatesOpt = None,
    name_set: NameSetOpt = NameSet.openai,
    split: SplitOpt = None,
    classes: ClassesOpt = None,
    allow_outside_root: OutsideOpt = False,
    image_column: ImageColumnOpt = None,
    label_column: LabelColumnOpt = None,
    group_column: GroupColumnOpt = None,
    reference: ReferenceOpt = None,
    candidates: CandidatesOpt = None,
    question: Annotated[
        str | None, typer.Option(help="LVLMs: the question asked (default: the paper's).")
    ] = None,
    answer_template: Annotated[
        str | None, typer.Option(help="LVLMs: candidate answer format, e.g. 'A {c}.'.")
    ] = None,
    score: Annotated[
        Score,
        typer.Option(
            help="LVLMs: 'paper' (mean loss of 'A {c}.'), 'name-mean', 'name-sum' (the "
            "name's tokens only) or 'pmi' (name likelihood with minus without the image)."
        ),
    ] = Score.paper,
    batch_size: BatchOpt = 64,
    workers: Annotated[
        int | None,
        typer.Option(
            help="DataLoader decode worker processes [default: 0 on CPU, decoding between "
            "forwards on every core; more on a GPU; or SPURBENCH_WORKERS]; with "
            "--backend ray, Ray encoder workers [default: the cluster's CPUs]."
        ),
    ] = None,
    device: DeviceOpt = "cpu",
    precision: PrecisionOpt = None,
    engine: EngineOpt = None,
    decode: DecodeOpt = Decode.exact,
    backend: Annotated[
        Backend,
        typer.Option(help="Encode images in this process, or as cache shards on a Ray cluster."),
    ] = Backend.local,
    address: Annotated[
        str | None,
        typer.Option(
            help="Ray cluster: auto, ray://host:port or host:port [default: start a local "
            "Ray with --workers CPUs]."
        ),
    ] = None,
    store: StoreOpt = DEFAULT_STORE,
    cache_dir: CacheOpt = None,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Evaluate models on a grouped dataset and store per-image predictions and metrics.

    Examples:

        spurbench eval -m ViT-B-32,laion400m_e31 -d ~/data/CounterAnimal --protocol both

        spurbench eval -m torchvision:resnet50:IMAGENET1K_V2 -d data/ --protocol 1v20
          --reference ViT-B-32,laion400m_e31

        spurbench eval -m local-dir:./my_clip -d manifest.csv --protocol 1vN

        spurbench eval -m lvlm:llava-hf/llava-1.5-7b-hf -d data/ --protocol 1v20
          --reference ViT-B-32,laion400m_e31

        spurbench eval -m ViT-B-32,laion400m_e31 -d ~/data/CounterAnimal --backend ray
          --address ray://head-node:10001

        spurbench eval -m ViT-B-32,openai -d ~/data/wds_cifar10/ --protocol 1vN

        spurbench eval -m ViT-B-32,openai -d hf:org/counteranimal@test --group-column kind
    """
    from spurbench.data.dataset import SourceColumns
    from spurbench.data.spec import DataSpec
    from spurbench.evaluate import evaluate
    from spurbench.evaluate.preflight import check_batch_size, check_device
    from spurbench.models.engine import check_engine

    # the library takes plain names; typer has checked them against the choices (the image
    # pass's options become plain names in command_runtime, unset ones take its default)
    name_set, score = str(name_set), str(score)
    protocols = ("1v1000", "1v20") if protocol == BOTH else tuple(protocol.split(","))
    _check_score(score, model)
    check_batch_size(batch_size)  # once for all models, before any loads
    check_device(device)
    if engine is not None:  # None: the Runtime's default (auto)
        check_engine(engine)  # ONNX Runtime installed?
    # opened once, before any model loads, so bad data fails fast and all models see one table
    spec = DataSpec(
        data,
        name_set=name_set,
        split=split,
        classes=classes,
        allow_outside_root=allow_outside_root,
        columns=SourceColumns(image_column, label_column, group_column),
    )
    spec = dataclasses.replace(spec, source=spec.open())
    runtime = command_runtime(
        workers=workers if backend is Backend.local else 0, quiet=quiet, as_json=as_json,
        cache_dir=cache_dir, batch_size=batch_size, device=device, precision=precision,
        engine=engine, decode=decode, backend=backend.value, address=address,
        ray_workers=(workers or None) if backend is Backend.ray else None,
    )  # fmt: skip
    done: list[Any] = []
    for name in model:
        results = evaluate(
            name,
            spec,
            protocols,
            templates=templates,
            store=store,
            reference=reference,
            candidates=candidates,
            question=question,
            answer_template=answer_template,
            score=score,
            runtime=runtime,
        )
        done += _show(results, as_json)
    if as_json:
        print_json([_result_record(r) for r in done])
        return
    shown = escape(str(store))
    console.print(f"Results stored in [bold]{shown}[/]; see `spurbench results --store {shown}`.")


def _show(results: list[Any], as_json: bool) -> list[Any]:
    """Print each model's tables as soon as it is done (JSON waits for the end)."""
    if not as_json:
        for r in results:
            _print_result(r)
    return results


def _result_record(r: Any) -> dict:
    return {
        "run_id": r.run_id,
        "model": r.model,
        "dataset": r.dataset,
        "protocol": r.protocol,
        "summary": records(r.summary),
        "skipped": len(r.skipped),
    }


def _check_score(score: str, models: list[str]) -> None:
    """``--score`` is an LVLM option; refuse one given to other models."""
    from spurbench.models import parse_model_name

    others = [m for m in models if parse_model_name(m).family != "lvlm"]
    if score != "paper" and others:
        raise SpurbenchError(
            f"--score {score} applies to vision-language chat models (lvlm:...) only, not to "
            f"{others[0]}."
        )


def _print_result(r: Any) -> None:
    from spurbench.data.dataset import DROP_GROUP
    from spurbench.evaluate.candidates import describe_source

    s = r.summary.set_index(["metric", "group"])
    title = f"{r.model} · {r.dataset} · {r.protocol}"
    if r.candidates_hash:
        title += f" · sets {r.candidates_hash} from the {describe_source(r.candidates_source)}"
    if r.score:
        title += f" · score {r.score}"
    t = Table(title=escape(title), title_justify="left")
    for col in ("group", "balanced acc", "95% CI", "per-image acc", "95% CI ", "n"):
        t.add_column(col, justify="right" if col != "group" else "left")
    for g in sorted({g for m, g in s.index if m == "accuracy"}):
        b, a = s.loc[("balanced_accuracy", g)], s.loc[("accuracy", g)]
        t.add_row(escape(g), pct(b.value), ci(b), pct(a.value), ci(a), str(int(a.n)))
    if ("drop", DROP_GROUP) in s.index:
        d, di = s.loc[("drop", DROP_GROUP)], s.loc[("drop_per_image", DROP_GROUP)]
        t.add_row("[bold]drop[/]", f"[bold]{pct(d.value)}[/]", ci(d), pct(di.value), ci(di), "")
    print_table(console, t)
    from spurbench.evaluate.metrics import classes_per_group
    from spurbench.store.results import paired_drop_note

    note = paired_drop_note(*classes_per_group(r.summary))
    if note:
        console.print(f"[yellow]Note:[/] {note}.")
    if len(r.skipped):
        kinds = r.skipped["reason"].str.split(":").str[0].value_counts()
        by_kind = escape(", ".join(f"{n} {kind}" for kind, n in kinds.items()))
        console.print(
            f"[yellow]{len(r.skipped)} unreadable images skipped[/] ({by_kind}); "
            "per-file reasons in the store (spurbench results --export)."
        )
