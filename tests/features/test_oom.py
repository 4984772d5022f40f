"""A batch too large for the GPU is encoded in parts instead of ending the run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spurbench.data.layouts import open_dataset
from spurbench.features import cache as C
from spurbench.models import create_model


@pytest.fixture()
def model(tiny_clip_dir):
    return create_model(f"local-dir:{tiny_clip_dir}")


def test_out_of_gpu_memory_halves_the_batch_and_keeps_every_row(
    model, counteranimal_dir, tmp_path, monkeypatch
):
    ds = open_dataset(counteranimal_dir)
    kw = dict(batch_size=8, decode_workers=0, show_progress=False)
    expected = C.encode_dataset(model, ds, tmp_path / "ref", **kw)
    real = C.image_encoder
    sizes: list[int] = []

    def small_gpu(m):
        encode = real(m)

        def fits_three(images):
            sizes.append(len(images))
            if len(images) > 3:  # what CUDA raises when the activations do not fit
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
            return encode(images)

        return fits_three

    monkeypatch.setattr(C, "image_encoder", small_gpu)
    with pytest.warns(RuntimeWarning, match="Out of GPU memory at 8 images") as warned:
        got = C.encode_dataset(model, ds, tmp_path / "oom", **kw)
    assert len(warned) == 2  # 8 -> 2 parts -> 4 parts, once for the whole pass
    assert max(sizes[2:]) <= 3 and sizes.count(8) == 1  # later batches start in parts
    np.testing.assert_allclose(got.embedding, expected.embedding, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.pre_head, expected.pre_head, rtol=1e-5, atol=1e-6)
    assert got.errors == expected.errors


def test_a_single_image_that_does_not_fit_is_the_error(
    model, counteranimal_dir, tmp_path, monkeypatch
):
    def never_fits(m):
        def encode(images):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory.")

        return encode

    monkeypatch.setattr(C, "image_encoder", never_fits)
    with pytest.warns(RuntimeWarning), pytest.raises(torch.cuda.OutOfMemoryError):
        C.encode_dataset(
            model,
            open_dataset(counteranimal_dir),
            tmp_path,
            batch_size=4,
            decode_workers=0,
            show_progress=False,
        )
