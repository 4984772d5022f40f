"""Variant images are a cache: built once, reused, rebuilt when a file is empty."""

from __future__ import annotations

import os
from pathlib import Path

from spurbench.counterfactual.run import variants_for
from spurbench.synth.world import WorldConfig, generate_world

SMALL = WorldConfig(n_classes=3, n_backgrounds=3, n_train_per_class=2, n_test_per_cell=2)


def test_rerun_reuses_variants_and_rebuilds_empty_ones(tmp_path):
    world = generate_world(SMALL, tmp_path / "world")
    first = variants_for(world.counteranimal_root, cache_dir=tmp_path / "c")
    built = first.dataset.table[first.dataset.table["variant"] != "original"]
    content = {p: Path(p).read_bytes() for p in built["path"]}
    assert len(content) == len(built)  # one file per variant image (distinct keys)
    victim = built["path"].iloc[0]
    open(victim, "wb").close()  # what a power cut can leave behind an unsynced rename
    stamps = {p: os.stat(p).st_mtime_ns for p in content if p != victim}
    again = variants_for(world.counteranimal_root, cache_dir=tmp_path / "c")
    assert again.dataset.table["path"].tolist() == first.dataset.table["path"].tolist()
    assert Path(victim).read_bytes() == content[victim]  # rebuilt, same pixels
    assert all(os.stat(p).st_mtime_ns == t for p, t in stamps.items())
