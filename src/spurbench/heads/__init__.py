"""Classification heads over cached features (zero-shot text heads are cached on disk)."""

from spurbench.heads.cached import head_for

__all__ = ["head_for"]
