"""Model names as users already write them, parsed into a small typed spec.

Accepted forms (the registry in :mod:`spurbench.models.registry` resolves them):

* open_clip, as clip_benchmark writes it: ``ViT-B-32,laion2b_s34b_b79k``; a local checkpoint
  ``ViT-B-32,/path/to/ckpt.safetensors``; random init ``ViT-B-32,random``; hub and folder
  models ``hf-hub:org/repo`` and ``local-dir:/path`` (open_clip's own schemas).
* Hugging Face transformers CLIP: ``hf:openai/clip-vit-base-patch32`` or a local folder.
* timm: ``timm:resnet50,a1_in1k`` (canonical), timm's own ``timm:resnet50.a1_in1k`` or a bare
  timm name with a tag (``resnet50.a1_in1k``), all one weight; ``timm:local-dir:/path``.
* torchvision: ``torchvision:resnet50`` (default weights), ``torchvision:resnet50:IMAGENET1K_V2``
  or the bare ``resnet50:IMAGENET1K_V2``; ``torchvision:resnet50:random`` for random init.
* Vision-language chat models scored by answer likelihood (LLaVA-style, transformers):
  ``lvlm:llava-hf/llava-1.5-7b-hf`` or a local folder.
* A folder path alone: its config file says which family it is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

LVLM_MODEL_TYPES = ("llava", "llava_next")
#: Model kinds (see spurbench.models.base): a linear-head classifier, or a model that ranks
#: candidate answers by likelihood (vision-language chat models).
CLASSIFIER = "classifier"
ANSWER_SCORER = "answer_scorer"
RANDOM = "random"
_HUB_OR_DIR = ("hf-hub:", "local-dir:")


@dataclass(frozen=True)
class ModelSpec:
    """Which loader, which architecture and which weights (a tag, a path, or ``random``)."""

    family: str
    arch: str
    pretrained: str | None = None

    @property
    def name(self) -> str:
        """The canonical spelling, which parses back to the same spec."""
        return FAMILY_TABLE[self.family].canonical(self)

    @property
    def is_random_init(self) -> bool:
        return self.pretrained == RANDOM


@dataclass(frozen=True)
class Family:
    """One model zoo: how its names are written, parsed, loaded and listed.

    ``prefix`` is the explicit spelling (``timm:...``); ``parse`` reads the text after it;
    ``canonical`` writes the one name a spec is stored under; ``adapter`` is the
    ``module:Class`` that loads it (imported only when a model is created); ``lister`` gives the
    known (arch, pretrained) pairs, or is None where names are open-ended (hub ids, folders),
    and ``dist`` is the installed distribution whose version fixes that list; ``kind`` says how
    its models classify (:data:`CLASSIFIER` or :data:`ANSWER_SCORER`), so a name is dispatched
    to its evaluator before anything loads.
    """

    name: str
    prefix: str
    parse: Callable[[str], ModelSpec]
    canonical: Callable[[ModelSpec], str]
    adapter: str
    lister: Callable[[], Iterable[tuple[str, str]]] | None = None
    kind: str = CLASSIFIER
    dist: str | None = None


def _split(rest: str, sep: str) -> tuple[str, str | None]:
    arch, _, tag = rest.partition(sep)
    return arch.strip(), tag.strip() or None


def _parse_open_clip(rest: str) -> ModelSpec:
    if rest.startswith("local-dir:"):
        return _spec_for_folder(Path(rest[len("local-dir:") :]))
    if rest.startswith("hf-hub:"):
        return ModelSpec("open_clip", rest)
    return ModelSpec("open_clip", *_split(rest, ","))


def _parse_timm(rest: str) -> ModelSpec:
    """``arch,tag`` and timm's own ``arch.tag`` are one weight, hence one spec."""
    if "," in rest:
        return ModelSpec("timm", *_split(rest, ","))
    if rest.startswith(_HUB_OR_DIR):
        return ModelSpec("timm", rest)
    return ModelSpec("timm", *_split(rest, "."))


def _name_open_clip(spec: ModelSpec) -> str:
    if spec.arch.startswith(_HUB_OR_DIR):
        return spec.arch
    return f"{spec.arch},{spec.pretrained}" if spec.pretrained else spec.arch


