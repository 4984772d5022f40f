"""Curation: build a CounterAnimal-style dataset from any labelled photo pool.

CounterAnimal (Wang, Lin et al., NeurIPS 2024) was made by hand: photos of ImageNet animal
classes, cleaned and tagged with one of 14 backgrounds, then "spurious discovery" kept per class
the background where a reference CLIP does best (common) and worst (counter). This package makes
that recipe a reproducible pipeline for any classes and reference models::

    from spurbench.curate import curate, DiscoveryConfig
    result = curate("photos/manifest.csv", "cur/", "MyCounterAnimal/",
                    references=["ViT-B-32,laion400m_e31"], held_out=["ViT-B-16,openai"])
    result.discovery.selection      # per class: kept?, common, counter, accuracies, gap
    result.discovery.bias           # drop of reference vs held-out models on the chosen pairs

Each step is also usable on its own: :func:`load_pool`, :func:`tag_backgrounds`,
:func:`review_table` / :func:`write_review` / :func:`apply_review`, :func:`clean_pool` /
:func:`flag_label_noise`, :func:`discover`, :func:`export_dataset`, :func:`diagnose`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from spurbench._lazy import lazy_exports

if TYPE_CHECKING:
    from spurbench.curate.cleaning import CleaningReport, clean_pool, file_hashes, flag_label_noise
    from spurbench.curate.diagnose import Diagnosis, diagnose
    from spurbench.curate.discovery import Discovery, DiscoveryConfig, discover, select_pairs
    from spurbench.curate.export import Export, export_dataset
    from spurbench.curate.pipeline import Curation, curate
    from spurbench.curate.pool import (
        AUTO,
        BACKGROUND_SOURCES,
        MANUAL,
        REVIEWED,
        apply_labels,
        load_pool,
        write_labels,
    )
    from spurbench.curate.review import apply_review, review_table, write_review
    from spurbench.curate.tagging import (
        PAPER_BACKGROUNDS,
        TagResult,
        read_vocabulary,
        tag_backgrounds,
    )
    from spurbench.curate.workspace import PoolSpec, Workspace
    from spurbench.runtime import Runtime

#: name -> module; imported on first use, so the CLI's start-up does not load the stage.
_EXPORTS = {
    "CleaningReport": "spurbench.curate.cleaning",
    "clean_pool": "spurbench.curate.cleaning",
    "file_hashes": "spurbench.curate.cleaning",
    "flag_label_noise": "spurbench.curate.cleaning",
    "Diagnosis": "spurbench.curate.diagnose",
    "diagnose": "spurbench.curate.diagnose",
    "Discovery": "spurbench.curate.discovery",
    "DiscoveryConfig": "spurbench.curate.discovery",
    "discover": "spurbench.curate.discovery",
    "select_pairs": "spurbench.curate.discovery",
    "Export": "spurbench.curate.export",
    "export_dataset": "spurbench.curate.export",
    "Curation": "spurbench.curate.pipeline",
    "Runtime": "spurbench.runtime",
    "curate": "spurbench.curate.pipeline",
    "AUTO": "spurbench.curate.pool",
    "BACKGROUND_SOURCES": "spurbench.curate.pool",
    "MANUAL": "spurbench.curate.pool",
    "REVIEWED": "spurbench.curate.pool",
    "apply_labels": "spurbench.curate.pool",
    "load_pool": "spurbench.curate.pool",
    "write_labels": "spurbench.curate.pool",
    "apply_review": "spurbench.curate.review",
    "review_table": "spurbench.curate.review",
    "write_review": "spurbench.curate.review",
    "PAPER_BACKGROUNDS": "spurbench.curate.tagging",
    "TagResult": "spurbench.curate.tagging",
    "read_vocabulary": "spurbench.curate.tagging",
    "tag_backgrounds": "spurbench.curate.tagging",
    "PoolSpec": "spurbench.curate.workspace",
    "Workspace": "spurbench.curate.workspace",
}
lazy_exports(__name__, _EXPORTS)

__all__ = [
    "AUTO",
    "BACKGROUND_SOURCES",
    "MANUAL",
    "PAPER_BACKGROUNDS",
    "REVIEWED",
    "CleaningReport",
    "Curation",
    "Diagnosis",
    "Discovery",
    "DiscoveryConfig",
    "Export",
    "PoolSpec",
    "Runtime",
    "TagResult",
    "Workspace",
    "apply_labels",
    "apply_review",
    "clean_pool",
    "curate",
    "diagnose",
    "discover",
    "export_dataset",
    "file_hashes",
    "flag_label_noise",
    "load_pool",
    "read_vocabulary",
    "review_table",
    "select_pairs",
    "tag_backgrounds",
    "write_labels",
    "write_review",
]
