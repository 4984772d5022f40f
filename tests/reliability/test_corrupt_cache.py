"""A damaged cache entry (a truncated head file) is rebuilt, never trusted and never fatal."""

from __future__ import annotations

import numpy as np

from spurbench.data.classes import PAPER_TEMPLATES, imagenet_classes
from spurbench.heads.cached import head_for


def test_truncated_head_cache_is_rebuilt(tmp_path, tiny_model):
    classes = imagenet_classes().subset(range(5))
    first = head_for(tiny_model, classes, PAPER_TEMPLATES, tmp_path)
    (entry,) = (tmp_path / "heads").glob("*.npz")
    entry.write_bytes(entry.read_bytes()[:40])  # a zip cut short: np.load raises BadZipFile
    again = head_for(tiny_model, classes, PAPER_TEMPLATES, tmp_path)
    np.testing.assert_array_equal(again.weight, first.weight)
    with np.load(entry) as z:  # and the entry was rewritten whole
        np.testing.assert_array_equal(z["weight"], first.weight)
