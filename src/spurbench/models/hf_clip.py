"""Hugging Face transformers CLIP models (``hf:openai/clip-vit-base-patch32`` or a folder).

The image transform is rebuilt with torchvision from the checkpoint's own image-processor config
(resize shortest edge, centre crop, normalise), so images go through the fast batched DataLoader
path instead of the per-image HF processor while using the same parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torchvision import transforms as T

from spurbench.data.classes import ClassList
from spurbench.models.base import Features, LinearHead, ModelAdapter, PreprocessConfig
from spurbench.models.checkpoints import guarded_load
from spurbench.models.spec import ModelSpec

_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}
TEXT_BATCH = 256


class HFClipAdapter(ModelAdapter):
    zero_shot = True

    def __init__(self, spec: ModelSpec, device: str = "cpu") -> None:
        from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

        self.spec = spec
        self.device = torch.device(device)
        with guarded_load(spec.name, spec.arch):
            self.module = CLIPModel.from_pretrained(spec.arch, use_safetensors=True).eval()
            self.tokenizer = AutoTokenizer.from_pretrained(spec.arch)
            proc = CLIPImageProcessor.from_pretrained(spec.arch)
        self.module.to(self.device)
        short = int(_field(proc.size, "shortest_edge", 224))
        crop = proc.crop_size
        crop_hw = (int(_field(crop, "height", 224)), int(_field(crop, "width", 224)))
        interp = _RESAMPLE.get(int(getattr(proc, "resample", 3)), "bicubic")
        self.preprocess = T.Compose(
            [
                T.Lambda(lambda im: im.convert("RGB")),
                T.Resize(short, interpolation=T.InterpolationMode(interp)),
                T.CenterCrop(crop_hw),
                T.ToTensor(),
                T.Normalize(proc.image_mean, proc.image_std),
            ]
        )
        self.preprocess_cfg = PreprocessConfig(
            size=tuple(crop_hw),
            mean=tuple(proc.image_mean),
            std=tuple(proc.image_std),
            interpolation=interp,
            resize=(short,),
        )

    def encode_images(self, images: torch.Tensor) -> Features:
        out = self.module.vision_model(pixel_values=images.to(self.device, non_blocking=True))
        pre = out.pooler_output
        return Features(pre.float().cpu(), self.module.visual_projection(pre).float().cpu())

    def projection(self) -> np.ndarray:
        return self.module.visual_projection.weight.detach().float().cpu().numpy().T

    def head(self, classes: ClassList, templates: Sequence[str]) -> LinearHead:
        prompts = [t.format(c=n) for n in classes.names for t in templates]
        chunks = []
        with torch.inference_mode():
            for s in range(0, len(prompts), TEXT_BATCH):
                tok = self.tokenizer(
                    prompts[s : s + TEXT_BATCH], padding=True, truncation=True, return_tensors="pt"
                ).to(self.device)
                pooled = self.module.text_model(**tok).pooler_output
                e = self.module.text_projection(pooled)
                chunks.append(torch.nn.functional.normalize(e, dim=-1).float().cpu())
        emb = torch.cat(chunks).reshape(len(classes), len(templates), -1).mean(dim=1)
        emb = emb / emb.norm(dim=1, keepdim=True)
        scale = float(self.module.logit_scale.detach().exp())
        return LinearHead(emb.numpy().astype(np.float32), None, scale, normalize_input=True)


def _field(value: object, key: str, default: int) -> int:
    """Read a size field from a dict, a transformers SizeDict, or a bare int."""
    if isinstance(value, int):
        return value
    if isinstance(value, dict):
        return value.get(key, default)
    got = getattr(value, key, None)
    return default if got is None else got
