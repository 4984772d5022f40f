"""Export a curated dataset in the CounterAnimal release layout, with a manifest and a datasheet.

Layout (the one CounterAnimal was released in, Wang, Lin et al., NeurIPS 2024, and the one
:func:`spurbench.data.layouts.load_folder` reads): ``<ImageNet index> <name>/common-<bg>/`` and
``counter-<bg>/`` for ImageNet-labelled classes, ``<name>/common-<bg>/`` for custom classes.
Names are percent-encoded where a folder name could not hold them (``a/b`` is ``a%2Fb``, a
leading ``.`` is ``%2E``, ``%`` is ``%25``): distinct names stay distinct folders and
``urllib.parse.unquote`` gives the true name back. Images are copied byte for byte (so their
hashes, and every model's features, are those of the pool). Beside the folders:

* ``manifest.csv``: path, label, class_name, group, background, background_source, sha256 and
  the pool's image_id of every file. ``label`` is the ImageNet index for ImageNet label spaces
  and the true class name otherwise, so that the file reloads with its class names (the folder
  is read through it, see :func:`spurbench.data.layouts.open_dataset`);
* ``datasheet.json`` and ``DATASHEET.md`` (in the spirit of Gebru et al., *Datasheets for
  Datasets*, CACM 2021): counts per class and group, backgrounds and how they were labelled,
  the selection rule and thresholds, the reference and held-out models with their accuracies,
  cleaning results, file hashes, and the commands and configuration that made the dataset, so it
  can be published, audited and rebuilt.

The whole folder is built beside its destination and renamed into place, so a reader never sees
a half-written export and a crash leaves the previous one intact.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spurbench.atomic import write_json_atomic, write_text_atomic
from spurbench.curate.discovery import Discovery
from spurbench.curate.pool import LABEL_CONFLICT, LABEL_NOISE, in_dataset
from spurbench.data.classes import resolve_templates
from spurbench.data.dataset import COMMON, COUNTER, ImageDataset
from spurbench.data.layouts import EXPORT_MARKER
from spurbench.data.members import is_member, read_member
from spurbench.errors import DatasetError

DATASHEET_JSON, DATASHEET_MD, MANIFEST = EXPORT_MARKER, "DATASHEET.md", "manifest.csv"
#: Characters a folder name cannot hold (or that would make decoding ambiguous: ``%``).
_UNSAFE = re.compile(r"[%/\\\x00-\x1f\x7f]|^[.\s]|\s$")


@dataclass
class Export:
    """Where the dataset went, its manifest and its datasheet."""

    root: Path
    manifest: pd.DataFrame
    datasheet: dict[str, Any]


def class_folder(dataset: ImageDataset, label: int) -> str:
    """``<index> <name>`` for ImageNet labels (the release layout), else the class name."""
    name = _safe(dataset.classes.names[label])
    return f"{label} {name}" if dataset.classes.is_imagenet else name


def _safe(text: str) -> str:
    """A folder name for ``text``, unique and reversible by ``urllib.parse.unquote``."""
    if not str(text):
        raise DatasetError("An empty name cannot be used as a folder name.")
    return _UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), str(text))


def export_rows(dataset: ImageDataset, discovery: Discovery) -> pd.DataFrame:
    """The pool rows that make up the dataset, with their group (common or counter)."""
    pairs = discovery.pairs()
    t = dataset.table[in_dataset(dataset)]
    t = t[t["label"].isin(list(pairs))]
    group = [
        COMMON if bg == pairs[y][0] else COUNTER if bg == pairs[y][1] else ""
        for y, bg in zip(t["label"], t["background"], strict=True)
    ]
    t = t.assign(group=group)
    return t[t["group"] != ""].sort_values(["label", "group", "image_id"]).reset_index(drop=True)


def export_dataset(
    dataset: ImageDataset,
    discovery: Discovery,
    out_dir: str | Path,
    *,
    name: str | None = None,
    overwrite: bool = False,
    tagging: dict[str, Any] | None = None,
    cleaning: dict[str, Any] | None = None,
    provenance: dict[str, Any] | None = None,
) -> Export:
    """Write the kept classes' common and counter groups, the manifest and the datasheet."""
    out = Path(out_dir).expanduser().resolve()
    rows = export_rows(dataset, discovery)
    if rows.empty:
        raise DatasetError("No class was kept by spurious discovery: nothing to export.")
    _check_destination(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        manifest = _copy_images(dataset, rows, discovery, tmp)
        written = (
            manifest
            if dataset.classes.is_imagenet
            else manifest.assign(label=manifest["class_name"])
        )
        write_text_atomic(tmp / MANIFEST, written.to_csv(index=False, lineterminator="\n"))
        sheet = datasheet(
            dataset, discovery, manifest, name or out.name, tagging, cleaning, provenance
        )
        sheet["files"]["manifest_sha256"] = _sha256(tmp / MANIFEST)
        write_json_atomic(tmp / DATASHEET_JSON, sheet)
        write_text_atomic(tmp / DATASHEET_MD, datasheet_markdown(sheet))
        _install(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Export(out, manifest, sheet)


def _check_destination(out: Path, overwrite: bool) -> None:
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    if not (out / DATASHEET_JSON).is_file():
        raise DatasetError(
            f"{out} exists and is not a spurbench curate export; choose another --out "
            "(an export never overwrites other data)."
        )
    if not overwrite:
        raise DatasetError(f"{out} holds an earlier export; pass --overwrite to replace it.")


def _install(tmp: Path, out: Path) -> None:
    """Rename the finished export into place, moving an earlier export aside first."""
    old = None
    if out.exists():
        if any(out.iterdir()):
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / "export")
        else:
            out.rmdir()
    try:
        os.replace(tmp, out)
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _copy_images(
    dataset: ImageDataset, rows: pd.DataFrame, discovery: Discovery, root: Path
) -> pd.DataFrame:
    used: set[str] = set()
    records = []
    for r in rows.itertuples(index=False):
        folder = f"{class_folder(dataset, int(r.label))}/{r.group}-{_safe(r.background)}"
        data = read_member(r.path) if is_member(r.path) else None
        src = Path(r.path) if data is None else Path(_member_file_name(str(r.image_id), data))
        rel = f"{folder}/{src.name}"
        if rel in used:  # two pool images with one file name: keep both, distinctly named
            tag = hashlib.sha256(str(r.image_id).encode()).hexdigest()[:8]
            rel = f"{folder}/{src.stem}-{tag}{src.suffix}"
        used.add(rel)
        (root / folder).mkdir(parents=True, exist_ok=True)
        if data is None:
            shutil.copyfile(src, root / rel)
        else:
            (root / rel).write_bytes(data)
        records.append(
            (
                rel,
                int(r.label),
                r.class_name,
                r.group,
                r.background,
                r.background_source,
                r.flags,
                _sha256(root / rel),
                r.image_id,
            )
        )
    cols = [
        "path",
        "label",
        "class_name",
        "group",
        "background",
        "background_source",
        "flags",
        "sha256",
        "source_image_id",
    ]
    return pd.DataFrame(records, columns=cols)


def _member_file_name(image_id: str, data: bytes) -> str:
    """A file name for an image that lived inside a shard: its key and its real format."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        fmt = (im.format or "bin").lower()
    return f"{_safe(image_id.rsplit('/', 1)[-1])}.{'jpg' if fmt == 'jpeg' else fmt}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def tree_digest(manifest: pd.DataFrame) -> str:
    """One hash for the dataset's files: SHA-256 of the sorted ``path<TAB>sha256`` lines."""
    lines = sorted(f"{p}\t{s}\n" for p, s in zip(manifest["path"], manifest["sha256"], strict=True))
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def datasheet(
    dataset: ImageDataset,
    discovery: Discovery,
    manifest: pd.DataFrame,
    name: str,
    tagging: dict[str, Any] | None,
    cleaning: dict[str, Any] | None,
    provenance: dict[str, Any] | None,
) -> dict[str, Any]:
    """Everything needed to publish, audit and rebuild the dataset, as plain JSON types."""
    from spurbench import __version__

    sel = discovery.selection.set_index("label")
    classes = []
    for (label, class_name), g in manifest.groupby(["label", "class_name"], sort=True):
        counts = g["group"].value_counts()
        s = sel.loc[label]
        classes.append(
            {
                "label": int(label),
                "class_name": class_name,
                "folder": g["path"].iloc[0].split("/")[0],
                "common": s["common"],
                "counter": s["counter"],
                "n_common": int(counts.get(COMMON, 0)),
                "n_counter": int(counts.get(COUNTER, 0)),
                "reference_gap": round(float(s["gap"]), 6),
                "ci_separated": bool(s["ci_separated"]),
            }
        )
    flags = {
        group: {f: int(g["flags"].str.contains(f, regex=False).sum())
                for f in (LABEL_NOISE, LABEL_CONFLICT)}
        for group, g in manifest.groupby("group")
    }  # fmt: skip
    excluded = dataset.table["excluded"].str.split(":").str[0]
    sources = (
        manifest.groupby(["group", "background_source"])
        .size()
        .unstack(fill_value=0)
        .to_dict("index")
    )
    return _plain(
        {
            "name": name,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "spurbench_version": __version__,
            "layout": "CounterAnimal release layout: <class folder>/common-<bg>/, counter-<bg>/",
            "pool": {
                "name": dataset.name,
                "root": str(dataset.root),
                "n_images": len(dataset),
                "label_space": "ImageNet-1k" if dataset.classes.is_imagenet else "custom",
                "name_set": dataset.classes.name_set,
            },
            "counts": {
                "n_classes": len(classes),
                "n_images": len(manifest),
                "n_common": int((manifest["group"] == COMMON).sum()),
                "n_counter": int((manifest["group"] == COUNTER).sum()),
                "classes": classes,
                "flagged_but_kept": flags,
            },
            "backgrounds": {
                "per_group": {
                    g: {str(k): int(v) for k, v in c.items()}
                    for g, c in manifest.groupby("group")["background"]
                    .value_counts()
                    .unstack(fill_value=0)
                    .iterrows()
                },
                "label_sources": sources,
                "tagging": tagging,
            },
            "selection": {
                **discovery.summary()["config"],
                "templates_resolved": list(resolve_templates(_template_spec(discovery))),
                "rule": "common = highest-accuracy background, counter = lowest, among "
                "backgrounds with >= min_group_size images; class kept if the gap exceeds "
                "threshold (and, if required, the Clopper-Pearson intervals separate for every "
                "reference model); several references are averaged",
                "n_classes_considered": len(discovery.selection),
                "dropped": discovery.summary()["dropped"],
            },
            "models": _model_accuracies(discovery),
            "selection_bias": discovery.bias.to_dict(orient="records"),
            "cleaning": {
                **(cleaning or {}),
                "excluded_from_pool": {
                    str(k): int(v) for k, v in excluded[excluded != ""].value_counts().items()
                },
                "n_unlabelled": int((dataset.table["background"] == "").sum()),
            },
            "files": {
                "n_files": len(manifest),
                "hash": "sha256",
                "tree_sha256": tree_digest(manifest),
                "per_file": "manifest.csv (column sha256)",
            },
            "provenance": provenance or {},
        }
    )


def _template_spec(discovery: Discovery) -> str | list[str]:
    t = discovery.config.templates
    return t if isinstance(t, str) else list(t)


def _model_accuracies(discovery: Discovery) -> list[dict[str, Any]]:
    cells = discovery.cells.set_index(["model", "label", "background"])
    out = []
    for m in discovery.models:
        d = discovery.drops[discovery.drops["model"] == m["name"]]
        per_class = []
        for r in d.itertuples():
            c = cells.loc[(m["name"], r.label, r.common)]
            x = cells.loc[(m["name"], r.label, r.counter)]
            per_class.append(
                {
                    "label": int(r.label),
                    "common": [c["accuracy"], c["ci_low"], c["ci_high"], int(c["n"])],
                    "counter": [x["accuracy"], x["ci_low"], x["ci_high"], int(x["n"])],
                }
            )
        out.append(
            {
                **m,
                "balanced_common": float(d["acc_common"].mean()),
                "balanced_counter": float(d["acc_counter"].mean()),
                "drop": float(d["drop"].mean()),
                "per_class": per_class,
                "per_class_format": "[accuracy, ci_low, ci_high, n]",
            }
        )
    return out


def _plain(obj: Any) -> Any:
    """numpy scalars and NaN to JSON-friendly Python values."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return None if np.isnan(obj) else round(float(obj), 6)
    return obj


def datasheet_markdown(sheet: dict[str, Any]) -> str:
    """The datasheet as a Markdown document for people (the JSON is the machine-readable one)."""
    c, s, cleaning = sheet["counts"], sheet["selection"], sheet["cleaning"]
    lines = [
        f"# Datasheet: {sheet['name']}",
        "",
        f"Built with spurbench {sheet['spurbench_version']} on {sheet['created_at']} from the "
        f"pool `{sheet['pool']['name']}` ({sheet['pool']['n_images']} images, "
        f"{sheet['pool']['label_space']} labels), following the CounterAnimal recipe (Wang, Lin "
        "et al., NeurIPS 2024): background labels, then spurious discovery with reference "
        "models, then the release layout.",
        "",
        "## Composition",
        "",
        f"{c['n_classes']} classes, {c['n_images']} images ({c['n_common']} common, "
        f"{c['n_counter']} counter).",
        "",
        "Images kept although flagged (a person may not have reviewed them yet): "
        + "; ".join(
            f"{g}: " + ", ".join(f"{k} {v}" for k, v in f.items())
            for g, f in c["flagged_but_kept"].items()
        )
        + ".",
        "",
        "| class | folder | common | n | counter | n | reference gap |",
        "| --- | --- | --- | ---: | --- | ---: | ---: |",
    ]
    lines += [
        f"| {k['class_name']} | `{k['folder']}` | {k['common']} | {k['n_common']} | "
        f"{k['counter']} | {k['n_counter']} | {100 * k['reference_gap']:.1f} |"
        for k in c["classes"]
    ]
    lines += [
        "",
        "## Backgrounds",
        "",
        "Label sources per group (manual: given with the pool; "
        "auto: zero-shot tagger above its threshold; reviewed: checked by a person):",
        "",
    ]
    for group, counts in sheet["backgrounds"]["label_sources"].items():
        lines.append(f"- {group}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    tagging = sheet["backgrounds"].get("tagging")
    if tagging:
        lines += ["", "Tagging: `" + json.dumps(tagging, sort_keys=True) + "`"]
    lines += [
        "",
        "## Selection",
        "",
        f"Rule: {s['rule']}.",
        "",
        f"- protocol `{s['protocol']}`, templates `{s['templates']}`",
        f"- threshold {100 * s['threshold']:g} points, minimum group size {s['min_group_size']}, "
        f"interval separation required: {s['require_ci_separation']} (level {s['level']})",
        f"- {c['n_classes']} of {s['n_classes_considered']} classes kept",
    ]
    if s["dropped"]:
        lines += ["", "Dropped classes:", ""]
        lines += [f"- {k}: {v}" for k, v in s["dropped"].items()]
    lines += [
        "",
        "## Models",
        "",
        "| model | role | common | counter | drop | selection bias |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    bias = {b["model"]: b.get("selection_bias") for b in sheet["selection_bias"]}
    for m in sheet["models"]:
        b = bias.get(m["name"])
        lines.append(
            f"| `{m['name']}` | {m['role']} | {_pct(m['balanced_common'])} | "
            f"{_pct(m['balanced_counter'])} | {_pct(m['drop'])} | {_pct(b)} |"
        )
    lines += [
        "",
        "Accuracies are class-balanced over the kept classes, on the selected groups. The "
        "selection bias of a model is the reference models' mean drop minus its drop: the "
        "inflation of the drop due to choosing the pairs with the reference models themselves.",
        "",
        "## Cleaning",
        "",
        "Excluded from the pool (listed in the work folder's dropped.csv and labels.csv): "
        + (", ".join(f"{k} {v}" for k, v in cleaning["excluded_from_pool"].items()) or "none")
        + f"; images left without a background label: {cleaning['n_unlabelled']}.",
        "",
        "Settings and step summary: `" + json.dumps(cleaning, sort_keys=True) + "`",
        "",
        "## Files",
        "",
        f"{sheet['files']['n_files']} files; SHA-256 of each in `manifest.csv`; tree digest "
        f"`{sheet['files']['tree_sha256']}`; manifest SHA-256 "
        f"`{sheet['files'].get('manifest_sha256', '')}`.",
        "",
        "## How it was made",
        "",
        "```json",
        json.dumps(sheet["provenance"], indent=1, sort_keys=True),
        "```",
        "",
    ]
    return "\n".join(lines)


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.1f}"
