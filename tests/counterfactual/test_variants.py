"""The variant builders against hand-made arrays, and the donor choice's rules."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spurbench.counterfactual import variants as V
from spurbench.counterfactual.build import choose_donors
from spurbench.counterfactual.masks import Mask, mask_status
from spurbench.errors import SpurbenchError


def _image() -> np.ndarray:
    """6x6: background rows coloured by row index (10*y), object pixels 200."""
    img = np.zeros((6, 6, 3), dtype=np.uint8)
    img[:] = (np.arange(6) * 10)[:, None, None]
    img[3:5, 1:4] = 200
    return img


def _mask() -> np.ndarray:
    m = np.zeros((6, 6))
    m[3:5, 1:4] = 1.0
    return m


def test_only_fg_and_no_fg_split_the_image():
    img, m = _image(), _mask()
    fg, nofg = V.only_fg(img, m), V.no_fg(img, m)
    assert (fg[3:5, 1:4] == 200).all() and fg[m == 0].max() == 0
    assert nofg[m == 1].max() == 0 and (nofg[m == 0] == img[m == 0]).all()
    assert ((fg.astype(int) + nofg) == img).all()


def test_soft_edges_blend():
    img, m = _image(), _mask()
    m[3, 1] = 0.5
    bg = np.full_like(img, 100)
    assert V.paste(img, m, bg)[3, 1, 0] == 150  # half object (200), half background (100)
    assert (V.paste(img, m, bg)[m == 0] == 100).all()


def test_bounding_box_is_half_open():
    assert V.bounding_box(_mask()) == (3, 5, 1, 4)
    with pytest.raises(ValueError):
        V.bounding_box(np.zeros((3, 3)))


def test_only_bg_tiles_the_largest_strip_in_phase():
    img, m = _image(), _mask()
    out = V.only_bg(img, m, "tile")
    # the largest strip is the top one (rows 0-2, 18 px); rows 3, 4 continue its phase: rows 0, 1
    assert (out[3, 1:4] == 0).all() and (out[4, 1:4] == 10).all()
    assert (out[m == 0] == img[m == 0]).all() and out.max() < 200


def test_only_bg_black_and_whole_image_box():
    img, m = _image(), _mask()
    assert (V.only_bg(img, m, "black")[3:5, 1:4] == 0).all()
    full = np.ones((6, 6))
    assert (V.only_bg(img, full, "tile") == np.round(img.reshape(-1, 3).mean(0))).all()
    with pytest.raises(SpurbenchError, match="Unknown fill"):
        V.only_bg(img, m, "inpaint")


def test_paste_needs_same_size():
    with pytest.raises(ValueError):
        V.paste(_image(), _mask(), np.zeros((5, 6, 3), np.uint8))


@pytest.mark.parametrize(
    ("area", "status"), [(0, "too_small"), (0.005, "too_small"), (0.5, "ok"), (0.95, "too_large")]
)
def test_mask_guard(area, status):
    m = np.zeros(1000)
    m[: round(area * 1000)] = 1
    assert mask_status(Mask(m.reshape(20, 50), "user")) == status
    assert mask_status(None) == "missing"


def _pool() -> pd.DataFrame:
    rows = [(f"{c}/{g}/{i}", c, g) for c in (1, 5, 7) for g in ("common", "counter")
            for i in range(3)]  # fmt: skip
    return pd.DataFrame(rows, columns=["image_id", "label", "group"])


def test_donors_follow_the_rules_and_the_seed():
    table = _pool()
    d = choose_donors(table, seed=0)
    label = dict(zip(table["image_id"], table["label"], strict=True))
    group = dict(zip(table["image_id"], table["group"], strict=True))
    for r in d.itertuples():
        own, other = label[r.image_id], label[r.donor_id]
        assert r.donor_id != r.image_id
        if r.variant in (V.MIXED_SAME, V.MIXED_RAND, V.MIXED_NEXT):
            assert group[r.donor_id] == "common"  # a class's backgrounds are its common ones
        if r.variant == V.MIXED_SAME:
            assert other == own
        elif r.variant == V.MIXED_RAND:
            assert other != own
        elif r.variant == V.MIXED_NEXT:
            assert other == {1: 5, 5: 7, 7: 1}[own]
        elif r.variant == V.SWAP_TO_COMMON:
            assert other == own and group[r.image_id] == "counter" and group[r.donor_id] == "common"
        else:
            assert r.variant == V.SWAP_TO_COUNTER
            assert other == own and group[r.image_id] == "common" and group[r.donor_id] == "counter"
    # every image gets 3 mixed variants and exactly one swap
    assert (d.groupby("image_id").size() == 4).all()
    # deterministic, independent of row order, and the seed matters
    shuffled = choose_donors(table.sample(frac=1, random_state=3), seed=0)
    key = ["image_id", "variant"]
    pd.testing.assert_frame_equal(
        d.sort_values(key).reset_index(drop=True), shuffled.sort_values(key).reset_index(drop=True)
    )
    assert (
        not choose_donors(table, seed=1)
        .sort_values(key)["donor_id"]
        .reset_index(drop=True)
        .equals(d.sort_values(key)["donor_id"].reset_index(drop=True))
    )
