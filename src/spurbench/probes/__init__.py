"""Representation probes: outlier features, privileged directions, pruning, concept counting.

Numerical core of the probes of Crabbé et al., *Interpreting CLIP: Insights on the Robustness to
ImageNet Distribution Shifts* (TMLR 2024), as pure functions on numpy feature matrices H
(n_images × d_H), heads W (n_classes × d_H) with bias b, and labels y.

:func:`probe` (in :mod:`spurbench.probes.run`) runs them on a model and a dataset from the
evaluation's feature cache and stores the results.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from spurbench._lazy import lazy_exports

if TYPE_CHECKING:
    from spurbench.probes.concepts import (
        binary_concepts,
        concept_direction_scores,
        concepts_per_direction,
        count_concepts,
        encoded_concepts,
        linear_probe_concepts,
        top_concepts_per_direction,
        unique_concepts,
    )
    from spurbench.probes.directions import Directions, privileged_directions
    from spurbench.probes.outliers import (
        KurtosisAccumulator,
        KurtosisSummary,
        OutlierReport,
        activation_kurtosis,
        kurtosis_summary,
        outlier_dimensions,
        random_rotation,
    )
    from spurbench.probes.pruning import (
        DEFAULT_FRACTIONS,
        held_out_pruning,
        max_prunable_fraction,
        pruning_curve,
    )
    from spurbench.probes.run import (
        PROBES,
        PreHeadClassifier,
        ProbeConfigError,
        ProbeResult,
        probe,
    )

#: name -> module; imported on first use, so the CLI's start-up does not load the stage.
_EXPORTS = {
    "binary_concepts": "spurbench.probes.concepts",
    "concept_direction_scores": "spurbench.probes.concepts",
    "concepts_per_direction": "spurbench.probes.concepts",
    "count_concepts": "spurbench.probes.concepts",
    "encoded_concepts": "spurbench.probes.concepts",
    "linear_probe_concepts": "spurbench.probes.concepts",
    "top_concepts_per_direction": "spurbench.probes.concepts",
    "unique_concepts": "spurbench.probes.concepts",
    "Directions": "spurbench.probes.directions",
    "privileged_directions": "spurbench.probes.directions",
    "KurtosisAccumulator": "spurbench.probes.outliers",
    "KurtosisSummary": "spurbench.probes.outliers",
    "OutlierReport": "spurbench.probes.outliers",
    "activation_kurtosis": "spurbench.probes.outliers",
    "kurtosis_summary": "spurbench.probes.outliers",
    "outlier_dimensions": "spurbench.probes.outliers",
    "random_rotation": "spurbench.probes.outliers",
    "DEFAULT_FRACTIONS": "spurbench.probes.pruning",
    "held_out_pruning": "spurbench.probes.pruning",
    "max_prunable_fraction": "spurbench.probes.pruning",
    "pruning_curve": "spurbench.probes.pruning",
    "PROBES": "spurbench.probes.run",
    "PreHeadClassifier": "spurbench.probes.run",
    "ProbeConfigError": "spurbench.probes.run",
    "ProbeResult": "spurbench.probes.run",
    "probe": "spurbench.probes.run",
}
lazy_exports(__name__, _EXPORTS)

__all__ = [
    "DEFAULT_FRACTIONS",
    "PROBES",
    "Directions",
    "KurtosisAccumulator",
    "KurtosisSummary",
    "OutlierReport",
    "PreHeadClassifier",
    "ProbeConfigError",
    "ProbeResult",
    "activation_kurtosis",
    "binary_concepts",
    "concept_direction_scores",
    "concepts_per_direction",
    "count_concepts",
    "encoded_concepts",
    "held_out_pruning",
    "kurtosis_summary",
    "linear_probe_concepts",
    "max_prunable_fraction",
    "outlier_dimensions",
    "privileged_directions",
    "probe",
    "pruning_curve",
    "random_rotation",
    "top_concepts_per_direction",
    "unique_concepts",
]
