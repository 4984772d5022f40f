"""The one contract every model adapter answers, whatever zoo it comes from.

In the spirit of timm's ``forward_features`` / ``forward_head``: an adapter maps a batch of
preprocessed images to :class:`Features` — the representation feeding the linear head
(``pre_head``, what the Crabbé et al. probes read) and the final ``embedding`` the head is applied
to — and builds a :class:`LinearHead` for any class list: a zero-shot text classifier for CLIP
models, the rows of the trained classifier for supervised ones. Keeping the head linear and
separate is what lets one image pass serve every protocol (1-vs-1000, 1-vs-20, 1-vs-N) and every
probe, from cached features.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from spurbench.data.classes import ClassList
from spurbench.models.spec import ModelSpec


@dataclass
class Features:
    """One batch of image representations (float32, on CPU)."""

    pre_head: torch.Tensor  # (batch, d_H): input of the final linear map (projection or fc)
    embedding: torch.Tensor  # (batch, d_E): what the classification head is applied to


@dataclass
class LinearHead:
    """logits = scale · normalize?(embedding) @ weightᵀ + bias, for an ordered class list."""

    weight: np.ndarray  # (n_classes, d_E), float32
    bias: np.ndarray | None = None  # (n_classes,)
    scale: float = 1.0
    normalize_input: bool = False  # CLIP heads compare L2-normalised embeddings

    def logits(self, embedding: np.ndarray) -> np.ndarray:
        x = np.asarray(embedding, dtype=np.float32)
        if self.normalize_input:
            x = x / np.linalg.norm(x, axis=1, keepdims=True).clip(min=1e-12)
        out = self.scale * (x @ self.weight.T)
        if self.bias is not None:
            out = out + self.bias
        return out


@dataclass
class PreprocessConfig:
    """What turns a PIL image into the model's input; part of every feature-cache key."""

    size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str
    resize_mode: str
    extra: dict[str, Any] = field(default_factory=dict)

    def digest(self) -> str:
        payload = json.dumps(self.__dict__, sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


class ModelAdapter(ABC):
    """Base of all adapters. Subclasses set the attributes in ``__init__`` and implement two calls.

    Attributes:
        spec: the parsed name.
        module: the underlying ``torch.nn.Module`` (eval mode).
        preprocess: the model's own PIL → tensor transform.
        preprocess_cfg: its parameters, for cache keys and run records.
        zero_shot: True for image-text models whose head is built from text.
    """

    spec: ModelSpec
    module: torch.nn.Module
    preprocess: Callable[[Any], torch.Tensor]
    preprocess_cfg: PreprocessConfig
    zero_shot: bool = False
    #: Seed the weights were drawn from (random-init models only).
    init_seed: int | None = None
    #: Resolved precision of the image pass (see :mod:`spurbench.models.precision`).
    precision: str = "fp32"
    #: Engine of the image pass: eager PyTorch or ONNX Runtime (see spurbench.models.engine).
    engine: str = "eager"
    #: JPEG decoding: every pixel, or draft (reduced DCT scale; see spurbench.data.images).
    decode: str = "exact"
    _fingerprint: str | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def fingerprint(self) -> str:
        """A hash of the weights: two adapters with equal fingerprints compute the same features."""
        if self._fingerprint is None:
            self._fingerprint = state_dict_digest(self.module)
        return self._fingerprint

    @abstractmethod
    def encode_images(self, images: torch.Tensor) -> Features:
        """Encode a preprocessed batch; called under :func:`.precision.forward_context`."""

    @abstractmethod
    def head(self, classes: ClassList, templates: Sequence[str]) -> LinearHead:
        """The linear classifier over ``classes`` (templates are ignored by supervised models)."""

    def projection(self) -> np.ndarray | None:
        """P with embedding = pre_head @ P, when the last map is linear; None when it is identity.

        The probes compose it with the head (W_H = W · Pᵀ) to read directions in pre-head space.
        """
        return None

    def describe(self) -> dict[str, Any]:
        """What a run record needs to say which model this was."""
        return {
            "model": self.spec.name,
            "family": self.spec.family,
            "arch": self.spec.arch,
            "pretrained": self.spec.pretrained,
            "fingerprint": self.fingerprint,
            "zero_shot": self.zero_shot,
            "precision": self.precision,
            "engine": self.engine,
            "decode": self.decode,
            "preprocess": self.preprocess_cfg.__dict__,
        }


def state_dict_digest(module: torch.nn.Module) -> str:
    """Hash every parameter and buffer (names, shapes, bytes): the weights' identity."""
    h = hashlib.blake2b(digest_size=16)
    for key, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(key.encode())
        h.update(str((tuple(t.shape), str(t.dtype))).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
