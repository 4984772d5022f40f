"""Models built only when needed: a fully cached rerun never loads the network.

A rerun whose features and heads are all in the cache needs only the model's *identity* (the
weight fingerprint and the preprocessing config, which key the caches), yet building a CLIP
model costs seconds to minutes. So the identity is read from files instead: the checkpoint's
bytes are hashed (remembered under the file's path, size, mtime, inode and ctime by
:func:`spurbench.features.content.content_digest`, so a rerun only stats it), and that hash
points to a small record in ``<cache>/models/`` written the first time the model was built. The
record holds the state-dict fingerprint, so every cache key stays what it was. The network is
built on first use of anything else (an encode or a head that missed the cache).

Weights located without building anything: ``ARCH,/path/to/checkpoint``, ``local-dir:`` folders,
``ARCH,tag`` when open_clip's file is already in the Hugging Face or open_clip cache (the same
file open_clip would load), and ``ARCH,random`` (identity: architecture, seed and library
versions). Anything else (``hf-hub:`` names, other families' hubs) is built eagerly, as before.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

from spurbench.atomic import write_json_atomic
from spurbench.errors import SpurbenchError
from spurbench.features.content import content_digest
from spurbench.models.base import ModelAdapter, PreprocessConfig
from spurbench.models.spec import RANDOM, ModelSpec

#: Bumped when the record's layout changes; records of another version are ignored.
RECORD_VERSION = 2
#: The library whose code draws random-init weights, per family.
_FAMILY_PACKAGES = {
    "open_clip": "open_clip_torch",
    "timm": "timm",
    "torchvision": "torchvision",
    "hf_clip": "transformers",
}


def weights_identity(spec: ModelSpec, seed: int, memo_dir: Path | None) -> str | None:
    """A digest of everything that fixes the weights, computed without building the model.

    None when the weights cannot be located locally (the model is then built eagerly).
    """
    if spec.family not in _FAMILY_PACKAGES:
        return None
    if spec.is_random_init:
        package = _FAMILY_PACKAGES[spec.family]
        parts: list[Any] = [spec.name, seed, _version("torch"), _version(package)]
    else:
        files = checkpoint_files(spec)
        if not files:
            return None
        parts = [spec.name, content_digest([str(f) for f in files], memo_dir)]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:24]


def checkpoint_files(spec: ModelSpec) -> list[Path] | None:
    """The local files an open_clip model's weights and config are read from, or None."""
    if spec.family != "open_clip" or spec.arch.startswith("hf-hub:"):
        return None
    if spec.arch.startswith("local-dir:"):
        folder = Path(spec.arch[len("local-dir:") :])
        files = sorted(p for p in folder.glob("*") if p.is_file()) if folder.is_dir() else []
        return files or None
    tag = spec.pretrained
    if tag in (None, RANDOM):
        return None
    path = Path(tag).expanduser()
    if path.is_file():
        return [path]
    cached = _cached_pretrained_file(spec.arch, tag)
    return [cached] if cached is not None else None


def _cached_pretrained_file(arch: str, tag: str) -> Path | None:
    """The file open_clip would load for ``(arch, tag)``, if it is already cached locally.

    Follows open_clip's ``download_pretrained``: an explicit file, else the Hugging Face hub
    entry (its safetensors alternative first), else the URL's file in ``~/.cache/clip``.
    """
    import open_clip

    cfg = open_clip.get_pretrained_cfg(arch, tag) or {}
    if cfg.get("file"):
        return Path(cfg["file"]) if Path(cfg["file"]).is_file() else None
    if cfg.get("hf_hub"):
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            return None
        model_id, filename = os.path.split(cfg["hf_hub"])
        filename = filename or "open_clip_pytorch_model.bin"
        try:
            from open_clip.pretrained import _get_safe_alternatives

            names = [*_get_safe_alternatives(filename), filename]
        except ImportError:
            names = [filename]
        for name in names:
            found = try_to_load_from_cache(model_id, name)
            if isinstance(found, str) and Path(found).is_file():
                return Path(found)
        return None
    if cfg.get("url"):
        local = Path("~/.cache/clip").expanduser() / os.path.basename(cfg["url"])
        return local if local.is_file() else None
    return None


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return ""


def _record_path(cache_dir: Path, identity: str) -> Path:
    return Path(cache_dir) / "models" / f"{identity}.json"


def load_lazily(
    spec: ModelSpec,
    build: Callable[[], ModelAdapter],
    *,
    device: str,
    seed: int,
    cache_dir: Path,
) -> ModelAdapter:
    """A :class:`LazyAdapter` when this model's identity is on record, else ``build()``.

    A model built here has its identity recorded, so the next run needs only the files.
    """
    identity = weights_identity(spec, seed, cache_dir)
    if identity is None:
        return build()
    record = _read_record(_record_path(cache_dir, identity), spec)
    if record is not None:
        return LazyAdapter(spec, record, build, device)
    adapter = build()
    # a read-only or full cache: the model is simply built again next time
    with contextlib.suppress(OSError):
        write_json_atomic(
            _record_path(cache_dir, identity),
            {
                "version": RECORD_VERSION,
                "model": spec.name,
                "fingerprint": adapter.fingerprint,
                "zero_shot": adapter.zero_shot,
                "init_seed": adapter.init_seed,
                "preprocess": adapter.preprocess_cfg.as_dict(),
            },
        )
    return adapter


def _read_record(path: Path, spec: ModelSpec) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text())
        if record.get("version") != RECORD_VERSION or record.get("model") != spec.name:
            return None
        record["preprocess"] = PreprocessConfig.from_dict(record["preprocess"])
        str(record["fingerprint"])
        return record
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


class LazyAdapter(ModelAdapter):
    """An adapter whose identity is known from files; the network is built on first real use.

    ``fingerprint``, ``preprocess_cfg``, ``describe()`` and ``device`` answer without building;
    ``encode_images``, ``head``, ``projection`` and every other attribute (``module``,
    ``preprocess``, a tokenizer...) build the model once and delegate to it.
    """

    def __init__(
        self,
        spec: ModelSpec,
        record: dict[str, Any],
        build: Callable[[], ModelAdapter],
        device: str,
    ) -> None:
        self.spec = spec
        self.device = torch.device(device)
        self.preprocess_cfg = record["preprocess"]
        self.zero_shot = bool(record["zero_shot"])
        self.init_seed = record.get("init_seed")
        self._fingerprint = str(record["fingerprint"])
        self._build = build
        self._built: ModelAdapter | None = None

    @property
    def built(self) -> ModelAdapter:
        """The real adapter, built once; refused if its weights differ from the record.

        Built outside inference mode whatever the first use: parameters created as inference
        tensors could never be traced by an exporter (ONNX, OpenVINO) afterwards.
        """
        if self._built is None:
            with torch.inference_mode(False):
                adapter = self._build()
            if adapter.fingerprint != self._fingerprint:
                raise SpurbenchError(
                    f"The weights of {self.spec.name} changed while it was being loaded; "
                    "run the command again."
                )
            self._built = adapter
        return self._built

    def encode_images(self, images: torch.Tensor):
        return self.built.encode_images(images)

    def head(self, classes, templates):
        return self.built.head(classes, templates)

    def projection(self):
        return self.built.projection()

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes this object lacks: those of the built model.
        if name.startswith("__") or name in ("_build", "_built"):
            raise AttributeError(name)
        return getattr(self.built, name)