def _list_open_clip() -> list[tuple[str, str]]:
    import open_clip

    return list(open_clip.list_pretrained())


def _list_timm() -> list[tuple[str, str]]:
    import timm

    return [_split(n, ".") for n in timm.list_models(pretrained=True)]  # type: ignore[misc]


def _list_torchvision() -> list[tuple[str, str]]:
    import torchvision

    return [
        (arch, w.name)
        for arch in torchvision.models.list_models(module=torchvision.models)
        for w in torchvision.models.get_model_weights(arch)
    ]


FAMILY_TABLE: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            "open_clip",
            "open_clip:",
            _parse_open_clip,
            _name_open_clip,
            "spurbench.models.open_clip_adapter:OpenClipAdapter",
            _list_open_clip,
            dist="open_clip_torch",
        ),
        Family(
            "hf_clip",
            "hf:",
            lambda rest: ModelSpec("hf_clip", rest),
            lambda s: f"hf:{s.arch}",
            "spurbench.models.hf_clip:HFClipAdapter",
        ),
        Family(
            "timm",
            "timm:",
            _parse_timm,
            lambda s: f"timm:{s.arch}" + (f",{s.pretrained}" if s.pretrained else ""),
            "spurbench.models.supervised:TimmAdapter",
            _list_timm,
            dist="timm",
        ),
        Family(
            "torchvision",
            "torchvision:",
            lambda rest: ModelSpec("torchvision", *_split(rest, ":")),
            lambda s: f"torchvision:{s.arch}" + (f":{s.pretrained}" if s.pretrained else ""),
            "spurbench.models.supervised:TorchvisionAdapter",
            _list_torchvision,
            dist="torchvision",
        ),
        Family(
            "lvlm",
            "lvlm:",
            lambda rest: ModelSpec("lvlm", rest),
            lambda s: f"lvlm:{s.arch}",
            "spurbench.models.lvlm:LVLMAdapter",
            kind=ANSWER_SCORER,
        ),
    )
}
FAMILIES = tuple(FAMILY_TABLE)

_TV_WEIGHTS = re.compile(r"^[A-Z0-9_]+$")


def parse_model_name(name: str) -> ModelSpec:
    """Parse a user's model name into a :class:`ModelSpec` (no loading, no network)."""
    name = name.strip()
    for family in FAMILY_TABLE.values():
        if name.startswith(family.prefix):
            return family.parse(name[len(family.prefix) :])
    # No prefix: infer the family from the spelling, as each zoo's users write it.
    if name.startswith(_HUB_OR_DIR) or "," in name:
        return _parse_open_clip(name)
    if ":" in name:
        arch, _, weights = name.partition(":")
        if _TV_WEIGHTS.match(weights):
            return ModelSpec("torchvision", arch, weights)
    if Path(name).is_dir():
        return _spec_for_folder(Path(name))
    if "." in name and Path(name).suffix.lower() not in (".pt", ".pth", ".bin", ".safetensors"):
        return _parse_timm(name)
    return ModelSpec("open_clip", name)


def model_kind(name: str | ModelSpec) -> str:
    """:data:`CLASSIFIER` or :data:`ANSWER_SCORER`, from the name alone (nothing loads)."""
    spec = name if isinstance(name, ModelSpec) else parse_model_name(name)
    return FAMILY_TABLE[spec.family].kind


def _spec_for_folder(path: Path) -> ModelSpec:
    """A checkpoint folder: open_clip, timm and transformers each leave a telltale config."""
    if (path / "open_clip_config.json").is_file():
        return ModelSpec("open_clip", f"local-dir:{path}")
    config = path / "config.json"
    if config.is_file():
        try:
            cfg = json.loads(config.read_text())
        except (OSError, json.JSONDecodeError):
            cfg = {}
        if "architecture" in cfg:
            return ModelSpec("timm", f"local-dir:{path}")
        if cfg.get("model_type") == "clip":
            return ModelSpec("hf_clip", str(path))
        if cfg.get("model_type") in LVLM_MODEL_TYPES:
            return ModelSpec("lvlm", str(path))
    # Unknown folder: let the open_clip loader say precisely what is missing.
    return ModelSpec("open_clip", f"local-dir:{path}")
