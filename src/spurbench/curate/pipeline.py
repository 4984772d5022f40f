"""The curation steps on a work folder, and the whole pipeline in one call.

Order of :func:`curate` (the CounterAnimal recipe, Wang, Lin et al., NeurIPS 2024, §3, made
reproducible): clean the files (unreadable, duplicates) and flag likely label noise with the
reference models → tag missing backgrounds zero-shot → write the review files → spurious
discovery with the reference models (held-out models measured beside them) → export in the
release layout with a datasheet. Each step is also a function on a :class:`Workspace`, so a
person can stop after tagging, review, feed corrections back and go on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from spurbench.curate.cleaning import NEAR_DISTANCE, CleaningReport, clean_pool, flag_label_noise
from spurbench.curate.discovery import Discovery, DiscoveryConfig, discover
from spurbench.curate.export import Export, export_dataset
from spurbench.curate.review import apply_review, review_table, write_review
from spurbench.curate.scoring import ModelCache, curation_runtime, predict
from spurbench.curate.tagging import (
    DEFAULT_PROMPTS,
    DEFAULT_THRESHOLD,
    PAPER_BACKGROUNDS,
    TagResult,
    alternatives,
    tag_backgrounds,
)
from spurbench.curate.workspace import (
    DROPPED,
    FILES,
    LABEL_NOISE,
    PROBABILITIES,
    REVIEW_CSV,
    REVIEW_HTML,
    PoolSpec,
    Workspace,
)
from spurbench.data.dataset import ImageDataset
from spurbench.evaluate.preflight import check_readable
from spurbench.models.base import ModelAdapter
from spurbench.runtime import Runtime

Model = str | ModelAdapter


def write_review_files(ws: Workspace, dataset: ImageDataset) -> int:
    """Rewrite the review CSV and page with every image still waiting for a person."""
    alt = None
    if ws.path(PROBABILITIES).is_file():
        alt = alternatives(pd.read_csv(ws.path(PROBABILITIES), dtype={"image_id": str}))
    table = review_table(dataset, alt)
    write_review(table, dataset, ws.path(REVIEW_CSV), ws.path(REVIEW_HTML))
    return len(table)


def tag_step(
    ws: Workspace,
    tagger: Model | None,
    *,
    vocabulary: Sequence[str] = PAPER_BACKGROUNDS,
    prompts: Sequence[str] = DEFAULT_PROMPTS,
    threshold: float = DEFAULT_THRESHOLD,
    retag: bool = False,
    runtime: Runtime | None = None,
    models: ModelCache | None = None,
    command: list[str] | None = None,
) -> TagResult:
    """Tag missing backgrounds, save the labels and the tagger's probabilities, write review."""
    result = tag_backgrounds(
        ws.pool(),
        tagger,
        vocabulary=vocabulary,
        prompts=prompts,
        threshold=threshold,
        retag=retag,
        runtime=runtime,
        models=models,
    )
    ws.save_pool(result.dataset)
    if len(result.probabilities):
        probs = result.probabilities
        if ws.path(PROBABILITIES).is_file():  # keep earlier rows of images not tagged this time
            old = pd.read_csv(ws.path(PROBABILITIES), dtype={"image_id": str})
            probs = pd.concat([old[~old["image_id"].isin(probs["image_id"])], probs])
        ws.write_csv(PROBABILITIES, probs)
    n_review = write_review_files(ws, result.dataset)
    ws.record("tag", result.config, {**result.summary(), "n_to_review": n_review}, command)
    return result


def review_step(
    ws: Workspace, review: str | Path, command: list[str] | None = None
) -> dict[str, int]:
    """Apply a person's edited review CSV; the review files then list what is still open."""
    dataset, counts = apply_review(ws.pool(), review)
    ws.save_pool(dataset)
    counts = {**counts, "n_to_review": write_review_files(ws, dataset)}
    ws.record("review", {"file": str(Path(review).resolve())}, counts, command)
    return counts


def clean_step(
    ws: Workspace,
    *,
    references: Sequence[Model] = (),
    near_distance: int | None = NEAR_DISTANCE,
    noise_k: int = 5,
    protocol: str = "auto",
    templates: str | list[str] | None = "paper",
    runtime: Runtime | None = None,
    models: ModelCache | None = None,
    command: list[str] | None = None,
) -> CleaningReport:
    """Drop unreadable files and duplicates; with references, flag likely label noise."""
    runtime = curation_runtime(runtime, {}, "clean_step")
    report = clean_pool(ws.pool(), near_distance=near_distance, show_progress=runtime.show_progress)
    if references:
        models = models or ModelCache(runtime.device)
        kw = {"templates": templates, "runtime": runtime, "models": models}
        preds = [predict(m, report.dataset, protocol, **kw) for m in references]
        report.dataset, report.label_noise = flag_label_noise(report.dataset, preds, noise_k)
        report.config.update(
            {
                "label_noise_models": [p.model for p in preds],
                "label_noise_k": noise_k,
                "protocol": preds[0].protocol,
            }
        )
    ws.save_pool(report.dataset)
    ws.write_csv(FILES, report.files)
    ws.write_csv(DROPPED, report.dropped)
    ws.write_csv(LABEL_NOISE, report.label_noise)
    n_review = write_review_files(ws, report.dataset)
    ws.record("clean", report.config, {**report.summary(), "n_to_review": n_review}, command)
    return report


