"""Model registry: one factory from names to adapters, and a searchable list of known names.

Built explicitly (a dict of family → adapter class), never filled by import side effects.
"""

from __future__ import annotations

import fnmatch
import importlib
from pathlib import Path

import pandas as pd
import torch

from spurbench.errors import SpurbenchError, UnknownModelError
from spurbench.models.base import ModelAdapter
from spurbench.models.spec import FAMILIES, FAMILY_TABLE, ModelSpec, parse_model_name


def _adapter_class(family: str) -> type[ModelAdapter]:
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
) -> ModelAdapter:
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


def list_models(pattern: str | None = None, family: str | None = None) -> pd.DataFrame:
    """Known (family, arch, pretrained, name) rows, filtered by a glob on the name or arch.

    open_clip: every ``list_pretrained()`` pair; timm: every model with pretrained weights;
    torchvision: every classification model and weight enum. Hugging Face CLIP ids are open-ended
    and not listed.
    """
    if family not in (None, *FAMILIES):
        raise SpurbenchError(f"Unknown family {family!r}; choose one of {FAMILIES}.")
    rows = [
        (f.name, arch, tag or "")
        for f in FAMILY_TABLE.values()
        if f.lister is not None and family in (None, f.name)
        for arch, tag in f.lister()
    ]
    df = pd.DataFrame(rows, columns=["family", "arch", "pretrained"])
    df["name"] = [ModelSpec(f, a, p or None).name for f, a, p in rows]
    if pattern:
        pat = pattern if any(c in pattern for c in "*?[") else f"*{pattern}*"
        pat = pat.lower()
        df = df[
            [
                fnmatch.fnmatch(n.lower(), pat) or fnmatch.fnmatch(a.lower(), pat)
                for n, a in zip(df["name"], df["arch"], strict=True)
            ]
        ]
    return df.reset_index(drop=True)
