"""Model names as users already write them, parsed into a small typed spec.

Accepted forms (the registry in :mod:`spurbench.models.registry` resolves them):

* open_clip, as clip_benchmark writes it: ``ViT-B-32,laion2b_s34b_b79k``; a local checkpoint
  ``ViT-B-32,/path/to/ckpt.safetensors``; random init ``ViT-B-32,random``; hub and folder
  models ``hf-hub:org/repo`` and ``local-dir:/path`` (open_clip's own schemas).
* Hugging Face transformers CLIP: ``hf:openai/clip-vit-base-patch32`` or a local folder.
* timm: ``timm:resnet50.a1_in1k`` or a bare timm name with a tag (``resnet50.a1_in1k``);
  ``timm:local-dir:/path``.
* torchvision: ``torchvision:resnet50`` (default weights), ``torchvision:resnet50:IMAGENET1K_V2``
  or the bare ``resnet50:IMAGENET1K_V2``; ``torchvision:resnet50:random`` for random init.
* Vision-language chat models scored by answer likelihood (LLaVA-style, transformers):
  ``lvlm:llava-hf/llava-1.5-7b-hf`` or a local folder.
* A folder path alone: its config file says which family it is.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

FAMILIES = ("open_clip", "hf_clip", "timm", "torchvision", "lvlm")
LVLM_MODEL_TYPES = ("llava", "llava_next")
RANDOM = "random"


@dataclass(frozen=True)
class ModelSpec:
    """Which loader, which architecture and which weights (a tag, a path, or ``random``)."""

    family: str
    arch: str
    pretrained: str | None = None

    @property
    def name(self) -> str:
        """The canonical spelling, which parses back to the same spec."""
        if self.family == "open_clip":
            if self.arch.startswith(("hf-hub:", "local-dir:")):
                return self.arch
            return f"{self.arch},{self.pretrained}" if self.pretrained else self.arch
        if self.family == "torchvision":
            return f"torchvision:{self.arch}" + (f":{self.pretrained}" if self.pretrained else "")
        if self.family == "timm":
            return f"timm:{self.arch}" + (f",{self.pretrained}" if self.pretrained else "")
        if self.family == "lvlm":
            return f"lvlm:{self.arch}"
        return f"hf:{self.arch}"

    @property
    def is_random_init(self) -> bool:
        return self.pretrained == RANDOM


_TV_WEIGHTS = re.compile(r"^[A-Z0-9_]+$")


def parse_model_name(name: str) -> ModelSpec:
    """Parse a user's model name into a :class:`ModelSpec` (no loading, no network)."""
    name = name.strip()
    if name.startswith("open_clip:"):
        name = name[len("open_clip:") :]
    if name.startswith("lvlm:"):
        return ModelSpec("lvlm", name[len("lvlm:") :])
    if name.startswith("hf:"):
        return ModelSpec("hf_clip", name[3:])
    if name.startswith("timm:"):
        rest = name[5:]
        arch, _, pretrained = rest.partition(",")
        return ModelSpec("timm", arch, pretrained or None)
    if name.startswith("torchvision:"):
        arch, _, weights = name[len("torchvision:") :].partition(":")
        return ModelSpec("torchvision", arch, weights or None)
    if name.startswith(("hf-hub:", "local-dir:")):
        if name.startswith("local-dir:"):
            return _spec_for_folder(Path(name[len("local-dir:") :]))
        return ModelSpec("open_clip", name)
    if "," in name:
        arch, _, pretrained = name.partition(",")
        return ModelSpec("open_clip", arch.strip(), pretrained.strip() or None)
    if ":" in name:
        arch, _, weights = name.partition(":")
        if _TV_WEIGHTS.match(weights):
            return ModelSpec("torchvision", arch, weights)
    if Path(name).is_dir():
        return _spec_for_folder(Path(name))
    if "." in name and Path(name).suffix.lower() not in (".pt", ".pth", ".bin", ".safetensors"):
        return ModelSpec("timm", name)
    return ModelSpec("open_clip", name)


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
