"""Options shared by several commands, each declared once (name, flags, help, default).

A command takes one with ``store: StoreOpt = DEFAULT_STORE``; the default stays at the parameter
because typer reads it there. Options whose set of values is fixed are enums, so that typer
lists the choices in ``--help`` and refuses anything else before a command body runs.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_type_hints

import typer

F = TypeVar("F", bound=Callable[..., Any])

#: The results database every command reads and writes unless told otherwise.
DEFAULT_STORE = Path("spurbench.duckdb")


class Backend(StrEnum):
    """Where ``eval`` encodes images (see spurbench.features.ray_backend)."""

    local = "local"
    ray = "ray"


class NameSet(StrEnum):
    """ImageNet class names (spurbench.data.classes.NAME_SETS)."""

    openai = "openai"
    wordnet = "wordnet"


class Baseline(StrEnum):
    """``suite``'s effective-robustness baseline (spurbench.suite.BASELINE_SOURCES)."""

    auto = "auto"
    store = "store"
    timm = "timm"
    testbed = "testbed"
    openclip = "openclip"


class ExportFormat(StrEnum):
    """``results --export`` file formats; clip_benchmark writes one JSON per run."""

    csv = "csv"
    json = "json"
    parquet = "parquet"
    clip_benchmark = "clip_benchmark"


StoreOpt = Annotated[Path, typer.Option("--store", help="Results database (DuckDB).")]
CacheOpt = Annotated[
    Path | None,
    typer.Option(
        "--cache-dir", help="Feature cache [default: $SPURBENCH_CACHE or ~/.cache/spurbench]."
    ),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print the table(s) as JSON on stdout instead.")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
BatchOpt = Annotated[int, typer.Option("--batch-size", help="Images per forward pass.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:1, mps.")]
WorkersOpt = Annotated[
    int | None,
    typer.Option(
        "--workers", help="DataLoader decode workers [default: 2 on CPU, or SPURBENCH_WORKERS]."
    ),
]
NameSetOpt = Annotated[
    NameSet, typer.Option("--name-set", help="ImageNet class names of the dataset.")
]
TemplatesOpt = Annotated[
    str | None,
    typer.Option(
        "--templates",
        help="'paper', 'openai' (80 prompts) or a file [default: the dataset's own "
        "(clip_benchmark's templates file), else 'paper'].",
        show_default=False,
    ),
]
ProtocolOpt = Annotated[
    str,
    typer.Option("--protocol", help="1v1000, 1v20, 1vN, 'both' (1v1000+1v20) or a comma list."),
]
#: ``--precision`` of every command that encodes images (see spurbench.models.precision).
PrecisionOpt = Annotated[
    str | None,
    typer.Option(
        "--precision",
        help="Image pass: auto (bf16/fp16 autocast on CUDA; on CPU bf16 only where measured "
        "faster here, else fp32), fp32 (exact), bf16 or fp16. [default: auto, or "
        "$SPURBENCH_PRECISION] Recorded and labelled per run.",
        show_default=False,
    ),
]
#: ``--decode`` of the image pass (see spurbench.data.images.load_rgb).
DecodeOpt = Annotated[
    str,
    typer.Option(
        "--decode",
        help="exact (every pixel, the default) or draft (JPEGs over twice the model's input "
        "side decoded at a reduced DCT scale: faster on large photos). Recorded per run.",
    ),
]
#: ``--engine`` of the image pass (see spurbench.models.engine).
EngineOpt = Annotated[
    str | None,
    typer.Option(
        "--engine",
        help="Image tower: auto (ONNX Runtime only where measured faster here), eager PyTorch "
        "(exact) or onnx (ONNX Runtime, fp32 on CPU; spurbench[fast]). [default: auto, or "
        "$SPURBENCH_ENGINE] Recorded per run.",
        show_default=False,
    ),
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite the output if it exists.")]

# -- data sources --------------------------------------------------------------------------------
DataOpt = Annotated[
    str,
    typer.Option(
        "--data",
        "-d",
        help="CounterAnimal folder, class folders, manifest, WebDataset shards (folder, "
        "'shards-{000..009}.tar'), hf:org/name[:config][@split] or a save_to_disk folder.",
    ),
]
SplitOpt = Annotated[str | None, typer.Option("--split", help="Only rows of this manifest split.")]
ClassesOpt = Annotated[
    Path | None, typer.Option("--classes", help="Class names file (one per line) for a manifest.")
]
OutsideOpt = Annotated[
    bool,
    typer.Option(
        "--allow-outside-root/--no-allow-outside-root",
        help="Trust manifest paths outside the dataset root.",
    ),
]
ImageColumnOpt = Annotated[
    str | None,
    typer.Option("--image-column", help="HF dataset column / WebDataset extension of the image."),
]
LabelColumnOpt = Annotated[
    str | None,
    typer.Option("--label-column", help="... of the label [default: ClassLabel/'label'; 'cls']."),
]
GroupColumnOpt = Annotated[
    str | None,
    typer.Option(
        "--group-column", help="... of the group, e.g. common/counter [default: 'group']."
    ),
]
ReferenceOpt = Annotated[
    str | None,
    typer.Option(
        "--reference",
        help="Model choosing the 1-vs-20 candidates [default: the paper's "
        "ViT-B-32,laion400m_e31]; 'self' for each model's own confusions (not the paper's).",
    ),
]
CandidatesOpt = Annotated[
    Path | None,
    typer.Option(
        "--candidates", help="JSON of 1-vs-20 candidate sets (see `spurbench candidates`)."
    ),
]


def option_groups(**groups: type) -> Callable[[F], F]:
    """Give a command the fields of dataclasses as options, declared once on the dataclass.

    ``@option_groups(pool=PoolOptions)`` removes the parameter ``pool`` from the command's
    signature, adds one option per field of ``PoolOptions`` (its annotation and default, placed
    before ``--json`` so ``--help`` reads as before), and calls the command with
    ``pool=PoolOptions(...)`` built from them. Subcommands that share a dozen options (curate's)
    then list them once instead of once each.
    """

    def decorate(fn: F) -> F:
        sig = inspect.signature(fn, eval_str=True)
        params = [p for p in sig.parameters.values() if p.name not in groups]
        added = [
            inspect.Parameter(f.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=f.default,
                              annotation=get_type_hints(cls, include_extras=True)[f.name])
            for cls in groups.values()
            for f in dataclasses.fields(cls)
        ]  # fmt: skip
        at = next((i for i, p in enumerate(params) if p.name == "as_json"), len(params))
        params[at:at] = added

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for name, cls in groups.items():
                values = {f.name: kwargs.pop(f.name) for f in dataclasses.fields(cls)}
                kwargs[name] = cls(**values)
            return fn(*args, **kwargs)

        wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate
