"""Published numbers as data: the reference testbed that new measurements are compared against.

Three sources are shipped as package data next to this module (see ``SOURCES.md`` for citations
and caveats):

* CounterAnimal (Wang et al., *A Sober Look at the Robustness of CLIPs to Spurious Features*,
  NeurIPS 2024, arXiv:2403.11497): the 45 classes with their common / counter backgrounds and the
  reference model's per-class accuracy, and the common / counter accuracy of every CLIP, ImageNet
  and LVLM model the paper reports.
* open_clip's published zero-shot results (``docs/openclip_results.csv`` in
  mlfoundations/open_clip): ImageNet-1k and the natural distribution shifts for its pretrained
  models, the x-axis of effective-robustness plots (Taori et al. 2020).
* timm's published results (``results/`` in huggingface/pytorch-image-models): ImageNet-1k,
  ImageNetV2, Sketch, ImageNet-R and -A top-1 for ~1,300 supervised ImageNet classifiers, whose
  ImageNet-1k-only members are the ImageNet-model trend effective robustness is measured from
  when the user's store has too few ImageNet-trained models of its own.
* imagenet-testbed's published results (``robustness_top1s.csv`` in modestyachts/imagenet-testbed,
  Taori et al. 2020): the same five numbers plus ObjectNet for ~340 models, whose standard
  ImageNet-1k models are the trend on ObjectNet and of the five-shift mean, which timm cannot
  give because it publishes no ObjectNet numbers.

The numbers live only in the CSV files, never in code, so that a correction is a data change with
a citation rather than an edit buried in a function.
"""

from __future__ import annotations

import re
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


# --- timm's published results ----------------------------------------------------------------

TIMM_ACCURACY_COLUMNS: tuple[str, ...] = (
    "imagenet_top1",
    "imagenetv2_top1",
    "sketch_top1",
    "imagenet_r_top1",
    "imagenet_a_top1",
)

#: Tag tokens that name a training set, in the words the ``training_data`` column uses.
_TIMM_DATA: dict[str, str] = {
    "in1k": "ImageNet-1k",
    "in12k": "ImageNet-12k",
    "in21k": "ImageNet-21k",
    "in22k": "ImageNet-22k",
    "jft": "JFT-300M",
    "ig1b": "Instagram-1B",
    "swag": "Instagram-3.6B (SWAG)",
    "seer": "Instagram (SEER)",
    "yfcc100m": "YFCC-100M",
    "openai": "OpenAI CLIP (WIT-400M)",
    "laion2b": "LAION-2B",
    "laiona": "LAION-Aesthetics",
    "webli": "WebLI",
    "m30m": "Merged-30M",
    "m38m": "Merged-38M",
}

#: Tag tokens reviewed as naming only who trained a model or how (recipe, epochs, resolution,
#: optimiser, augmentation, adversarial training on ImageNet-1k images), never extra data, a
#: pretraining stage or a teacher model. Reviewed against all 178 tags of the shipped file; a
#: token not listed here (a future tag) makes a model *not* ImageNet-1k-only until reviewed.
_TIMM_RECIPE_TOKENS: frozenset[str] = frozenset(
    {
        # who: torchvision, Meta, Google, Microsoft, Ross Wightman, Sea AI Lab, Apple, NAVER,
        # NVIDIA, Baidu / PaddlePaddle, pycls, Alibaba MIIL, IDST, Snap, DeepMind, MXNet, ...
        *("tv", "tv2", "fb", "goog", "ms", "msft", "sw", "sail", "apple", "cvnets", "naver"),
        *("nav", "nv", "paddle", "pycls", "miil", "idstcv", "bd", "snap", "deit", "dm", "mx"),
        *("gluon", "tf"),
        # how: timm recipes (ResNet strikes back a1..a3, RandAugment ra..ra4, ...), AdvProp /
        # adversarial training on ImageNet-1k images, optimisers, augmentation, batch sizes
        *("a1", "a1h", "a2", "a2h", "a3", "aa", "agc", "ah", "am", "ap", "adv", "ens"),
        *("augreg", "aug", "b1k", "b2k", "bt", "c1", "c2", "c2ns", "c3", "ch", "d", "d1"),
        *("d1h", "d2", "green", "ix", "lamb", "racm", "ram", "rmsp", "rvgg", "sam", "sbb"),
        *("ra", "ra2", "ra3", "ra4"),
        # seen only in tags that name other data as well: AugReg v2, original weights, timm's
        # "searching for better baselines" v2, the Lion optimiser, a weight-averaged soup
        *("augreg2", "orig", "sbb2", "lion", "soup"),
    }
)
#: Epoch / resolution / size tokens: e600, r224, s576, 384, 300e, 1200ep.
_TIMM_NUMERIC_TOKEN = re.compile(r"[ers]\d+|\d+(e|ep)?")
#: Architecture-name tokens that say the weights come from more than ImageNet-1k training.
_TIMM_ARCH_TOKENS: frozenset[str] = frozenset({"clip", "siglip", "distilled", "ssld"})