def discover_step(
    ws: Workspace,
    references: Sequence[Model],
    *,
    held_out: Sequence[Model] = (),
    config: DiscoveryConfig | None = None,
    runtime: Runtime | None = None,
    models: ModelCache | None = None,
    command: list[str] | None = None,
) -> Discovery:
    """Spurious discovery on the labelled, kept images; results saved in the work folder."""
    result = discover(
        ws.pool(), references, held_out=held_out, config=config, runtime=runtime, models=models
    )
    ws.save_discovery(result)
    summary = result.summary()
    ws.record("discover", summary.pop("config"), summary, command)
    return result


def export_step(
    ws: Workspace,
    out: str | Path,
    *,
    name: str | None = None,
    overwrite: bool = False,
    command: list[str] | None = None,
) -> Export:
    """Export the latest discovery; the datasheet quotes every step logged in the folder."""
    tag, clean = ws.last("tag"), ws.last("clean")
    provenance = {
        "pool": ws.state["pool"],
        "steps": [
            {k: s[k] for k in ("step", "at", "config", "command")} for s in ws.state["steps"]
        ],
        "export_command": command,
    }
    result = export_dataset(
        ws.pool(),
        ws.load_discovery(),
        out,
        name=name,
        overwrite=overwrite,
        tagging={**tag["config"], **tag["summary"]} if tag else None,
        cleaning={**clean["config"], **clean["summary"]} if clean else None,
        provenance=provenance,
    )
    ws.record(
        "export",
        {"out": str(result.root), "name": name, "overwrite": overwrite},
        {"n_images": len(result.manifest), "tree_sha256": result.datasheet["files"]["tree_sha256"]},
        command,
    )
    return result


@dataclass
class Curation:
    """Everything one :func:`curate` call produced."""

    workspace: Workspace
    cleaning: CleaningReport
    tagging: TagResult
    discovery: Discovery
    export: Export | None


def curate(
    pool: PoolSpec | str | Path,
    work: str | Path,
    out: str | Path | None,
    references: Sequence[Model],
    *,
    held_out: Sequence[Model] = (),
    tagger: Model | None = None,
    vocabulary: Sequence[str] = PAPER_BACKGROUNDS,
    prompts: Sequence[str] = DEFAULT_PROMPTS,
    threshold: float = DEFAULT_THRESHOLD,
    near_distance: int | None = NEAR_DISTANCE,
    flag_noise: bool = True,
    noise_k: int = 5,
    config: DiscoveryConfig | None = None,
    name: str | None = None,
    overwrite: bool = False,
    runtime: Runtime | None = None,
    models: ModelCache | None = None,
    command: list[str] | None = None,
) -> Curation:
    """Run the whole pipeline: clean → tag → discover → export (``out=None``: no export).

    ``tagger`` defaults to the first reference model, used only if some image lacks a label
    (a separate tagger avoids coupling tagging errors with the reference's failures).
    ``runtime`` is how models run (quiet by default); ``models`` loads each model once for
    every step (default: a new cache for this call).
    """
    runtime = curation_runtime(runtime, {}, "curate")
    models = models or ModelCache(runtime.device)
    config = config or DiscoveryConfig()
    spec = pool if isinstance(pool, PoolSpec) else PoolSpec(str(pool))
    ws = Workspace.create(work, spec)
    check_readable(ws.pool())  # before any model loads: a pool of missing files is a typo
    cleaning = clean_step(
        ws,
        references=references if flag_noise else (),
        near_distance=near_distance,
        noise_k=noise_k,
        protocol=config.protocol,
        templates=config.templates if isinstance(config.templates, str) else list(config.templates),
        runtime=runtime,
        models=models,
        command=command,
    )
    tagging = tag_step(
        ws,
        tagger if tagger is not None else references[0],
        vocabulary=vocabulary,
        prompts=prompts,
        threshold=threshold,
        runtime=runtime,
        models=models,
        command=command,
    )
    found = discover_step(
        ws, references, held_out=held_out, config=config, runtime=runtime, models=models,
        command=command,
    )  # fmt: skip
    exported = (
        export_step(ws, out, name=name, overwrite=overwrite, command=command)
        if out is not None
        else None
    )
    return Curation(ws, cleaning, tagging, found, exported)
