"""Published numbers as data: the reference testbed that new measurements are compared against.

Two sources are shipped as package data next to this module (see ``SOURCES.md`` for citations and
caveats):

* CounterAnimal (Wang et al., *A Sober Look at the Robustness of CLIPs to Spurious Features*,
  NeurIPS 2024, arXiv:2403.11497): the 45 classes with their common / counter backgrounds and the
  reference model's per-class accuracy, and the common / counter accuracy of every CLIP, ImageNet
  and LVLM model the paper reports.
* open_clip's published zero-shot results (``docs/openclip_results.csv`` in
  mlfoundations/open_clip): ImageNet-1k and the natural distribution shifts for its pretrained
  models, the x-axis of effective-robustness plots (Taori et al. 2020).

The numbers live only in the CSV files, never in code, so that a correction is a data change with
a citation rather than an edit buried in a function.
"""

from __future__ import annotations

from importlib import resources
from typing import Literal

import pandas as pd

Protocol = Literal["1v1000", "1v20"]
PROTOCOLS: tuple[str, ...] = ("1v1000", "1v20")
FAMILIES: tuple[str, ...] = ("clip", "imagenet", "lvlm")

_PACKAGE = "spurbench.reference"


def _read_csv(name: str, **kwargs: object) -> pd.DataFrame:
    """Read a CSV shipped with the package, so it works from a wheel as well as from a checkout."""
    with resources.files(_PACKAGE).joinpath(name).open("r", encoding="utf-8") as fh:
        return pd.read_csv(fh, **kwargs)


def load_counteranimal_models(
    protocol: Protocol | None = None, *, balanced: bool | None = None
) -> pd.DataFrame:
    """Published CounterAnimal accuracies, one row per (model, protocol, averaging).

    Columns: family ("clip" | "imagenet" | "lvlm"), arch, pretrained, model_name (spurbench registry
    syntax: ``"ViT-B-32,laion400m_e31"`` / ``"torchvision:resnet50"`` / a descriptive LVLM name),
    protocol ("1v1000" | "1v20"), common, counter, drop (percent, as published), balanced (True for
    class-balanced means, False for the per-image comparison rows), note, source.

    ``protocol`` and ``balanced`` filter the rows; both default to "all" because the per-image rows
    and the 1-vs-20 rows answer different questions and a caller should opt into mixing them.
    ``arch`` and ``pretrained`` are empty strings for LVLMs, which are neither open_clip nor
    torchvision models.
    """
    if protocol is not None and protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS} or None, got {protocol!r}")
    df = _read_csv(
        "counteranimal_models.csv",
        dtype={
            "family": str,
            "arch": str,
            "pretrained": str,
            "model_name": str,
            "protocol": str,
            "common": float,
            "counter": float,
            "drop": float,
            "note": str,
            "source": str,
        },
        true_values=["true"],
        false_values=["false"],
        keep_default_na=False,
    )
    df["balanced"] = df["balanced"].astype(bool)
    if protocol is not None:
        df = df[df["protocol"] == protocol]
    if balanced is not None:
        df = df[df["balanced"] == balanced]
    return df.reset_index(drop=True)


def load_counteranimal_classes() -> pd.DataFrame:
    """The 45 CounterAnimal classes and the reference model's per-class accuracy.

    Columns: id (1..45, the paper's numbering), imagenet_idx (0-based ImageNet-1k index),
    class_name (as the paper prints it, WordNet lemmas, e.g. "ice bear" not "polar bear"),
    common_bg, counter_bg, n_common, n_counter (images per group), ref_common, ref_counter,
    ref_drop (percent, CLIP ViT-B-32 laion400m_e31, 1-vs-1000).
    """
    return _read_csv(
        "counteranimal_classes.csv",
        dtype={
            "id": int,
            "imagenet_idx": int,
            "class_name": str,
            "common_bg": str,
            "counter_bg": str,
            "n_common": int,
            "n_counter": int,
            "ref_common": float,
            "ref_counter": float,
            "ref_drop": float,
        },
    )


def load_openclip_results() -> pd.DataFrame:
    """open_clip's published zero-shot accuracies (fractions in [0, 1], not percent).

    Columns: name (open_clip arch), pretrained (tag), params_m, flops_b, avg_38_datasets,
    imagenet1k, imagenetv2, imagenet_sketch, imagenet_r, imagenet_a, objectnet, imagenet_o, plus
    model_name = "name,pretrained" (spurbench registry syntax) added here so the table joins on the
    same key as :func:`load_counteranimal_models`.

    Note that open_clip lists some weights under both the plain and the ``-quickgelu`` arch and the
    two rows differ where the activation matters (e.g. ViT-B-32 laion400m_e31); join on the arch
    you actually evaluated.
    """
    df = _read_csv("openclip_results.csv", dtype={"name": str, "pretrained": str})
    df["model_name"] = df["name"] + "," + df["pretrained"]
    return df
