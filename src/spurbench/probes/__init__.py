"""Representation probes: outlier features, privileged directions, pruning, concept counting.

Numerical core of the probes of Crabbé et al., *Interpreting CLIP: Insights on the Robustness to
ImageNet Distribution Shifts* (TMLR 2024), as pure functions on numpy feature matrices H
(n_images × d_H), heads W (n_classes × d_H) with bias b, and labels y.

:func:`probe` (in :mod:`spurbench.probes.run`) runs them on a model and a dataset from the
evaluation's feature cache and stores the results.
"""

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
