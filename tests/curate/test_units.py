"""Curation building blocks without models: labels, review files, hashing, the selection rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spurbench.curate import (
    MANUAL,
    REVIEWED,
    DiscoveryConfig,
    apply_labels,
    apply_review,
    load_pool,
    read_vocabulary,
    review_table,
    select_pairs,
    write_labels,
    write_review,
)
from spurbench.curate.cleaning import flag_label_noise, near_pairs
from spurbench.curate.discovery import cell_accuracy, pair_drops, selection_bias
from spurbench.curate.pool import LOW_CONFIDENCE, add_flag, read_labels, with_table
from spurbench.curate.scoring import Predictions
from spurbench.curate.tagging import PAPER_BACKGROUNDS, prompt_templates
from spurbench.errors import DatasetError, SpurbenchError
from spurbench.evaluate.metrics import clopper_pearson
from tests.conftest import write_image


def _manifest_pool(tmp_path: Path, with_background: bool = True) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for c in ("heron", "otter"):
        for bg in ("water", "grass"):
            for i in range(3):
                rel = f"img/{c}/{bg}/{i}.png"
                write_image(tmp_path / rel, rng, size=24)
                rows.append({"path": rel, "label": c, "habitat": bg.upper() if i == 0 else bg})
    df = pd.DataFrame(rows)
    if not with_background:
        df = df.drop(columns="habitat")
    df.to_csv(tmp_path / "pool.csv", index=False)
    return tmp_path / "pool.csv"


def test_pool_labels_from_column_are_manual_and_normalised(tmp_path: Path) -> None:
    pool = load_pool(_manifest_pool(tmp_path), background_column="habitat")
    t = pool.table
    assert set(t["background"]) == {"water", "grass"}  # 'WATER' normalised
    assert (t["background_source"] == MANUAL).all()
    assert (t["excluded"] == "").all()
    ignored = load_pool(tmp_path / "pool.csv", background_column=None)
    assert (ignored.table["background"] == "").all()
    assert (ignored.table["background_source"] == "").all()
    with pytest.raises(DatasetError, match="no background column"):
        load_pool(tmp_path / "pool.csv", background_column="nope")


def test_labels_file_overrides_and_round_trips(tmp_path: Path) -> None:
    pool = load_pool(_manifest_pool(tmp_path, with_background=False))
    assert (pool.table["background"] == "").all()
    ids = pool.table["image_id"].tolist()
    edited = pd.DataFrame({"image_id": ids[:2], "background": ["Sand", "rock"]})
    edited.to_csv(tmp_path / "labels.csv", index=False)
    pool = load_pool(tmp_path / "pool.csv", labels=tmp_path / "labels.csv")
    assert pool.table["background"].tolist()[:3] == ["sand", "rock", ""]
    assert pool.table["background_source"].tolist()[:3] == [MANUAL, MANUAL, ""]
    write_labels(pool, tmp_path / "state.csv")
    again = apply_labels(load_pool(tmp_path / "pool.csv"), read_labels(tmp_path / "state.csv"))
    cols = ["image_id", "background", "background_source", "excluded", "flags"]
    assert again.table[cols].equals(pool.table[cols])
    with pytest.raises(DatasetError, match="not in the pool"):
        apply_labels(pool, pd.DataFrame({"image_id": ["ghost.png"], "background": ["sky"]}))


def test_review_round_trip(tmp_path: Path) -> None:
    """Edit the review CSV, feed it back: labels updated and marked reviewed, excludes kept."""
    pool = load_pool(_manifest_pool(tmp_path, with_background=False))
    t = pool.table.copy()
    t["background_suggestion"] = "water"
    t["background_confidence"] = 0.3
    t["flags"] = add_flag(t["flags"], np.ones(len(t), bool), LOW_CONFIDENCE)
    pool = with_table(pool, t)
    table = review_table(pool)
    assert len(table) == len(t) and (table["background"] == "water").all()
    write_review(table, pool, tmp_path / "review.csv", tmp_path / "review.html")
    page = (tmp_path / "review.html").read_text()
    assert page.count("data:image/jpeg;base64,") == len(t)  # self-contained thumbnails
    assert 'src="http' not in page and "<script" not in page

    edited = pd.read_csv(tmp_path / "review.csv", dtype=str, keep_default_na=False)
    edited.loc[0, "background"] = "Grass"  # a correction
    edited.loc[1, "exclude"] = "yes"  # not a usable photo
    edited.loc[2, "background"] = ""  # not checked: stays unlabelled
    edited.to_csv(tmp_path / "review.csv", index=False)
    updated, counts = apply_review(pool, tmp_path / "review.csv")
    assert counts == {"labelled": len(t) - 2, "changed": len(t) - 2, "excluded": 1, "blank": 1}
    u = updated.table.set_index("image_id")
    first, second, third = edited["image_id"][:3]
    assert u.loc[first, "background"] == "grass"
    assert u.loc[first, "background_source"] == REVIEWED
    assert LOW_CONFIDENCE not in u.loc[first, "flags"]
    assert u.loc[second, "excluded"] == "excluded in review"
    assert u.loc[third, "background"] == "" and LOW_CONFIDENCE in u.loc[third, "flags"]
    # what is left to review: only the blank row
    assert review_table(updated)["image_id"].tolist() == [third]


def test_vocabulary_and_prompts(tmp_path: Path) -> None:
    assert read_vocabulary("paper") == PAPER_BACKGROUNDS and len(PAPER_BACKGROUNDS) == 14
    assert read_vocabulary("Snow, grass ,snow") == ("snow", "grass")
    (tmp_path / "v.txt").write_text("# mine\nreef\nopen sea\n")
    assert read_vocabulary(tmp_path / "v.txt") == ("reef", "open sea")
    assert prompt_templates(["a photo of {bg}.", "{c} in the background"]) == (
        "a photo of {c}.",
        "{c} in the background",
    )
    with pytest.raises(SpurbenchError):
        prompt_templates(["no placeholder"])
    with pytest.raises(SpurbenchError):
        read_vocabulary("only-one")


def test_near_pairs_match_brute_force() -> None:
    rng = np.random.default_rng(1)
    base = rng.integers(0, 2**63, size=300, dtype=np.int64).astype(np.uint64)
    flips = [np.uint64(1 << int(b)) for b in rng.integers(0, 64, size=6)]
    near = base[:5] ^ flips[0] ^ flips[1] ^ flips[2]  # within 3 bits of the first five
    hashes = np.concatenate([base, near])
    for d in (0, 3, 6):
        got = {tuple(p) for p in near_pairs(hashes, d).tolist()}
        x = hashes[:, None] ^ hashes[None, :]
        dist = np.bitwise_count(x)
        i, j = np.nonzero(np.triu(dist <= d, k=1))
        assert got == set(zip(i.tolist(), j.tolist(), strict=True))
    assert len(near_pairs(hashes, 3)) >= 5


def _cells(model: str, acc: dict[tuple[int, str], tuple[int, int]]) -> pd.DataFrame:
    """Cells from {(label, background): (correct, n)}."""
    labels = np.array([k[0] for k in acc])
    bgs = np.array([k[1] for k in acc])
    k = np.array([v[0] for v in acc.values()])
    n = np.array([v[1] for v in acc.values()])
    lo, hi = clopper_pearson(k, n)
    return pd.DataFrame(
        {"model": model, "role": "reference", "label": labels,
         "class_name": [f"class{y}" for y in labels], "background": bgs, "n": n, "correct": k,
         "accuracy": k / n, "ci_low": lo, "ci_high": hi}
    )  # fmt: skip


def test_selection_rule() -> None:
    cells = _cells(
        "A",
        {
            (0, "snow"): (19, 20), (0, "grass"): (10, 20), (0, "sand"): (1, 3),  # sand too small
            (1, "snow"): (15, 20), (1, "water"): (15, 20), (1, "rock"): (14, 20),  # 5 points
            (2, "sky"): (12, 20), (2, "road"): (10, 20),  # 10 points, intervals overlap
            (3, "tree"): (20, 20),  # one background only
        },
    )  # fmt: skip
    sel = select_pairs(cells, ["A"], DiscoveryConfig(min_group_size=5), {4: "class4"})
    s = sel.set_index("label")
    assert (s.loc[0, "common"], s.loc[0, "counter"]) == ("snow", "grass") and s.loc[0, "kept"]
    assert s.loc[0, "ci_separated"]
    assert not s.loc[1, "kept"] and "≤ 5 points" in s.loc[1, "reason"]  # needs *more* than 5
    assert s.loc[2, "kept"] and not s.loc[2, "ci_separated"]
    assert not s.loc[3, "kept"] and "fewer than 2" in s.loc[3, "reason"]
    assert not s.loc[4, "kept"] and s.loc[4, "reason"] == "no labelled images"
    strict = select_pairs(
        cells, ["A"], DiscoveryConfig(min_group_size=5, require_ci_separation=True)
    )
    assert strict.set_index("label")["kept"].to_dict() == {0: True, 1: False, 2: False, 3: False}
    paper = select_pairs(cells, ["A"], DiscoveryConfig(min_group_size=1)).set_index("label")
    assert paper.loc[0, "counter"] == "sand"  # 1 of 3: the paper's rule has no minimum size


def test_several_references_average_and_bias() -> None:
    a = _cells("A", {(0, "snow"): (20, 20), (0, "grass"): (8, 20), (0, "sand"): (14, 20)})
    b = _cells("B", {(0, "snow"): (16, 20), (0, "grass"): (16, 20), (0, "sand"): (6, 20)})
    h = _cells("H", {(0, "snow"): (18, 20), (0, "grass"): (18, 20), (0, "sand"): (17, 20)})
    h["role"] = "held_out"
    cells = pd.concat([a, b, h], ignore_index=True)
    sel = select_pairs(cells, ["A", "B"], DiscoveryConfig()).set_index("label")
    # mean accuracy: snow 0.9, grass 0.6, sand 0.5 -> counter is sand although A alone says grass
    assert (sel.loc[0, "common"], sel.loc[0, "counter"]) == ("snow", "sand")
    assert sel.loc[0, "gap"] == pytest.approx(0.4)
    bias = selection_bias(pair_drops(cells, sel.reset_index())).set_index("model")
    assert bias.loc["A", "drop"] == pytest.approx(0.3)
    assert bias.loc["B", "drop"] == pytest.approx(0.5)
    assert bias.loc["H", "drop"] == pytest.approx(0.05)
    assert bias.loc["H", "selection_bias"] == pytest.approx(0.4 - 0.05)


def test_cell_accuracy_uses_exact_intervals() -> None:
    df = cell_accuracy(np.array([1, 1, 1, 2]), np.array(["a", "a", "b", "a"]),
                       np.array([True, False, True, True]))  # fmt: skip
    row = df[(df["label"] == 1) & (df["background"] == "a")].iloc[0]
    lo, hi = clopper_pearson(1, 2)
    assert (row["n"], row["correct"], row["accuracy"]) == (2, 1, 0.5)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((float(lo), float(hi)))


def test_label_noise_is_flagged_not_removed(tmp_path: Path) -> None:
    pool = load_pool(_manifest_pool(tmp_path), background_column="habitat")
    ids = pool.table["image_id"].tolist()
    y = pool.table["label"].tolist()
    other = [1 - v for v in y]

    def preds(name: str, hits: set[int]) -> Predictions:
        top = [[v, 7, 8, 9, 10] if i in hits else [o, 7, 8, 9, 10] for i, (v, o) in
               enumerate(zip(y, other, strict=True))]  # fmt: skip
        table = pd.DataFrame({"image_id": ids, "label": y, "topk_labels": top})
        return Predictions(name, name, "1vN", table, pd.DataFrame())

    # image 0: no model has its label in the top 5 -> flagged; image 1: one model does -> not
    a, b = preds("A", set(range(1, len(ids)))), preds("B", {1})
    flagged, noise = flag_label_noise(pool, [a, b], k=5)
    assert noise["image_id"].tolist() == [ids[0]]
    t = flagged.table
    assert t.loc[0, "flags"] == "label_noise" and (t["excluded"] == "").all()
    assert review_table(flagged)["reason"].tolist() == ["label_noise"]
    # top-1 is stricter: with k=1 image 0 stays flagged, and so do the images where the label
    # is not first for any model
    _, strict = flag_label_noise(pool, [preds("A", set())], k=1)
    assert len(strict) == len(ids)