def timm_in1k_only(model: str) -> bool:
    """True when a timm model's name says it was trained on ImageNet-1k and nothing else.

    Conservative on purpose, because these models are the baseline effective robustness is
    measured from, and one CLIP- or ImageNet-21k-pretrained model among them moves the trend:
    the pretrained tag (after the ".") must contain ``in1k`` and otherwise only tokens of
    :data:`_TIMM_RECIPE_TOKENS` or epoch / resolution numbers, and the architecture name must
    not contain "clip", "siglip", "distilled" or "ssld" (``hrnet_w18_ssld.paddle_in1k``). So
    ``in22k_ft_in1k``, ``laion2b_ft_in12k_in1k``, ``openai_ft_in1k``, ``fb_swsl_ig1b_ft_in1k``
    and ``ns_jft_in1k`` are excluded (extra data),
    and so are ``fcmae_ft_in1k``, ``mae_in1k_ft_in1k``, ``ft_in1k`` (a pretraining stage the tag
    does not fully describe), ``dist_in1k``, ``ssld_in1k``, ``usi_in1k`` (a teacher model whose
    data the tag does not name), even where the paper says that stage used ImageNet-1k only.
    """
    arch, _, tag = model.partition(".")
    if _TIMM_ARCH_TOKENS & set(arch.split("_")):
        return False
    tokens = tag.split("_")
    if "in1k" not in tokens:
        return False
    return all(
        t == "in1k" or t in _TIMM_RECIPE_TOKENS or _TIMM_NUMERIC_TOKEN.fullmatch(t) for t in tokens
    )


def timm_training_data(model: str) -> str:
    """The training data a timm model's name states, for reading (not for selecting models).

    "ImageNet-1k" exactly when :func:`timm_in1k_only` holds. Otherwise the data sets the tag
    names, in tag order and joined by " → " (usually pretraining first: "ImageNet-22k →
    ImageNet-1k", "LAION-2B → ImageNet-12k → ImageNet-1k"), then in parentheses the tokens that
    keep the model out of the ImageNet-1k-only set without naming data: a pretraining or
    distillation stage, or a token not yet reviewed ("ImageNet-1k (+ fcmae, ft)",
    "ImageNet-1k (+ dist)", "ImageNet-22k → ImageNet-1k (+ mim)"). "ft" is listed only where
    the tag names no data other than ImageNet-1k before it, i.e. where the pretraining data is
    not stated.
    """
    if timm_in1k_only(model):
        return _TIMM_DATA["in1k"]
    arch, _, tag = model.partition(".")
    named: list[str] = []
    other: list[str] = []
    for t in tag.split("_"):
        if t in _TIMM_DATA:
            if not named or named[-1] != _TIMM_DATA[t]:
                named.append(_TIMM_DATA[t])
        elif t == "ft" and set(named) - {_TIMM_DATA["in1k"]}:
            continue  # "in22k_ft_in1k": the tag says what the pretraining data was
        elif not (t in _TIMM_RECIPE_TOKENS or _TIMM_NUMERIC_TOKEN.fullmatch(t)):
            other.append(t)
    other += [f"arch: {t}" for t in arch.split("_") if t in _TIMM_ARCH_TOKENS]
    text = " → ".join(named) or "no data named"
    return f"{text} (+ {', '.join(other)})" if other else text


def store_model_in1k_only(model: str) -> bool:
    """True when a model name, as spurbench stores it, says ImageNet-1k training and nothing else.

    The same rule as timm's published list (:func:`timm_in1k_only`), so that the store's baseline
    means what the published one means: a timm model is judged by its ``arch.tag``, a torchvision
    model by its weights written as a timm tag (``IMAGENET1K_V2`` -> ``tv_in1k``,
    ``IMAGENET1K_SWAG_E2E_V1`` -> ``tv_in1k_swag_e2e``, which fails; no weights named means
    torchvision's ``DEFAULT``, looked up). Everything else is not: CLIP and LVLM families, local
    checkpoints, random init and a timm name without a tag (its training data is not stated).
    """
    from spurbench.models.spec import RANDOM, parse_model_name

    spec = parse_model_name(model)
    if spec.pretrained == RANDOM:
        return False
    if spec.family == "timm":
        name = f"{spec.arch}.{spec.pretrained}" if spec.pretrained else spec.arch
        return "." in name and timm_in1k_only(name)
    if spec.family == "torchvision":
        weights = spec.pretrained or _torchvision_default_weights(spec.arch)
        if weights is None:
            return False
        tokens = [t for t in weights.lower().split("_") if not re.fullmatch(r"v\d+", t)]
        tag = "_".join(["tv", *("in1k" if t == "imagenet1k" else t for t in tokens)])
        return timm_in1k_only(f"{spec.arch}.{tag}")
    return False


