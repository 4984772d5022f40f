"""Options shared by several commands, each declared once (name, flags, help, default).

A command takes one with ``store: StoreOpt = DEFAULT_STORE``; the default stays at the parameter
because typer reads it there. Options whose set of values is fixed are enums (or, for a comma
list or an open-ended ``segmentation:NAME``, a ``parse_*`` function), so that typer lists the
choices in ``--help`` and refuses anything else, in one ``error:`` line naming them, before a
command body runs. The enums repeat the library's constants rather than import them, so that
``--help`` loads no stage; tests/test_cli_choices.py checks that the two agree.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, get_type_hints

import typer

from spurbench.cli.runtime import command_runtime

if TYPE_CHECKING:
    from spurbench.runtime import Runtime

F = TypeVar("F", bound=Callable[..., Any])

#: The results database every command reads and writes unless told otherwise.
DEFAULT_STORE = Path("spurbench.duckdb")


class Backend(StrEnum):
    """Where ``eval`` encodes images (spurbench.features.ray_backend.BACKENDS)."""

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


class Precision(StrEnum):
    """Image-pass precision (spurbench.models.precision.PRECISIONS)."""

    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"
    auto = "auto"


class Engine(StrEnum):
    """Image-pass engine (spurbench.models.engine.ENGINES)."""

    eager = "eager"
    onnx = "onnx"
    auto = "auto"


class Decode(StrEnum):
    """JPEG decoding of the image pass (spurbench.data.images.DECODES)."""

    exact = "exact"
    draft = "draft"


class Score(StrEnum):
    """How an LVLM's candidate answers are scored (spurbench.models.lvlm.SCORES)."""

    paper = "paper"
    name_mean = "name-mean"
    name_sum = "name-sum"
    pmi = "pmi"


class Protocol(StrEnum):
    """One evaluation protocol (spurbench.evaluate.protocols.PROTOCOLS)."""

    v1000 = "1v1000"
    v20 = "1v20"
    vN = "1vN"


class ProbeProtocol(StrEnum):
    """The class set of ``probe``'s head: the protocols, or ``auto`` (spurbench.probes.names)."""

    auto = "auto"
    vN = "1vN"
    v1000 = "1v1000"
    v20 = "1v20"


class CurateProtocol(StrEnum):
    """The protocols curation scores with (spurbench.curate.scoring)."""

    auto = "auto"
    v1000 = "1v1000"
    vN = "1vN"


class PaperProtocol(StrEnum):
    """The CounterAnimal paper's protocols, or both (spurbench.reproduce.PROTOCOLS)."""

    v1000 = "1v1000"
    v20 = "1v20"
    both = "both"


class Fill(StrEnum):
    """How ONLY-BG fills the object's box (spurbench.counterfactual.variants.FILLS)."""

    tile = "tile"
    blur = "blur"
    mean = "mean"
    black = "black"


class Transform(StrEnum):
    """Axis scale of the report's accuracy-on-the-line trends."""

    logit = "logit"
    probit = "probit"


class ListedFamily(StrEnum):
    """Model families whose names can be listed (spurbench.models.spec, those with a lister)."""

    open_clip = "open_clip"
    timm = "timm"
    torchvision = "torchvision"


#: ``--protocol`` of ``eval``: one protocol, a comma list, or both of the paper's.
BOTH = "both"
#: ``--mask-source`` values besides ``segmentation:NAME`` (spurbench.counterfactual.masks).
MASK_SOURCES = ("auto", "world", "folder", "grabcut")
SEGMENTATION = "segmentation:"
#: ``suite``'s datasets, the reference first (spurbench.data.imagenet_shifts.SUITE_NAMES).
SUITE_DATASETS = (
    "imagenet", "imagenet-v2", "imagenet-sketch", "imagenet-r", "imagenet-a", "objectnet"
)  # fmt: skip


def _not_one_of(value: str, choices: list[str]) -> typer.BadParameter:
    """The message typer gives a bad enum value, for options parsed by hand."""
    return typer.BadParameter(f"{value!r} is not one of {', '.join(map(repr, choices))}.")


def parse_protocols(text: str) -> str:
    """``1v1000``, ``1v20``, ``1vN``, a comma list of them, or ``both``; checked at parse time."""
    names = [p.strip() for p in text.split(",") if p.strip()]
    if names == [BOTH]:
        return BOTH
    choices = [p.value for p in Protocol]
    bad = next((p for p in names if p not in choices), None)
    if bad is not None or not names:
        raise _not_one_of(bad or text, [*choices, BOTH])
    return ",".join(names)


def parse_mask_source(text: str) -> str:
    """One of :data:`MASK_SOURCES`, or ``segmentation:NAME`` (the library checks NAME)."""
    if text in MASK_SOURCES or (text.startswith(SEGMENTATION) and text[len(SEGMENTATION) :]):
        return text
    raise _not_one_of(text, [*MASK_SOURCES, f"{SEGMENTATION}NAME"])


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
        "--workers",
        help="DataLoader decode worker processes [default: 0 on CPU, decoding between "
        "forwards on every core; more on a GPU; or SPURBENCH_WORKERS].",
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
ProtocolsOpt = Annotated[
    str,
    typer.Option(
        "--protocol",
        parser=parse_protocols,
        metavar="<1v1000|1v20|1vN|both>[,...]",
        help="1v1000, 1v20, 1vN, 'both' (1v1000+1v20) or a comma list.",
    ),
]
#: ``--precision`` of every command that encodes images (see spurbench.models.precision).
PrecisionOpt = Annotated[
    Precision | None,
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
    Decode,
    typer.Option(
        "--decode",
        help="exact (every pixel, the default) or draft (JPEGs over twice the model's input "
        "side decoded at a reduced DCT scale: faster on large photos). Recorded per run.",
    ),
]
#: ``--engine`` of the image pass (see spurbench.models.engine).
EngineOpt = Annotated[
    Engine | None,
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


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """Where and how models run: the options of every command that loads one and has no more
    (see :func:`option_groups`)."""

    batch_size: BatchOpt = 64
    device: DeviceOpt = "cpu"
    cache_dir: CacheOpt = None
    quiet: QuietOpt = False

    def shows_progress(self, as_json: bool) -> bool:
        """Progress bars, unless asked to be quiet or printing JSON (stdout holds it alone)."""
        return not (self.quiet or as_json)


@dataclasses.dataclass(frozen=True)
class EncodeOptions(RunOptions):
    """:class:`RunOptions` and the image pass's decode workers and precision: the options of the
    commands that encode images through a :class:`~spurbench.runtime.Runtime` (probe, suite)."""

    workers: WorkersOpt = None
    precision: PrecisionOpt = None

    def runtime(self, as_json: bool) -> Runtime:
        """The Runtime these options ask for; ``--json`` too silences the progress bars."""
        return command_runtime(as_json=as_json, **dataclasses.asdict(self))


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
