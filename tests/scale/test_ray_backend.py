"""The Ray backend gives the local backend's results exactly, once per unit, even when a worker
dies; the CLI reaches it. One small local Ray cluster serves the whole module."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import ray
from typer.testing import CliRunner

from spurbench.cli import app
from spurbench.errors import SpurbenchError
from spurbench.features.ray_backend import (
    RayShardEncoder,
    _require_ray_client,
    import_ray,
    release_workers,
    shard_encoder_for,
)
from spurbench.store import ResultsStore
from tests.scale import ray_crash
from tests.scale.conftest import (
    PROTOCOLS,
    RAY_ENV,
    SHARDS,
    Reference,
    all_unit_ids,
    assert_one_run_per_protocol,
    assert_same_features,
    assert_same_predictions,
    assert_same_results,
    cached_features,
    run_eval,
    units_done,
)


@pytest.fixture(scope="module")
def crash_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where a test arms the workers' crash hook (see tests/scale/ray_crash.py)."""
    return tmp_path_factory.mktemp("ray-crash")


@pytest.fixture(scope="module")
def ray_cluster(crash_folder: Path) -> Iterator[None]:
    ray.cloudpickle.register_pickle_by_value(ray_crash)  # workers need not import tests/
    with pytest.MonkeyPatch.context() as mp:
        for k, v in RAY_ENV.items():
            mp.setenv(k, v)
        if ray.is_initialized():
            ray.shutdown()
        ray.init(
            address="local",  # never a cluster some `ray start` left on this machine
            num_cpus=2,
            include_dashboard=False,
            object_store_memory=200 * 2**20,
            runtime_env={"worker_process_setup_hook": ray_crash.crash_once_hook(crash_folder)},
        )
        try:
            yield
        finally:
            release_workers()
            ray.shutdown()


def check_against_local(
    model_name: str, data: Path, tmp: Path, results: list, ref: Reference
) -> None:
    assert_same_results(results, ref.results)
    assert_same_features(cached_features(model_name, data, tmp / "cache"), ref.features)
    assert_one_run_per_protocol(tmp / "store.duckdb")


@pytest.mark.ray
def test_ray_equals_local(ray_cluster, model_name, scale_data, local_reference, tmp_path, ray_log):
    results = run_eval(model_name, scale_data, tmp_path, backend="ray")
    done = units_done(ray_log)
    assert sorted(u for u, _ in done) == all_unit_ids(local_reference.features.key)
    check_against_local(model_name, scale_data, tmp_path, results, local_reference)


@pytest.mark.ray
def test_rerun_after_partial_completion_encodes_only_missing_shards(
    ray_cluster, model_name, scale_data, local_reference, tmp_path, ray_log
):
    key = local_reference.features.key
    folder = tmp_path / "cache" / "features" / key
    folder.mkdir(parents=True)
    for i in (0, 2):  # a run that stopped after two shards (written by the local backend)
        name = f"shard-{i:05d}.npz"
        shutil.copy2(local_reference.cache / "features" / key / name, folder / name)
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.glob("shard-*")}

    run_eval(model_name, scale_data, tmp_path, backend="ray")
    assert sorted(u for u, _ in units_done(ray_log)) == all_unit_ids(key, [SHARDS[1], SHARDS[3]])
    for name, stat in before.items():  # present shards were neither re-sent nor rewritten
        assert ((folder / name).stat().st_ino, (folder / name).stat().st_mtime_ns) == stat
    assert len(list(folder.glob("shard-*.npz"))) == len(SHARDS)

    ray_log.clear()
    results = run_eval(model_name, scale_data, tmp_path, backend="ray")
    assert units_done(ray_log) == []  # complete: nothing sent again
    check_against_local(model_name, scale_data, tmp_path, results, local_reference)


@pytest.mark.ray
def test_killed_worker_unit_is_retried(
    ray_cluster, crash_folder, model_name, scale_data, local_reference, tmp_path, ray_log
):
    (crash_folder / "armed").touch()
    try:
        results = run_eval(model_name, scale_data, tmp_path, backend="ray")
    finally:
        (crash_folder / "armed").unlink()
    assert (crash_folder / "crashed").exists(), "no worker was killed: the test proves nothing"
    done = [u for u, _ in units_done(ray_log)]
    assert sorted(done) == all_unit_ids(local_reference.features.key)  # each unit once
    assert not list((tmp_path / "cache").rglob("*.tmp"))
    check_against_local(model_name, scale_data, tmp_path, results, local_reference)


