"""Where spurbench keeps what it can recompute (features, heads, model name lists).

Its own module, free of torch, so that light commands (``spurbench models``) find the cache
without importing a stage.
"""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """``$SPURBENCH_CACHE``, else ``~/.cache/spurbench``."""
    return Path(os.environ.get("SPURBENCH_CACHE", Path.home() / ".cache" / "spurbench"))
