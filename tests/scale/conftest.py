"""Shared set-up of the Ray backend tests: one small dataset, its local-backend reference, and
the checks every Ray run must pass (same features, same results, one run per protocol).

The dataset has 54 images cut into shards of 16 rows (batches of 8): four work units, the last
one short, so the tests exercise several units per worker and a ragged tail.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from spurbench.data.layouts import open_dataset
from spurbench.evaluate import RunResult, evaluate
from spurbench.features.cache import FeatureSet, encode_dataset
from spurbench.features.ray_backend import unit_id
from spurbench.models import create_model
from spurbench.store import ResultsStore
from tests.conftest import make_counteranimal

BATCH = 8
SHARD_ROWS = 16
N_IMAGES = 54  # 3 classes x (10 common + 8 counter)
SHARDS = [(0, 16), (16, 32), (32, 48), (48, 54)]
PROTOCOLS = ("1v1000", "1vN")
#: Environment of every Ray process the tests start: no token auth, no usage stats upload.
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with ``n`` torch threads: CPU matmuls change their last bits with the thread count,
    so the local reference uses the Ray workers' count (1) to be comparable bit for bit."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _small_shards(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPURBENCH_SHARD_ROWS", str(SHARD_ROWS))


@pytest.fixture(scope="session")
def scale_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("scale") / "CounterAnimal"
    return make_counteranimal(root, n_common=10, n_counter=8)


@pytest.fixture(scope="session")
def model_name(tiny_clip_dir: Path) -> str:
    return f"local-dir:{tiny_clip_dir}"


@dataclass
class Reference:
    """What the local backend produced: the bar every Ray run is held to."""

    results: list[RunResult]
    features: FeatureSet
    cache: Path
    store: Path


def run_eval(model_name: str, data: Path, tmp: Path, **kw: object) -> list[RunResult]:
    """``evaluate`` as every test here calls it, writing ``tmp``/store.duckdb and ``tmp``/cache."""
    return evaluate(
        model_name,
        data,
        PROTOCOLS,
        store=tmp / "store.duckdb",
        cache_dir=tmp / "cache",
        batch_size=BATCH,
        n_boot=100,
        show_progress=False,
        **kw,
    )


@pytest.fixture(scope="session")
def local_reference(
    model_name: str, scale_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> Reference:
    tmp = tmp_path_factory.mktemp("local")
    with pytest.MonkeyPatch.context() as mp, torch_threads(1):
        mp.setenv("SPURBENCH_SHARD_ROWS", str(SHARD_ROWS))
        results = run_eval(model_name, scale_data, tmp)
        features = cached_features(model_name, scale_data, tmp / "cache")
    assert len(sorted((tmp / "cache" / "features").glob("*/shard-*.npz"))) == len(SHARDS)
    return Reference(results, features, tmp / "cache", tmp / "store.duckdb")


def cached_features(model_name: str, data: Path, cache: Path) -> FeatureSet:
    """The features in ``cache``, failing if any shard is missing (the encoder must not run)."""

    def refuse(units: object, bar: object) -> Iterator[tuple[int, object]]:
        raise AssertionError(f"shards missing from the cache: {units}")

    return encode_dataset(
        create_model(model_name),
        open_dataset(data),
        cache,
        batch_size=BATCH,
        show_progress=False,
        shard_encoder=refuse,
    )


def assert_same_features(got: FeatureSet, want: FeatureSet) -> None:
    assert got.key == want.key
    assert got.pre_head.dtype == want.pre_head.dtype and got.pre_head.shape == want.pre_head.shape
    assert np.array_equal(got.pre_head, want.pre_head), "pre-head features differ"
    assert np.array_equal(got.embedding, want.embedding), "embeddings differ"
    assert got.errors == want.errors and np.array_equal(got.ok, want.ok)


def assert_same_results(got: list[RunResult], want: list[RunResult]) -> None:
    assert [r.run_id for r in got] == [r.run_id for r in want]
    for g, w in zip(got, want, strict=True):
        pd.testing.assert_frame_equal(g.summary, w.summary)
        pd.testing.assert_frame_equal(g.per_class, w.per_class)
        assert_same_predictions(g.predictions, w.predictions)


def assert_same_predictions(got: pd.DataFrame, want: pd.DataFrame) -> None:
    arrays = ["topk_labels", "topk_scores"]
    pd.testing.assert_frame_equal(got.drop(columns=arrays), want.drop(columns=arrays))
    for col in arrays:
        assert np.array_equal(np.stack(got[col]), np.stack(want[col])), col


def assert_one_run_per_protocol(store: Path) -> None:
    """Exactly one run per protocol, each with one prediction row per image."""
    rs = ResultsStore(store)
    runs = rs.runs()
    assert sorted(runs.protocol) == sorted(PROTOCOLS)
    counts = rs.query(
        "SELECT run_id, count(*) AS n, count(DISTINCT image_id) AS ids FROM predictions "
        "GROUP BY run_id"
    )
    assert sorted(counts.run_id) == sorted(runs.run_id)
    assert (counts.n == N_IMAGES).all() and (counts.ids == N_IMAGES).all()


def units_done(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    """(unit id, node id) of every unit the Ray backend received, from its debug log."""
    pattern = re.compile(r"Ray: unit (\S+) done on node (\S+)")
    return [
        m.groups()
        for r in caplog.records
        if r.name == "spurbench.features.ray_backend" and (m := pattern.match(r.getMessage()))
    ]


def all_unit_ids(key: str, shards: list[tuple[int, int]] = SHARDS) -> list[str]:
    return sorted(unit_id(key, rows) for rows in shards)


@pytest.fixture()
def ray_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="spurbench.features.ray_backend")
    return caplog


def ray_env() -> dict[str, str]:
    return {**os.environ, **RAY_ENV}
