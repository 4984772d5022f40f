"""The feature cache: a second run never calls the image encoder; partial runs resume."""

from __future__ import annotations

import numpy as np
import pytest

from spurbench.data.layouts import open_dataset
from spurbench.evaluate import evaluate
from spurbench.features.cache import encode_dataset, feature_key
from spurbench.models import create_model


class CountingAdapter:
    """Wrap an adapter's encode_images with a call counter (the adapter stays the real one)."""

    def __init__(self, adapter):
        self.adapter, self.calls, self.images = adapter, 0, 0
        original = adapter.encode_images

        def counted(x):
            self.calls += 1
            self.images += len(x)
            return original(x)

        adapter.encode_images = counted


@pytest.fixture()
def model(tiny_clip_dir):
    return create_model(f"local-dir:{tiny_clip_dir}")


def test_cached_second_run_and_other_protocols_do_not_encode(model, counteranimal_dir, tmp_path):
    counter = CountingAdapter(model)
    kw = dict(cache_dir=tmp_path / "cache", show_progress=False, batch_size=8, n_boot=100)
    first = evaluate(model, counteranimal_dir, ["1v1000"], **kw)
    assert counter.calls > 0 and counter.images == 27
    counter.calls = 0
    again = evaluate(model, counteranimal_dir, ["1v1000", "1v20", "1vN"], reference="self", **kw)
    assert counter.calls == 0
    pd_a, pd_b = first[0].predictions, again[0].predictions
    assert (np.stack(pd_a.topk_labels) == np.stack(pd_b.topk_labels)).all()


def test_interrupted_encoding_resumes_from_complete_shards(model, counteranimal_dir, tmp_path):
    ds = open_dataset(counteranimal_dir)
    full = encode_dataset(
        model, ds, tmp_path / "a", batch_size=4, shard_rows=8, show_progress=False
    )
    # Simulate a kill after two shards: keep shards 0 and 1 of a fresh cache, drop the rest.
    partial = encode_dataset(
        model, ds, tmp_path / "b", batch_size=4, shard_rows=8, show_progress=False
    )
    folder = tmp_path / "b" / "features" / feature_key(model, ds)
    shards = sorted(folder.glob("shard-*.npz"))
    assert len(shards) == 4
    for s in shards[2:]:
        s.unlink()
    shards[1].write_bytes(b"truncated")  # a torn write is recomputed, never trusted
    counter = CountingAdapter(model)
    resumed = encode_dataset(
        model, ds, tmp_path / "b", batch_size=4, shard_rows=8, show_progress=False
    )
    assert counter.images == len(ds) - 8  # shard 0 reused, shards 1-3 recomputed
    np.testing.assert_array_equal(resumed.embedding, full.embedding)
    np.testing.assert_array_equal(partial.embedding, full.embedding)


def test_unreadable_images_are_skipped_and_recorded(model, counteranimal_dir, tmp_path):
    bad = counteranimal_dir / "9 ostrich" / "common-ground"
    (bad / "000.png").write_bytes(b"")  # zero bytes
    (bad / "001.png").write_bytes(b"not an image at all")
    good = (bad / "002.png").read_bytes()
    (bad / "003.png").write_bytes(good[: len(good) // 3])  # truncated
    res = evaluate(
        model,
        counteranimal_dir,
        ["1v1000"],
        cache_dir=tmp_path / "c",
        show_progress=False,
        n_boot=50,
    )[0]
    assert sorted(res.skipped.image_id) == [f"9 ostrich/common-ground/00{i}.png" for i in (0, 1, 3)]
    assert all(r for r in res.skipped.reason)
    assert len(res.predictions) == 27 - 3
