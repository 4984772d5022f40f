"""Default settings of the curation steps, in a module the CLI can import without loading the
steps themselves (they bring torch)."""

from __future__ import annotations

#: Default Hamming distance (of 64 pHash bits) at or below which two images are near duplicates.
NEAR_DISTANCE = 4
#: Default probability above which a tagger's background label is kept.
DEFAULT_THRESHOLD = 0.5
