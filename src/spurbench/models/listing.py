"""The model names spurbench knows, listed without importing torch once they have been listed.

open_clip, timm and torchvision can list their weights only after importing torch (seconds of
start-up); the list changes only when the library does. So each family's (arch, pretrained)
pairs are kept in the cache under the installed version of its distribution
(``model_names/<family>-<version>.json``) and read back as JSON; a new version is listed afresh.
"""

from __future__ import annotations

import contextlib
import fnmatch
import importlib.metadata
import json
from pathlib import Path

import pandas as pd

from spurbench.atomic import write_json_atomic
from spurbench.errors import SpurbenchError
from spurbench.models.spec import FAMILIES, FAMILY_TABLE, Family, ModelSpec
from spurbench.paths import default_cache_dir


def known_pairs(family: Family, cache_dir: Path | None = None) -> list[tuple[str, str]]:
    """The family's (arch, pretrained) pairs ('' for no tag), from the cache when it has them."""
    assert family.lister is not None, family.name
    try:
        version = importlib.metadata.version(family.dist or family.name)
    except importlib.metadata.PackageNotFoundError:
        version = None  # not installed as a distribution: list, keep nothing
    path = (cache_dir or default_cache_dir()) / "model_names" / f"{family.name}-{version}.json"
    if version is not None:
        try:
            return [(str(a), str(t)) for a, t in json.loads(path.read_text())]
        except (OSError, ValueError, TypeError):
            pass  # not listed yet, or a damaged file: list again
    pairs = [(arch, tag or "") for arch, tag in family.lister()]
    if version is not None:  # a read-only cache only costs the next listing its speed
        with contextlib.suppress(OSError):
            write_json_atomic(path, pairs)
    return pairs


def list_models(
    pattern: str | None = None, family: str | None = None, cache_dir: Path | None = None
) -> pd.DataFrame:
    """Known (family, arch, pretrained, name) rows, filtered by a glob on the name or arch.

    open_clip: every ``list_pretrained()`` pair; timm: every model with pretrained weights;
    torchvision: every classification model and weight enum. Hugging Face CLIP ids are open-ended
    and not listed.
    """
    if family not in (None, *FAMILIES):
        raise SpurbenchError(f"Unknown family {family!r}; choose one of {FAMILIES}.")
    rows = [
        (f.name, arch, tag)
        for f in FAMILY_TABLE.values()
        if f.lister is not None and family in (None, f.name)
        for arch, tag in known_pairs(f, cache_dir)
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
