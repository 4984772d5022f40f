"""Cleaning aids: unreadable files, exact and near duplicates, and likely label noise.

CounterAnimal's pool was cleaned by hand (Wang, Lin et al., NeurIPS 2024, §3: low-quality and
ambiguous photos removed). The mechanical part is automated here, and everything removed is
listed with its reason:

* **unreadable** files (truncated, not an image, a decompression bomb) are dropped, with the
  decoder's message — the same defensive decoder as evaluation (:func:`load_rgb`);
* **exact duplicates** (same SHA-256 of the bytes) and **near duplicates** (perceptual hash
  within a Hamming distance, e.g. the same photo re-encoded or resized) are dropped, keeping the
  first by image id; a duplicate group spanning several classes flags the kept image
  ``label_conflict``. Duplicates matter more than usual here: a photo counted twice in a small
  counter group moves its accuracy by a full image and can decide which background is selected.
  The perceptual hash is ``imagehash.phash`` (DCT hash of the 32×32 grey image, 64 bits; the
  maintained implementation of Zauner's pHash). Near pairs are found by the pigeonhole principle
  — two hashes within distance d agree exactly on at least one of d + 1 bit blocks — so the
  search does not compare all pairs of a large pool;
* **likely label noise** (no reference model ranks the labelled class in its top k) is only
  *flagged* for review, never removed: such images are disproportionately the hard, unusual
  photos — exactly the counter-background ones a spurious benchmark is about — so removing them
  automatically would bias the benchmark towards what the reference models already get right.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from spurbench.curate.pool import LABEL_CONFLICT, LABEL_NOISE, add_flag, with_table
from spurbench.curate.scoring import Predictions
from spurbench.data.dataset import ImageDataset
from spurbench.data.images import load_rgb
from spurbench.data.members import is_member, read_member
from spurbench.errors import SpurbenchError
from spurbench.progress import progress_bar

#: Default Hamming distance (of 64 pHash bits) at or below which two images are near duplicates.
NEAR_DISTANCE = 4
_HASH_BITS = 64
_CHUNK = 1 << 20


@dataclass
class CleaningReport:
    """The pool with ``excluded`` and ``flags`` updated, and what was found."""

    dataset: ImageDataset
    #: image_id, sha256, phash, error: one row per image
    files: pd.DataFrame
    #: image_id, class_name, reason, detail: every image this step excluded
    dropped: pd.DataFrame
    #: image_id, label, class_name, background, models: images flagged as likely label noise
    label_noise: pd.DataFrame
    config: dict[str, object] = field(default_factory=dict)

    def summary(self) -> dict[str, object]:
        return {
            **self.config,
            "n_images": len(self.files),
            "dropped": {str(k): int(v) for k, v in self.dropped["reason"].value_counts().items()},
            "label_noise_flagged": len(self.label_noise),
        }


def file_hashes(dataset: ImageDataset, *, show_progress: bool = False) -> pd.DataFrame:
    """SHA-256 of every file's bytes and pHash of its pixels ('' and an error when unreadable)."""
    try:
        import imagehash
    except ImportError:
        raise SpurbenchError(
            "Near-duplicate detection needs the 'imagehash' package: pip install imagehash."
        ) from None

    rows = []
    with progress_bar("hash images", total=len(dataset), enabled=show_progress) as bar:
        for image_id, path in zip(dataset.table["image_id"], dataset.table["path"], strict=True):
            sha, phash, error = "", "", ""
            try:
                sha = _sha256(path)
                phash = str(imagehash.phash(load_rgb(path)))
            except Exception as e:
                first = str(e).splitlines()[0] if str(e) else ""
                error = f"{type(e).__name__}: {first}"[:300]
            rows.append((image_id, sha, phash, error))
            bar.advance()
    return pd.DataFrame(rows, columns=["image_id", "sha256", "phash", "error"])


def _sha256(path: str) -> str:
    if is_member(path):  # an image inside a shard or Arrow file
        return hashlib.sha256(read_member(path)).hexdigest()
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def near_pairs(hashes: np.ndarray, max_distance: int) -> np.ndarray:
    """(m, 2) index pairs i < j with Hamming(hashes[i], hashes[j]) ≤ ``max_distance``.

    ``hashes`` are uint64. Pigeonhole: split the 64 bits into ``max_distance + 1`` blocks; a
    pair within the distance agrees on at least one whole block, so candidates are the pairs
    sharing a block value, verified with a popcount.
    """
    h = np.asarray(hashes, dtype=np.uint64)
    if not 0 <= max_distance < _HASH_BITS // 2:
        raise SpurbenchError(
            f"Near-duplicate distance must be in [0, 31] bits, not {max_distance}."
        )
    bounds = np.linspace(0, _HASH_BITS, max_distance + 2).astype(int)
    cand: list[np.ndarray] = []
    for lo, hi in pairwise(bounds):
        mask = np.uint64((1 << int(hi - lo)) - 1)
        key = (h >> np.uint64(lo)) & mask
        order = np.argsort(key, kind="stable")
        sorted_key = key[order]
        starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]])
        ends = np.r_[starts[1:], len(order)]
        for s, e in zip(starts, ends, strict=True):
            if e - s > 1:
                members = np.sort(order[s:e])
                i, j = np.triu_indices(e - s, k=1)
                cand.append(np.stack([members[i], members[j]], axis=1))
    if not cand:
        return np.zeros((0, 2), dtype=np.int64)
    pairs = np.unique(np.concatenate(cand), axis=0)
    dist = np.bitwise_count(h[pairs[:, 0]] ^ h[pairs[:, 1]])
    return pairs[dist <= max_distance]


