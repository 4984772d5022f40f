"""Classification heads, cached per (model weights, class list, templates).

Building a zero-shot head costs one text forward per (class, template): 80,000 prompts for
ImageNet with OpenAI's templates. It is computed once and stored; supervised heads are slices of
the model's fc and need no cache.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from spurbench.atomic import write_atomic
from spurbench.data.classes import ClassList, templates_digest
from spurbench.models.base import LinearHead, ModelAdapter


def head_for(
    model: ModelAdapter, classes: ClassList, templates: Sequence[str], cache_dir: str | Path | None
) -> LinearHead:
    if not model.zero_shot:
        return model.head(classes, templates)
    key = hashlib.sha256(
        json.dumps([model.fingerprint, classes.digest(), templates_digest(templates)]).encode()
    ).hexdigest()[:24]
    path = Path(cache_dir) / "heads" / f"{key}.npz" if cache_dir else None
    if path is not None and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                bias = z["bias"] if z["has_bias"] else None
                return LinearHead(z["weight"], bias, float(z["scale"]), bool(z["normalize"]))
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            pass  # corrupt or truncated cache entry: rebuild it
    with torch.inference_mode():
        head = model.head(classes, templates)
    if path is not None:

        def write(fh: io.BufferedWriter) -> None:
            np.savez(
                fh,
                weight=head.weight,
                scale=head.scale,
                normalize=head.normalize_input,
                has_bias=head.bias is not None,
                bias=head.bias if head.bias is not None else np.zeros(0, np.float32),
            )

        write_atomic(path, write)
    return head
