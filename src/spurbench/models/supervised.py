"""Supervised classifiers (timm, torchvision): the trained linear head *is* the classifier.

For these models ``pre_head`` and ``embedding`` are the same pre-logits features (timm's
``forward_head(pre_logits=True)``; for torchvision, the input of the last ``nn.Linear``), and the
head for a class list is the subset of the trained fc rows. ImageNet-1k models pick rows by
ImageNet index, so the spelling of a class name never changes which row is used; models with their
own label names (e.g. a checkpoint trained on the synthetic world) pick rows by name.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from spurbench.data.classes import ClassList
from spurbench.errors import ClassListError, UnknownModelError, closest
from spurbench.models.base import Features, LinearHead, ModelAdapter, PreprocessConfig
from spurbench.models.checkpoints import guarded_load
from spurbench.models.spec import RANDOM, ModelSpec


class SupervisedAdapter(ModelAdapter):
    """Shared head logic; subclasses load the module and define ``_features``."""

    zero_shot = False
    label_names: tuple[str, ...] | None = None
    imagenet_indices: tuple[int, ...] | None = None

    def _classifier(self) -> torch.nn.Linear:
        raise NotImplementedError

    def _pre_logits(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encode_images(self, images: torch.Tensor) -> Features:
        pre = self._pre_logits(images).float().cpu()
        return Features(pre, pre)

    def head(self, classes: ClassList, templates: Sequence[str] = ()) -> LinearHead:
        fc = self._classifier()
        rows = self._rows_for(classes, fc.out_features)
        weight = fc.weight.detach().float().cpu().numpy()[rows]
        bias = None if fc.bias is None else fc.bias.detach().float().cpu().numpy()[rows]
        return LinearHead(weight.astype(np.float32), bias, 1.0, normalize_input=False)

    def _rows_for(self, classes: ClassList, n_out: int) -> list[int]:
        if self.imagenet_indices is not None and classes.imagenet_indices is not None:
            index = {int(v): i for i, v in enumerate(self.imagenet_indices)}
            missing = [
                n
                for n, v in zip(classes.names, classes.imagenet_indices, strict=True)
                if v not in index
            ]
            if not missing:
                return [index[v] for v in classes.imagenet_indices]
            raise ClassListError(f"{self.name} has no output for classes {missing[:10]}.")
        if self.label_names is not None:
            index = {_key(n): i for i, n in enumerate(self.label_names)}
            missing = [n for n in classes.names if _key(n) not in index]
            if missing:
                raise ClassListError(
                    f"{self.name} was not trained on classes {missing[:10]}; its labels are "
                    f"{list(self.label_names)[:10]}{'...' if len(self.label_names) > 10 else ''}."
                )
            return [index[_key(n)] for n in classes.names]
        raise ClassListError(
            f"{self.name} has {n_out} outputs but no label names or ImageNet indices to match "
            "the class list against."
        )


def _key(name: str) -> str:
    return " ".join(name.lower().replace("_", " ").split())


class TimmAdapter(SupervisedAdapter):
    def __init__(self, spec: ModelSpec, device: str = "cpu") -> None:
        import timm
        from timm.data import create_transform, resolve_data_config

        self.spec = spec
        self.device = torch.device(device)
        name = spec.arch if spec.pretrained in (None, RANDOM) else f"{spec.arch}.{spec.pretrained}"
        pretrained = spec.pretrained != RANDOM
        if not name.startswith(("local-dir:", "hf-hub:")):
            base = name.split(".")[0]
            if not timm.is_model(base):
                hint = closest(base, timm.list_models())
                raise UnknownModelError(
                    f"Unknown timm model {name!r}."
                    + (f" Closest: {', '.join(hint)}." if hint else "")
                )
            if pretrained and name not in timm.list_models(pretrained=True) and "." in name:
                tags = [m for m in timm.list_models(base, pretrained=True)]
                raise UnknownModelError(
                    f"timm has no pretrained weights {name!r}. Known for {base}: {tags[:10]}."
                )
        with guarded_load(spec.name, name):
            model = timm.create_model(name, pretrained=pretrained)
        self.module = model.eval().to(self.device)
        data_cfg = resolve_data_config(model=model)
        self.preprocess = create_transform(**data_cfg)
        self.preprocess_cfg = _timm_preprocess_config(data_cfg)
        cfg = model.pretrained_cfg or {}
        labels = cfg.get("label_names")
        self.label_names = tuple(labels) if labels else None
        self.imagenet_indices = _imagenet_indices_for(name, cfg, self._classifier().out_features)

    def _classifier(self) -> torch.nn.Linear:
        fc = self.module.get_classifier()
        if not isinstance(fc, torch.nn.Linear):
            raise ClassListError(
                f"{self.name} has no linear classifier head ({type(fc).__name__})."
            )
        return fc

    def _pre_logits(self, images: torch.Tensor) -> torch.Tensor:
        feats = self.module.forward_features(images.to(self.device, non_blocking=True))
        return self.module.forward_head(feats, pre_logits=True)


def _timm_preprocess_config(data_cfg: dict) -> PreprocessConfig:
    """The fields timm's eval transform is built from (``transforms_imagenet_eval``): resize to
    ``input_size / crop_pct``, then a centre crop (``squash``: both sides; ``border``: the
    longest edge, then crop or pad)."""
    from timm.data import DEFAULT_CROP_PCT

    size = tuple(int(s) for s in data_cfg["input_size"][1:])
    crop_pct = data_cfg.get("crop_pct") or DEFAULT_CROP_PCT
    crop_mode = data_cfg.get("crop_mode") or "center"
    resize = tuple(math.floor(s / crop_pct) for s in size)
    return PreprocessConfig(
        size=size,
        mean=data_cfg["mean"],
        std=data_cfg["std"],
        interpolation=str(data_cfg["interpolation"]),
        resize=resize[:1] if crop_mode == "center" and resize[0] == resize[1] else resize,
        resize_mode={"squash": "squash", "border": "longest"}.get(crop_mode, "shortest"),
        crop="center_or_pad" if crop_mode == "border" else "center",
    )


def _imagenet_indices_for(name: str, cfg: dict, n_out: int) -> tuple[int, ...] | None:
    """ImageNet indices of a timm model's outputs: a local config may list them explicitly."""
    if name.startswith("local-dir:"):
        config = Path(name[len("local-dir:") :]) / "config.json"
        extra = json.loads(config.read_text()) if config.is_file() else {}
        if "imagenet_indices" in extra:
            return tuple(int(i) for i in extra["imagenet_indices"])
    if n_out == 1000 and cfg.get("num_classes", 1000) == 1000 and not cfg.get("label_names"):
        return tuple(range(1000))
    return None