def _groups(n: int, pairs: np.ndarray) -> np.ndarray:
    """Connected-component id of each of ``n`` items linked by ``pairs``."""
    if len(pairs) == 0:
        return np.arange(n)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def clean_pool(
    dataset: ImageDataset,
    *,
    near_distance: int | None = NEAR_DISTANCE,
    hashes: pd.DataFrame | None = None,
    show_progress: bool = False,
) -> CleaningReport:
    """Exclude unreadable files and duplicates (exact, and near when ``near_distance`` is set).

    Images already excluded stay excluded; of each duplicate group the image with the smallest
    image id is kept.
    """
    files = hashes if hashes is not None else file_hashes(dataset, show_progress=show_progress)
    table = dataset.table.copy()
    t = table.assign(**{c: files[c].to_numpy() for c in ("sha256", "phash", "error")})
    dropped: list[tuple[str, str, str, str]] = []

    def drop(i: int, reason: str, detail: str) -> None:
        table.at[i, "excluded"] = f"{reason}: {detail}" if detail else reason
        dropped.append((t.at[i, "image_id"], t.at[i, "class_name"], reason, detail))

    for i in np.flatnonzero((t["error"] != "") & (t["excluded"] == "")):
        drop(int(i), "unreadable", t.at[i, "error"])
    live = np.flatnonzero((t["error"] == "") & (table["excluded"] == ""))
    live = live[np.argsort(t["image_id"].to_numpy()[live], kind="stable")]
    conflict = np.zeros(len(t), dtype=bool)
    for kind, key in (("exact duplicate", "sha256"), ("near duplicate", "phash")):
        if kind == "near duplicate" and near_distance is None:
            continue
        if kind == "exact duplicate":
            group = pd.factorize(t[key].to_numpy()[live])[0]
        else:
            values = np.array([int(v, 16) for v in t[key].to_numpy()[live]], dtype=np.uint64)
            group = _groups(len(live), near_pairs(values, near_distance))
        keep = []
        for g in np.unique(group):
            members = live[group == g]  # in image-id order: the first is kept
            first = int(members[0])
            keep.append(first)
            if len(members) > 1 and t.loc[members, "label"].nunique() > 1:
                conflict[first] = True
            for m in members[1:]:
                drop(int(m), kind, f"of {t.at[first, 'image_id']}")
        live = np.sort(np.array(keep, dtype=int))
        live = live[np.argsort(t["image_id"].to_numpy()[live], kind="stable")]
    table["flags"] = add_flag(table["flags"], conflict, LABEL_CONFLICT)
    return CleaningReport(
        with_table(dataset, table),
        files,
        pd.DataFrame(dropped, columns=["image_id", "class_name", "reason", "detail"]),
        pd.DataFrame(columns=["image_id", "label", "class_name", "background", "models"]),
        {"near_distance": near_distance, "phash": "imagehash.phash (64 bits)"},
    )


def flag_label_noise(
    dataset: ImageDataset, predictions: Sequence[Predictions], k: int = 5
) -> tuple[ImageDataset, pd.DataFrame]:
    """Flag images whose label no reference model ranks in its top ``k`` (at most 5).

    An image is judged only by the models that could read it; flagged images stay in the
    pool with the ``label_noise`` flag and go to the review file.
    """
    if not predictions:
        raise SpurbenchError("Flagging label noise needs at least one reference model.")
    if not 1 <= k <= 5:
        raise SpurbenchError(f"k must be between 1 and 5 (the runner keeps the top 5), not {k}.")
    ids = dataset.table["image_id"]
    in_some_top = np.zeros(len(ids), dtype=bool)
    seen = np.zeros(len(ids), dtype=bool)
    for pred in predictions:
        hit = pd.Series(
            [
                int(y) in list(top[:k])
                for y, top in zip(pred.table["label"], pred.table["topk_labels"], strict=True)
            ],
            index=pred.table["image_id"].to_numpy(),
        )
        found = ids.map(hit)
        seen |= found.notna().to_numpy()
        in_some_top |= found.fillna(False).astype(bool).to_numpy()
    flagged = seen & ~in_some_top & (dataset.table["excluded"] == "").to_numpy()
    table = dataset.table.copy()
    table["flags"] = add_flag(table["flags"], flagged, LABEL_NOISE)
    names = ", ".join(p.model for p in predictions)
    noise = table.loc[flagged, ["image_id", "label", "class_name", "background"]].assign(
        models=names, k=k
    )
    return with_table(dataset, table), noise.reset_index(drop=True)
