"""The contracts models answer, whatever zoo they come from: two kinds on one image pass.

In the spirit of timm's ``forward_features`` / ``forward_head``: an adapter maps a batch of
preprocessed images to :class:`Features` — the representation feeding the linear head
(``pre_head``, what the Crabbé et al. probes read) and the final ``embedding`` the head is applied
to — and builds a :class:`LinearHead` for any class list: a zero-shot text classifier for CLIP
models, the rows of the trained classifier for supervised ones. Keeping the head linear and
separate is what lets one image pass serve every protocol (1-vs-1000, 1-vs-20, 1-vs-N) and every
probe, from cached features. Vision-language chat models share the image pass but classify by
answer likelihood instead: each is an :class:`AnswerScorer`, a kind of its own.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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


#: How ``PreprocessConfig.resize`` is applied: the shortest edge to ``resize`` (aspect kept), the
#: longest edge (aspect kept, then padded), or both sides exactly.
RESIZE_MODES = ("shortest", "longest", "squash")
#: What follows the resize: a centre crop to ``size``, a centre crop that pads with ``fill``
#: where the image is smaller, or nothing.
CROPS = ("center", "center_or_pad", "none")


@dataclass(frozen=True)
class PreprocessConfig:
    """What turns a PIL image into the model's input tensor; part of every feature-cache key.

    Adapters fill it from the values their library builds the transform from (open_clip's
    ``preprocess_cfg``, timm's data config, torchvision's weights transforms, a transformers
    image processor). The cache key hashes these typed fields, never a transform's ``repr``:
    that text changes between torchvision releases while the pixels do not, which would orphan
    every cached feature, and it need not show every value that changes the pixels. Values are
    normalised on construction (lists to tuples, ``0`` to ``0.0`` for mean and std), so equal
    settings give equal keys however a library spells them.

    Attributes:
        size: (height, width) of the tensor the model sees.
        mean, std: per-channel normalisation.
        interpolation: the resize filter (``bicubic``, ``bilinear``...).
        resize: the resize target before the crop: ``(edge,)``, or the ``(height, width)``
            box the image is fitted to (``shortest``/``longest``) or squashed to.
        resize_mode: how ``resize`` applies, one of :data:`RESIZE_MODES`.
        crop: what follows the resize, one of :data:`CROPS`.
        fill: the padding value of ``center_or_pad``.
        border_crop: pixels cut from every side before anything else (ObjectNet's frame).
    """

    size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str
    resize: tuple[int, ...]
    resize_mode: str = "shortest"
    crop: str = "center"
    fill: int = 0
    border_crop: int = 0

    def __post_init__(self) -> None:
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode must be one of {RESIZE_MODES}, not {self.resize_mode!r}")
        if self.crop not in CROPS:
            raise ValueError(f"crop must be one of {CROPS}, not {self.crop!r}")
        normal = {
            "size": tuple(int(v) for v in self.size),
            "mean": tuple(float(v) for v in self.mean),
            "std": tuple(float(v) for v in self.std),
            "interpolation": str(self.interpolation),
            "resize": tuple(int(v) for v in self.resize),
            "fill": int(self.fill),
            "border_crop": int(self.border_crop),
        }
        for name, value in normal.items():
            object.__setattr__(self, name, value)

    def as_dict(self) -> dict[str, Any]:
        """The fields as plain JSON values (run records, the lazy-model record)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PreprocessConfig:
        """The inverse of :meth:`as_dict`."""
        return cls(**values)

    def digest(self) -> str:
        """The hash the feature cache is keyed by."""
        payload = json.dumps(self.as_dict(), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


class ImageModel(ABC):
    """What every model kind shares: a name, weights, a preprocess and an image pass.

    Two kinds build on it: :class:`ModelAdapter` classifies through a linear head, and
    :class:`AnswerScorer` ranks candidate answers by likelihood. The family table
    (:mod:`spurbench.models.spec`) says which kind a name is, before anything loads.

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
    #: The exported engine's encoder once loaded, keyed by what it was compiled for.
    engine_runner: tuple[tuple, Any] | None = None
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
            "preprocess": self.preprocess_cfg.as_dict(),
        }


class ModelAdapter(ImageModel):
    """A classifier: image features and a linear head for any class list (CLIPs, timm, ...)."""

    @abstractmethod
    def head(self, classes: ClassList, templates: Sequence[str]) -> LinearHead:
        """The linear classifier over ``classes`` (templates are ignored by supervised models)."""

    def projection(self) -> np.ndarray | None:
        """P with embedding = pre_head @ P, when the last map is linear; None when it is identity.

        The probes compose it with the head (W_H = W · Pᵀ) to read directions in pre-head space.
        """
        return None


class AnswerScorer(ImageModel):
    """A model that answers a question about an image: it ranks candidate answers.

    Vision-language chat models have no linear head; the CounterAnimal paper classifies with
    them by the likelihood of each candidate answer (:mod:`spurbench.evaluate.lvlm`).

    Attributes:
        question, answer_template, reduction: the defaults of :meth:`score_candidates`.
    """

    question: str
    answer_template: str
    reduction: str

    @property
    @abstractmethod
    def chat_template_digest(self) -> str:
        """A hash of the prompt format, part of a run's identity."""

    @abstractmethod
    def score_candidates(
        self,
        images: Sequence[Any],
        question: str | None,
        candidates: Sequence[str] | Sequence[Sequence[str]],
        *,
        answer_template: str | None = None,
        reduction: str | None = None,
        batch_size: int | None = None,
        score: str = "paper",
    ) -> np.ndarray:
        """Loss of each candidate answer per image, shape (n_images, n_candidates): lower wins."""


def state_dict_digest(module: torch.nn.Module) -> str:
    """Hash every parameter and buffer (names, shapes, bytes): the weights' identity."""
    h = hashlib.blake2b(digest_size=16)
    for key, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(key.encode())
        h.update(str((tuple(t.shape), str(t.dtype))).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