@pytest.mark.ray
def test_cli_backend_ray(ray_cluster, model_name, scale_data, local_reference, tmp_path):
    store = tmp_path / "store.duckdb"
    args = ["eval", "-m", model_name, "-d", str(scale_data), "--protocol", ",".join(PROTOCOLS)]
    args += ["--backend", "ray", "--workers", "2", "--batch-size", "8", "-q"]
    args += ["--store", str(store), "--cache-dir", str(tmp_path / "cache")]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    assert_one_run_per_protocol(store)
    want = ResultsStore(local_reference.store)
    for run_id in want.runs().run_id:
        assert_same_predictions(ResultsStore(store).predictions(run_id), want.predictions(run_id))
    assert_same_features(
        cached_features(model_name, scale_data, tmp_path / "cache"), local_reference.features
    )


def test_cli_refuses_unknown_backend(model_name, scale_data):
    out = CliRunner().invoke(
        app, ["eval", "-m", model_name, "-d", str(scale_data), "--backend", "spark"]
    )
    assert out.exit_code == 2 and "spark" in out.output


def test_unknown_backend_named_in_error(model_name):
    with pytest.raises(SpurbenchError, match="local, ray"):
        shard_encoder_for("spark", None, None, batch_size=8)  # type: ignore[arg-type]
    with pytest.raises(SpurbenchError, match="needs backend='ray'"):
        shard_encoder_for("local", None, None, batch_size=8, address="auto")  # type: ignore[arg-type]


def test_missing_ray_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(SpurbenchError, match=r"pip install 'spurbench\[ray\]'"):
        import_ray()


def test_gpu_device_on_cpu_cluster_is_refused_not_hung():
    fake_ray = SimpleNamespace(cluster_resources=lambda: {"CPU": 2.0})
    encoder = RayShardEncoder(None, None, 8, device="cuda")  # type: ignore[arg-type]
    with pytest.raises(SpurbenchError, match="no GPU"):
        encoder._gpus_per_worker(fake_ray)
    assert RayShardEncoder(None, None, 8)._gpus_per_worker(fake_ray) == 0  # type: ignore[arg-type]


def test_pool_never_larger_than_the_cluster_fits():
    fake_ray = SimpleNamespace(cluster_resources=lambda: {"CPU": 2.0})
    encoder = RayShardEncoder(None, None, 8, workers=8)  # type: ignore[arg-type]
    assert encoder._pool_size(fake_ray, n_units=10, gpus=0) == 2
    assert encoder._pool_size(fake_ray, n_units=1, gpus=0) == 1


def test_shard_from_other_weights_is_refused():
    model = SimpleNamespace(name="m", fingerprint="driver-weights")
    encoder = RayShardEncoder(model, None, 8)  # type: ignore[arg-type]
    shard = (np.zeros((2, 3)), np.zeros((2, 3)), ["", ""])
    encoder._check(0, (0, 2), shard, "driver-weights", {0: (0, 2)})
    with pytest.raises(SpurbenchError, match="other weights"):
        encoder._check(0, (0, 2), shard, "node-weights", {0: (0, 2)})
    with pytest.raises(SpurbenchError, match="not the planned unit"):
        encoder._check(0, (0, 4), shard, "driver-weights", {0: (0, 2)})


def test_random_init_model_is_refused_before_starting_ray():
    model = SimpleNamespace(name="ViT-B-32,random", spec=SimpleNamespace(is_random_init=True))
    encoder = RayShardEncoder(model, None, 8)  # type: ignore[arg-type]
    with pytest.raises(SpurbenchError, match="save it to a folder"):
        list(encoder([(0, (0, 8))], None))


def test_ray_client_address_without_client_deps_names_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "grpc", None)
    with pytest.raises(SpurbenchError, match=r"ray\[client\]"):
        _require_ray_client()