class TorchvisionAdapter(SupervisedAdapter):
    def __init__(self, spec: ModelSpec, device: str = "cpu") -> None:
        import torchvision
        from torchvision.transforms import v2  # noqa: F401  (ensures the v2 API exists)

        self.spec = spec
        self.device = torch.device(device)
        known = torchvision.models.list_models(module=torchvision.models)
        if spec.arch not in known:
            hint = closest(spec.arch, known)
            raise UnknownModelError(
                f"Unknown torchvision model {spec.arch!r}."
                + (f" Closest: {', '.join(hint)}." if hint else "")
            )
        enum = torchvision.models.get_model_weights(spec.arch)
        if spec.pretrained == RANDOM:
            weights = None
            transforms_from = enum.DEFAULT
        else:
            tag = spec.pretrained or "DEFAULT"
            try:
                weights = enum[tag] if tag != "DEFAULT" else enum.DEFAULT
            except KeyError:
                names = [w.name for w in enum]
                raise UnknownModelError(
                    f"torchvision has no weights {tag!r} for {spec.arch}; known: {names}."
                ) from None
            transforms_from = weights
        with guarded_load(spec.name, str(weights)):
            model = torchvision.models.get_model(spec.arch, weights=weights)
        self.module = model.eval().to(self.device)
        self.preprocess = transforms_from.transforms()
        t = self.preprocess  # torchvision's ImageClassification: resize, centre crop, normalise
        self.preprocess_cfg = PreprocessConfig(
            size=(t.crop_size[0], t.crop_size[0]),
            mean=t.mean,
            std=t.std,
            interpolation=str(t.interpolation.value),
            resize=t.resize_size,
            resize_mode="shortest" if len(t.resize_size) == 1 else "squash",
        )
        self.imagenet_indices = (
            tuple(range(1000)) if self._classifier().out_features == 1000 else None
        )
        self.label_names = tuple(transforms_from.meta.get("categories") or ()) or None
        self._captured: list[torch.Tensor] = []
        self._classifier().register_forward_pre_hook(
            lambda _m, args: self._captured.append(args[0])
        )

    def _classifier(self) -> torch.nn.Linear:
        linears = [m for m in self.module.modules() if isinstance(m, torch.nn.Linear)]
        if not linears:
            raise ClassListError(f"{self.name} has no linear classifier.")
        return linears[-1]

    def _pre_logits(self, images: torch.Tensor) -> torch.Tensor:
        self._captured.clear()
        self.module(images.to(self.device, non_blocking=True))
        return self._captured.pop()
