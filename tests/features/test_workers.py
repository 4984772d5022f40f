"""Decode workers change how fast features come, never what they are."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from spurbench.data.layouts import open_dataset
from spurbench.errors import SpurbenchError
from spurbench.features import cache as C
from spurbench.models import create_model


@pytest.fixture()
def model(tiny_clip_dir):
    return create_model(f"local-dir:{tiny_clip_dir}")


def _encode(model, ds, cache, workers):
    return C.encode_dataset(
        model, ds, cache, batch_size=4, shard_rows=8, decode_workers=workers, show_progress=False
    )


def test_workers_give_bit_identical_features(model, counteranimal_dir, tmp_path):
    ds = open_dataset(counteranimal_dir)
    inline = _encode(model, ds, tmp_path / "a", 0)
    parallel = _encode(model, ds, tmp_path / "b", 2)
    np.testing.assert_array_equal(parallel.pre_head, inline.pre_head)
    np.testing.assert_array_equal(parallel.embedding, inline.embedding)
    assert parallel.errors == inline.errors and len(parallel.errors) == len(ds)
    # the same shards land in the cache, whichever way they were computed
    key = C.feature_key(model, ds)
    names = sorted(p.name for p in (tmp_path / "a" / "features" / key).glob("shard-*.npz"))
    assert names == sorted(p.name for p in (tmp_path / "b" / "features" / key).glob("*.npz"))


def test_inline_decoding_restores_the_torch_thread_count(model, counteranimal_dir, tmp_path):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        _encode(model, open_dataset(counteranimal_dir), tmp_path, 0)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_workers_that_cannot_start_fall_back_to_the_main_process(
    model, counteranimal_dir, tmp_path, monkeypatch
):
    ds = open_dataset(counteranimal_dir)
    expected = _encode(model, ds, tmp_path / "ref", 0)

    def no_workers(self, *args, **kwargs):
        self._shutdown = True  # what the real one has set when its worker start fails
        raise OSError("Cannot allocate memory (fork)")

    monkeypatch.setattr(
        torch.utils.data.dataloader._MultiProcessingDataLoaderIter, "__init__", no_workers
    )
    with pytest.warns(RuntimeWarning, match="decoding the remaining images in the main process"):
        got = _encode(model, ds, tmp_path / "fallback", 2)
    np.testing.assert_array_equal(got.embedding, expected.embedding)


def test_a_worker_dying_mid_run_keeps_finished_shards_and_redoes_the_rest(
    model, counteranimal_dir, tmp_path, monkeypatch
):
    ds = open_dataset(counteranimal_dir)
    expected = _encode(model, ds, tmp_path / "ref", 0)
    real_next = torch.utils.data.dataloader._MultiProcessingDataLoaderIter.__next__
    served = {"n": 0}

    def dies_after_three(self):
        served["n"] += 1
        if served["n"] > 3:  # shard 0 (two batches) is done, shard 1 is half-way
            raise RuntimeError("DataLoader worker (pid 4242) is killed by signal: Killed.")
        return real_next(self)

    monkeypatch.setattr(
        torch.utils.data.dataloader._MultiProcessingDataLoaderIter, "__next__", dies_after_three
    )
    with pytest.warns(RuntimeWarning, match="killed by signal"):
        got = _encode(model, ds, tmp_path / "dies", 2)
    np.testing.assert_array_equal(got.embedding, expected.embedding)


def test_loader_errors_without_workers_are_raised(model, counteranimal_dir, tmp_path, monkeypatch):
    def broken(self, i):
        raise RuntimeError("broken decoder")

    monkeypatch.setattr(C.ImageFiles, "__getitem__", broken)
    with pytest.raises(RuntimeError, match="broken decoder"):
        _encode(model, open_dataset(counteranimal_dir), tmp_path, 0)


def test_without_workers_batches_are_decoded_on_every_core_between_forwards(
    model, counteranimal_dir, tmp_path, monkeypatch
):
    """The batch is decoded by one thread per torch thread, and never while the model runs:
    on CPU the forward has every core, so decoding beside it would only slow it down."""
    events: list[tuple[str, str]] = []
    real_getitem = C.ImageFiles.__getitem__
    real_encoder = C.image_encoder

    def getitem(self, i):
        events.append(("decode", threading.current_thread().name))
        return real_getitem(self, i)

    def encoder(m):
        encode = real_encoder(m)

        def timed(images):
            events.append(("forward start", ""))
            out = encode(images)
            events.append(("forward end", ""))
            return out

        return timed

    monkeypatch.setattr(C.ImageFiles, "__getitem__", getitem)
    monkeypatch.setattr(C, "image_encoder", encoder)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        _encode(model, open_dataset(counteranimal_dir), tmp_path, 0)
    finally:
        torch.set_num_threads(before)
    decoders = {name for kind, name in events if kind == "decode"}
    assert len(decoders) == 2 and threading.main_thread().name not in decoders
    inside = False
    for kind, _ in events:
        assert not (inside and kind == "decode"), "an image was decoded during a forward"
        inside = {"forward start": True, "forward end": False}.get(kind, inside)


def test_default_worker_count(monkeypatch):
    monkeypatch.delenv("SPURBENCH_WORKERS", raising=False)
    monkeypatch.setattr(C.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert C.default_decode_workers() == 0  # CPU: decoded between forwards, on every core
    assert C.default_decode_workers(gpu=True) == 3  # a GPU takes every decoder it can get
    monkeypatch.setattr(C.os, "sched_getaffinity", lambda pid: set(range(32)), raising=False)
    assert C.default_decode_workers() == 0 and C.default_decode_workers(gpu=True) == 8
    monkeypatch.setattr(C.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert C.default_decode_workers(gpu=True) == 0  # one core: nothing to decode beside it
    monkeypatch.setenv("SPURBENCH_WORKERS", "5")
    assert C.default_decode_workers() == 5
    monkeypatch.setenv("SPURBENCH_WORKERS", "many")
    with pytest.raises(SpurbenchError, match="SPURBENCH_WORKERS"):
        C.default_decode_workers()
