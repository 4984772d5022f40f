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

from spurbench.curate.cleaning import CleaningReport, clean_pool, file_hashes, flag_label_noise
from spurbench.curate.diagnose import Diagnosis, diagnose
from spurbench.curate.discovery import Discovery, DiscoveryConfig, discover, select_pairs
from spurbench.curate.export import Export, export_dataset
from spurbench.curate.pipeline import Curation, Runtime, curate
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