def _torchvision_default_weights(arch: str) -> str | None:
    """Name of the weights torchvision's ``DEFAULT`` stands for (None if it cannot say)."""
    try:
        import torchvision

        return str(torchvision.models.get_model_weights(arch).DEFAULT.name)
    except (ImportError, ValueError, KeyError, AttributeError):
        return None


def load_timm_results(*, in1k_only: bool | None = None) -> pd.DataFrame:
    """timm's published top-1 accuracies on ImageNet and four shifts (percent, as published).

    One row per (model, img_size): timm evaluates some weights at two resolutions and publishes
    both. Columns: model (timm's ``arch.tag``), img_size, crop_pct, param_count (millions),
    imagenet_top1, imagenetv2_top1 (matched frequency), sketch_top1, imagenet_r_top1,
    imagenet_a_top1 (NaN where timm has no number), plus, added here: family ("timm"), arch,
    pretrained (the tag), model_name (spurbench registry syntax ``timm:arch,tag``),
    training_data (:func:`timm_training_data`) and in1k_only (:func:`timm_in1k_only`).

    ImageNet-R and -A are scored as timm scores them, on their 200 classes with the other 800
    logits masked, which is also how spurbench scores them (see ``SOURCES.md``). ``in1k_only``
    filters the rows (None: all).
    """
    df = _read_csv(
        "timm_results.csv",
        dtype={"model": str, "img_size": int, "crop_pct": float, "param_count": float}
        | dict.fromkeys(TIMM_ACCURACY_COLUMNS, float),
    )
    split = df["model"].str.partition(".")
    df.insert(0, "family", "timm")
    df["arch"], df["pretrained"] = split[0], split[2]
    df["model_name"] = "timm:" + df["arch"] + "," + df["pretrained"]
    df["training_data"] = df["model"].map(timm_training_data)
    df["in1k_only"] = df["model"].map(timm_in1k_only).astype(bool)
    if in1k_only is not None:
        df = df[df["in1k_only"] == in1k_only]
    return df.reset_index(drop=True)


# --- imagenet-testbed's published results ------------------------------------------------------

#: Accuracy columns of ``testbed_results.csv``: timm's five, same names, plus ObjectNet.
TESTBED_ACCURACY_COLUMNS: tuple[str, ...] = (*TIMM_ACCURACY_COLUMNS, "objectnet_top1")
#: imagenet-testbed model types (its ``plotting/model_types.py``) that count as ImageNet-1k-only.
#: Only "Standard training": the models Taori et al. fit their baseline on. ``MORE_DATA`` names
#: extra training data; robustness interventions (some use images or networks from elsewhere:
#: Stylized-ImageNet, DeepAugment), adversarial training, subsets of ImageNet and non-network
#: classifiers are not the trend effective robustness is measured from.
TESTBED_IN1K_TYPES: frozenset[str] = frozenset({"STANDARD"})


def testbed_in1k_only(model_type: str) -> bool:
    """True for the imagenet-testbed model types the ImageNet-1k-only baseline is made of."""
    return model_type in TESTBED_IN1K_TYPES


def load_testbed_results(*, in1k_only: bool | None = None) -> pd.DataFrame:
    """imagenet-testbed's published top-1 accuracies (percent, as published), one row per model.

    Columns: model (the testbed's name, e.g. "resnet50"), model_type (its metadata's
    ``ModelTypes`` member, "" where it has none), imagenet_top1 (ImageNet val), imagenetv2_top1
    (matched frequency, "format-val" release), sketch_top1, imagenet_r_top1, imagenet_a_top1 (200
    classes, other logits masked), objectnet_top1 (objectnet-1.0-beta: the 113 ImageNet classes
    ObjectNet shares, 2-pixel border cropped, a prediction correct when it is any ImageNet class
    of the image's ObjectNet class: spurbench's rule), plus family ("testbed"), model_name
    ("testbed:<model>") and in1k_only (:func:`testbed_in1k_only`), which filters (None: all).
    """
    df = _read_csv(
        "testbed_results.csv",
        dtype={"model": str, "model_type": str} | dict.fromkeys(TESTBED_ACCURACY_COLUMNS, float),
        keep_default_na=False,
        na_values={c: [""] for c in TESTBED_ACCURACY_COLUMNS},
    )
    df.insert(0, "family", "testbed")
    df["model_name"] = "testbed:" + df["model"]
    df["in1k_only"] = df["model_type"].map(testbed_in1k_only).astype(bool)
    if in1k_only is not None:
        df = df[df["in1k_only"] == in1k_only]
    return df.reset_index(drop=True)
