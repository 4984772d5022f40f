"""``spurbench.counterfactual``: build background counterfactuals and score them like any run.

The variant images go through :func:`spurbench.evaluate.evaluate` as one dataset (group = the
variant), so the protocol, label space, head, feature cache and store are the ones every other
evaluation uses; this module only adds the per-image attribution and the per-model summary, and
stores the attributions as an artifact of that run (kind ``counterfactual``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from spurbench.counterfactual.analysis import model_summary, per_image
from spurbench.counterfactual.build import BUILDER_VERSION, VariantSet, build_variants
from spurbench.counterfactual.masks import mask_lookup
from spurbench.counterfactual.variants import DEFAULT_FILL, ORIGINAL, SWAP_TO_COMMON, check_fill
from spurbench.data.dataset import ImageDataset
from spurbench.data.spec import DataSpec
from spurbench.evaluate.metrics import N_BOOT
from spurbench.evaluate.runner import RunResult, as_dataset, evaluate
from spurbench.models.base import ModelAdapter
from spurbench.runtime import Runtime, run_specs
from spurbench.store.results import ResultsStore

ARTIFACT = "counterfactual"


@dataclass
class CounterfactualResult:
    """One model's counterfactual evaluation."""

    model: str
    run: RunResult
    #: accuracy per variant, BG-gap with interval, drop and share explained, attribution counts
    summary: dict[str, float]
    #: one row per source image: correct_/pred_<variant>, attribution, mask source and status
    images: pd.DataFrame
    #: how many images had each mask status (ok, missing, too_small, too_large)
    mask_counts: dict[str, int]
    fill: str
    protocol: str
    #: how many images took their mask from each source (synthetic, user, grabcut-box, ...)
    mask_sources: dict[str, int]
    seed: int


def variants_for(
    data: str | Path | ImageDataset,
    *,
    masks: str | Path | None = None,
    mask_source: str = "auto",
    boxes: bool = False,
    seed: int = 0,
    fill: str = DEFAULT_FILL,
    cache_dir: str | Path | None = None,
    name_set: str = "openai",
) -> VariantSet:
    """The dataset's counterfactual images, built (or found) in the cache."""
    check_fill(fill)
    dataset = as_dataset(data, name_set=name_set)
    cache = Runtime(cache_dir).cache
    lookup = mask_lookup(dataset, masks, source=mask_source, boxes=boxes, cache_dir=cache)
    key = hashlib.sha256(
        repr((BUILDER_VERSION, dataset.digest(), seed, fill, mask_source, boxes)).encode()
    )
    return build_variants(
        dataset, lookup, cache / "counterfactual" / key.hexdigest()[:16], seed=seed, fill=fill
    )


def counterfactual(
    model: str | ModelAdapter,
    data: str | Path | ImageDataset | DataSpec,
    *,
    protocol: str = "1v1000",
    masks: str | Path | None = None,
    mask_source: str = "auto",
    boxes: bool = False,
    seed: int = 0,
    fill: str = DEFAULT_FILL,
    templates: str | list[str] | None = "paper",
    store: ResultsStore | str | Path | None = None,
    export: str | Path | None = None,
    n_boot: int = N_BOOT,
    runtime: Runtime | None = None,
    **options: Any,
) -> CounterfactualResult:
    """Evaluate ``model`` on the background counterfactuals of ``data`` under ``protocol``.

    ``masks`` is a folder of PNG masks mirroring the image tree, ``boxes`` says the manifest
    has object boxes (``x0,y0,x1,y1``) for GrabCut, and ``mask_source`` picks one source
    (see :func:`~spurbench.counterfactual.masks.mask_lookup`); by default the synthetic world's
    exact masks are used where there are no user masks. ``fill`` is how the object's box is
    filled in ONLY-BG and the mixed backgrounds (see :mod:`spurbench.counterfactual.variants`).
    ``export`` copies the variant images there as ``<variant>/<source image id>.png``.
    ``runtime`` and ``options`` are as for :func:`spurbench.evaluate` (data options such as
    ``name_set`` or ``classes``, runtime options such as ``cache_dir`` or ``batch_size``).
    """
    spec, runtime = run_specs(data, runtime, options, "counterfactual")
    built = variants_for(
        spec.open(), masks=masks, mask_source=mask_source, boxes=boxes, seed=seed, fill=fill,
        cache_dir=runtime.cache,
    )  # fmt: skip
    if isinstance(store, str | Path):
        store = ResultsStore(store)
    (run,) = evaluate(
        model,
        dataclasses.replace(spec, source=built.dataset),
        [protocol],
        templates=templates,
        store=store,
        n_boot=n_boot,
        seed=seed,
        runtime=runtime,
    )
    images = per_image(run.predictions, built.dataset.table).merge(
        built.masks[["image_id", "mask_source", "mask_area", "mask_status"]],
        on="image_id",
        how="left",
    )
    table = built.dataset.table
    for variant in (ORIGINAL, SWAP_TO_COMMON):  # where the report finds its thumbnails
        paths = table[table["variant"] == variant].set_index("source_id")["path"].to_dict()
        images[f"path_{variant}"] = [paths.get(i, "") for i in images["image_id"]]
    summary = model_summary(images, n_boot=n_boot, seed=seed)
    counts = built.masks["mask_status"].value_counts()
    mask_counts = {s: int(counts.get(s, 0)) for s in ("ok", "missing", "too_small", "too_large")}
    found = built.masks["mask_source"][built.masks["mask_source"] != ""]
    mask_sources = {str(k): int(v) for k, v in found.value_counts().sort_index().items()}
    if store is not None:
        store.write_artifact(
            run.run_id,
            ARTIFACT,
            {
                "fill": fill,
                "seed": seed,
                "mask_sources": mask_sources,
                "protocol": protocol,
                "summary": summary,
                "mask_counts": mask_counts,
                "images": images.to_dict(orient="records"),
            },
        )
    if export is not None:
        export_variants(built, export)
    return CounterfactualResult(
        run.model, run, summary, images, mask_counts, fill, protocol, mask_sources, seed
    )


def export_variants(built: VariantSet, out_dir: str | Path) -> Path:
    """Copy the variant images to ``out_dir/<variant>/<source image id>.png`` (never deletes)."""
    out = Path(out_dir)
    for row in built.dataset.table.itertuples(index=False):
        name = str(row.source_id).replace("/", "__")
        target = out / str(row.variant) / f"{name}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        if Path(row.path).suffix.lower() == ".png":
            shutil.copyfile(row.path, target)
        else:
            from PIL import Image

            with Image.open(row.path) as im:
                im.convert("RGB").save(target, format="PNG")
    return out
