"""Model registry: one factory from names to adapters (the names it knows: ``listing``).

Built explicitly (a dict of family → adapter class), never filled by import side effects.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch

from spurbench.errors import SpurbenchError, UnknownModelError
from spurbench.models.base import ImageModel, ModelAdapter
from spurbench.models.spec import (
    CLASSIFIER,
    FAMILIES,
    FAMILY_TABLE,
    ModelSpec,
    model_kind,
    parse_model_name,
)


def _adapter_class(family: str) -> type[ImageModel]:
    if family not in FAMILY_TABLE:
        raise UnknownModelError(f"Unknown model family {family!r}; known: {FAMILIES}.")
    module, _, cls = FAMILY_TABLE[family].adapter.partition(":")
    return getattr(importlib.import_module(module), cls)


#: Seed of random-init weights (``ARCH,random``) unless the caller gives one.
RANDOM_INIT_SEED = 0


def create_model(
    name: str | ModelSpec,
    device: str = "cpu",
    seed: int = RANDOM_INIT_SEED,
    cache_dir: str | Path | None = None,
) -> ImageModel:
    """Load a model by name (see :mod:`spurbench.models.spec` for the accepted spellings).

    Random-init weights are drawn from ``seed`` (recorded as ``adapter.init_seed``), without
    disturbing the caller's random state: the same name gives the same weights, hence the same
    features, numbers and run id, in every process.

    With a ``cache_dir``, a model whose weights were seen before comes back unbuilt: its
    identity is read from the checkpoint files and the network is built only when used (see
    :mod:`spurbench.models.lazy`).
    """
    spec = name if isinstance(name, ModelSpec) else parse_model_name(name)
    if cache_dir is not None:
        from spurbench.models.lazy import load_lazily

        return load_lazily(
            spec,
            lambda: create_model(spec, device=device, seed=seed),
            device=device,
            seed=seed,
            cache_dir=Path(cache_dir),
        )
    if not spec.is_random_init:
        adapter = _adapter_class(spec.family)(spec, device=device)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            adapter = _adapter_class(spec.family)(spec, device=device)
        adapter.init_seed = seed
    adapter.module.eval()
    return adapter


def create_classifier(
    name: str | ModelSpec, device: str = "cpu", seed: int = RANDOM_INIT_SEED
) -> ModelAdapter:
    """:func:`create_model` for stages that need a linear head (probes, curation, the suite,
    1-vs-20 references): a model of another kind is refused by name, before it loads."""
    if model_kind(name) != CLASSIFIER:
        shown = name if isinstance(name, str) else name.name
        raise SpurbenchError(
            f"{shown} is a vision-language chat model: it has no linear head. It is evaluated "
            "by answer likelihood (spurbench eval / spurbench.evaluate, protocols 1v20 or 1vN)."
        )
    return create_model(name, device=device, seed=seed)  # type: ignore[return-value]
