"""Probe and space names, in a module the CLI can import without loading the probes."""

from __future__ import annotations

#: Probe names, in the order they run (later ones reuse earlier results).
PROBES: tuple[str, ...] = ("kurtosis", "outliers", "directions", "pruning", "concepts")
#: The two representation spaces of the outlier probes.
SPACES: tuple[str, ...] = ("pre_head", "embedding")
#: The default head: the paper's 1v1000 when the labels are ImageNet classes, else 1vN.
AUTO_PROTOCOL = "auto"
