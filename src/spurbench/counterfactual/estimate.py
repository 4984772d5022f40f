"""Estimated foreground masks, for photos that come without one: GrabCut and segmentation nets.

* GrabCut (Rother, Kolmogorov & Blake, SIGGRAPH 2004; OpenCV's ``cv2.grabCut``) from a box
  around the object: the user's box (manifest columns ``x0,y0,x1,y1`` in pixels) or, without
  one, a centre prior (the central box leaving a margin of 1/8 of each side), which is how
  Xiao et al. (ICLR 2021) built ImageNet-9's masks from ImageNet's boxes.
* A torchvision segmentation model by name (``deeplabv3_mobilenet_v3_large``, ...): the object
  is every pixel not predicted as the background class. Its weights come from torchvision's
  cache; when they cannot be fetched the error says so before any evaluation model loads.
  ``weights="random"`` builds the architecture at random init, for testing the code path only.

OpenCV is an optional dependency (``pip install 'spurbench[counterfactual]'``), imported when a
GrabCut mask is asked for.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from PIL import Image

from spurbench.errors import DatasetError, UnknownModelError, WeightsUnavailableError, closest

GRABCUT_BOX, GRABCUT_CENTRE, SEGMENTATION = "grabcut-box", "grabcut-centre", "segmentation"
BOX_COLUMNS = ("x0", "y0", "x1", "y1")
#: Margin of the centre prior, as a fraction of each side.
CENTRE_MARGIN = 1 / 8
GRABCUT_ITERATIONS = 5
RANDOM_WEIGHTS = "random"


def _cv2():
    try:
        import cv2
    except ImportError:  # pragma: no cover - depends on the environment
        raise DatasetError(
            "GrabCut masks need OpenCV: pip install 'spurbench[counterfactual]' "
            "(opencv-python-headless)."
        ) from None
    return cv2


def check_boxes(table: pd.DataFrame) -> None:
    """Refuse a dataset without the box columns, or with boxes that are not boxes."""
    missing = [c for c in BOX_COLUMNS if c not in table.columns]
    if missing:
        raise DatasetError(
            f"--boxes needs manifest columns {','.join(BOX_COLUMNS)} (pixels); missing {missing}."
        )
    boxes = table[list(BOX_COLUMNS)].apply(pd.to_numeric, errors="coerce")
    bad = boxes.isna().any(axis=1) | (boxes["x1"] <= boxes["x0"]) | (boxes["y1"] <= boxes["y0"])
    if bad.any():
        ids = table.loc[bad, "image_id"].head(3).tolist()
        raise DatasetError(f"{int(bad.sum())} boxes are empty or not numbers, e.g. {ids}.")


def centre_box(width: int, height: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the centre prior."""
    mx, my = round(width * CENTRE_MARGIN), round(height * CENTRE_MARGIN)
    return mx, my, width - mx, height - my


def grabcut(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """GrabCut's foreground (definite or probable) inside ``box`` (x0, y0, x1, y1), as 0/1.

    The box is clipped to leave at least one pixel of border, which GrabCut needs as sure
    background; the result is deterministic (OpenCV's GMM initialisation is seeded).
    """
    cv2 = _cv2()
    h, w = image.shape[:2]
    x0, y0 = max(int(box[0]), 1), max(int(box[1]), 1)
    x1, y1 = min(int(box[2]), w - 1), min(int(box[3]), h - 1)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return np.zeros((h, w))
    cv2.setRNGSeed(0)
    mask = np.zeros((h, w), np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    bgr = np.ascontiguousarray(image[..., ::-1])
    cv2.grabCut(bgr, mask, (x0, y0, x1 - x0, y1 - y0), bgd, fgd, GRABCUT_ITERATIONS,
                cv2.GC_INIT_WITH_RECT)  # fmt: skip
    return np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.float64)


def grabcut_masks(use_boxes: bool) -> Callable[[pd.Series, np.ndarray], tuple[np.ndarray, str]]:
    """(row, pixels) -> (mask, source): GrabCut from the row's box, or the centre prior."""
    _cv2()

    def estimate(row: pd.Series, pixels: np.ndarray) -> tuple[np.ndarray, str]:
        if use_boxes:
            box = tuple(round(float(row[c])) for c in BOX_COLUMNS)
            return grabcut(pixels, box), GRABCUT_BOX  # type: ignore[arg-type]
        h, w = pixels.shape[:2]
        return grabcut(pixels, centre_box(w, h)), GRABCUT_CENTRE

    return estimate


def segmentation_model(spec: str):
    """(model, transform, source label) for ``NAME[:WEIGHTS]`` among torchvision's models.

    WEIGHTS is a weights enum name (default: the model's default weights) or ``random``.
    """
    import torch
    from torchvision.models import get_model, get_model_weights, list_models, segmentation

    name, _, weights_name = spec.partition(":")
    known = list_models(module=segmentation)
    if name not in known:
        hint = closest(name, known) or known
        raise UnknownModelError(
            f"Unknown segmentation model {name!r}; torchvision has {', '.join(hint)}."
        )
    if weights_name == RANDOM_WEIGHTS:
        torch.manual_seed(0)
        model = get_model(name, weights=None, weights_backbone=None, aux_loss=False)
        return model.eval(), None, f"{SEGMENTATION}:{name}:{RANDOM_WEIGHTS}"
    enum = get_model_weights(name)
    try:
        weights = enum[weights_name] if weights_name else enum.DEFAULT
    except KeyError:
        raise UnknownModelError(
            f"Unknown weights {weights_name!r} for {name}; known: {', '.join(enum.__members__)}."
        ) from None
    try:
        model = get_model(name, weights=weights)
    except Exception as e:  # offline, or a truncated download: the user can act on it
        raise WeightsUnavailableError(
            f"Weights {weights} of segmentation model {name} could not be loaded ({e}); put "
            f"them in torch's hub cache ({torch.hub.get_dir()}/checkpoints) or use another "
            "--mask-source."
        ) from None
    return model.eval(), weights.transforms(), f"{SEGMENTATION}:{name}:{weights.name}"


def segmentation_masks(spec: str) -> Callable[[pd.Series, np.ndarray], tuple[np.ndarray, str]]:
    """(row, pixels) -> (mask, source): pixels a torchvision model does not call background."""
    import torch
    import torch.nn.functional as F
    from torchvision.transforms.functional import normalize, to_tensor

    model, transform, source = segmentation_model(spec)

    @torch.no_grad()
    def estimate(row: pd.Series, pixels: np.ndarray) -> tuple[np.ndarray, str]:
        image = Image.fromarray(pixels)
        if transform is not None:
            x = transform(image)
        else:
            x = normalize(to_tensor(image), [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
        logits = model(x[None])["out"]
        logits = F.interpolate(logits, size=pixels.shape[:2], mode="bilinear")
        return (logits[0].argmax(0) != 0).numpy().astype(np.float64), source

    return estimate
