"""Review files: what a person should look at, as a CSV to edit and an HTML page to look at.

CounterAnimal's labels and cleaning were manual (Wang, Lin et al., NeurIPS 2024, §3); an
automatic pipeline should hand a person exactly the images where it is unsure — low-confidence
background tags and likely label noise — and take their answers back, recording that those
labels were ``reviewed`` by a person rather than guessed.

The CSV has one row per image to review: ``background`` is pre-filled with the best guess and is
the column to correct; ``exclude`` (yes/no) removes the image from the dataset. Feeding the file
back (:func:`apply_review`) asserts that a person checked every row left in it: a row whose
``background`` is blanked stays unlabelled, so delete or blank the rows you did not check.
The HTML page is self-contained (thumbnails embedded as base64 data URIs) so it can be mailed or
opened offline next to the CSV.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np
import pandas as pd

from spurbench.atomic import write_text_atomic
from spurbench.curate.pool import (
    LABEL_CONFLICT,
    LABEL_NOISE,
    LOW_CONFIDENCE,
    REVIEWED,
    normalize_background,
    remove_flag,
    split_flags,
    with_table,
)
from spurbench.data.dataset import ImageDataset
from spurbench.data.images import load_rgb
from spurbench.errors import DatasetError

REVIEW_REASONS = (LOW_CONFIDENCE, LABEL_NOISE, LABEL_CONFLICT)
REVIEW_COLUMNS = (
    "image_id",
    "class_name",
    "reason",
    "suggestion",
    "confidence",
    "alternatives",
    "background",
    "exclude",
    "note",
)
EXCLUDED_IN_REVIEW = "excluded in review"
_YES = {"yes", "y", "true", "1", "x"}


def review_table(dataset: ImageDataset, alternatives: pd.Series | None = None) -> pd.DataFrame:
    """The images a person should check: flagged for review, not excluded, not yet reviewed.

    Args:
        alternatives: per image_id, the tagger's top words with probabilities (shown as help).
    """
    t = dataset.table
    reasons = t["flags"].map(lambda s: ";".join(f for f in split_flags(s) if f in REVIEW_REASONS))
    mask = (reasons != "") & (t["excluded"] == "") & (t["background_source"] != REVIEWED)
    rows = t[mask]
    background = np.where(
        rows["background"] != "", rows["background"], rows["background_suggestion"]
    )
    alt = (
        rows["image_id"].map(alternatives).fillna("")
        if alternatives is not None
        else pd.Series("", index=rows.index)
    )
    out = pd.DataFrame(
        {
            "image_id": rows["image_id"],
            "class_name": rows["class_name"],
            "reason": reasons[mask],
            "suggestion": rows["background_suggestion"],
            "confidence": rows["background_confidence"].round(3),
            "alternatives": alt,
            "background": background,
            "exclude": "no",
            "note": "",
        }
    )
    return out.sort_values(["class_name", "reason", "confidence", "image_id"]).reset_index(
        drop=True
    )


def write_review(
    table: pd.DataFrame,
    dataset: ImageDataset,
    csv_path: str | Path,
    html_path: str | Path | None = None,
    *,
    thumb_size: int = 160,
    title: str = "spurbench curate: review",
) -> None:
    """Write the review CSV and (optionally) its HTML page with embedded thumbnails."""
    write_text_atomic(
        csv_path, table[list(REVIEW_COLUMNS)].to_csv(index=False, lineterminator="\n")
    )
    if html_path is not None:
        paths = dict(zip(dataset.table["image_id"], dataset.table["path"], strict=True))
        write_text_atomic(
            html_path, review_html(table, paths, Path(csv_path).name, thumb_size, title)
        )


def thumbnail_uri(path: str, size: int = 160) -> str | None:
    """A JPEG thumbnail as a ``data:`` URI, or None when the image cannot be read."""
    try:
        im = load_rgb(path)
    except Exception:
        return None
    im.thumbnail((size, size))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def review_html(
    table: pd.DataFrame, paths: dict[str, str], csv_name: str, thumb_size: int, title: str
) -> str:
    """One self-contained page: instructions and a row per image with its thumbnail."""
    esc = html.escape
    rows = []
    for r in table.itertuples(index=False):
        uri = thumbnail_uri(paths.get(r.image_id, ""), thumb_size)
        img = f'<img src="{uri}" alt="{esc(r.image_id)}">' if uri else "<em>unreadable</em>"
        conf = "" if pd.isna(r.confidence) else f"{float(r.confidence):.2f}"
        rows.append(
            "<tr>"
            f"<td>{img}</td><td><code>{esc(str(r.image_id))}</code></td>"
            f"<td>{esc(str(r.class_name))}</td><td>{esc(str(r.reason))}</td>"
            f"<td><b>{esc(str(r.background))}</b></td><td>{conf}</td>"
            f"<td>{esc(str(r.alternatives))}</td>"
            "</tr>"
        )
    style = (
        "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:middle}"
        f"img{{max-width:{thumb_size}px;max-height:{thumb_size}px}}th{{background:#eee}}"
    )
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{style}</style></head><body>"
        f"<h1>{esc(title)}</h1>"
        f"<p>{len(table)} images to check. Correct the <code>background</code> column of "
        f"<code>{esc(csv_name)}</code> (or set <code>exclude</code> to <code>yes</code>), then "
        "feed it back with <code>spurbench curate review WORK --apply "
        f"{esc(csv_name)}</code>. Every row left in the file counts as checked by a person; "
        "blank the <code>background</code> of rows you did not check.</p>"
        "<table><tr><th>image</th><th>image_id</th><th>class</th><th>why</th>"
        "<th>background (guess)</th><th>confidence</th><th>tagger's top words</th></tr>"
        + "\n".join(rows)
        + "</table></body></html>\n"
    )


def read_review(path: str | Path) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise DatasetError(f"Could not read review file {path}: {e}") from None
    missing = {"image_id", "background"} - set(df.columns)
    if missing:
        raise DatasetError(f"Review file {path} lacks columns {sorted(missing)}.")
    return df


def apply_review(
    dataset: ImageDataset, review: pd.DataFrame | str | Path
) -> tuple[ImageDataset, dict[str, int]]:
    """Apply a person's answers: labels become ``reviewed``; ``exclude=yes`` excludes the image.

    Returns the updated pool and counts (``labelled``, ``changed``, ``excluded``, ``blank``).
    """
    df = read_review(review) if not isinstance(review, pd.DataFrame) else review.astype(str)
    table = dataset.table.copy()
    position = {iid: i for i, iid in enumerate(table["image_id"])}
    unknown = sorted(set(df["image_id"]) - set(position))
    if unknown:
        raise DatasetError(
            f"{len(unknown)} reviewed images are not in the pool, e.g. {unknown[:3]}."
        )
    counts = {"labelled": 0, "changed": 0, "excluded": 0, "blank": 0}
    exclude = (
        df["exclude"].str.strip().str.lower().isin(_YES)
        if "exclude" in df.columns
        else pd.Series(False, index=df.index)
    )
    reviewed = np.zeros(len(table), dtype=bool)
    for iid, bg_raw, drop in zip(df["image_id"], df["background"], exclude, strict=True):
        i = position[iid]
        if drop:
            table.at[i, "excluded"] = EXCLUDED_IN_REVIEW
            counts["excluded"] += 1
            continue
        bg = normalize_background(bg_raw)
        if not bg:
            counts["blank"] += 1
            continue
        counts["changed"] += int(bg != table.at[i, "background"])
        table.at[i, "background"] = bg
        table.at[i, "background_source"] = REVIEWED
        reviewed[i] = True
        counts["labelled"] += 1
    table["flags"] = remove_flag(table["flags"], reviewed, LOW_CONFIDENCE)
    return with_table(dataset, table), counts
