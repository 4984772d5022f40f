"""Two Ray nodes on this machine (``ray start`` processes joined over loopback): the backend
spreads units over both and still gives the local results exactly.

Each node runs ``ray start --block`` in its own process group and is ended by that process's
pid: ``--block`` makes it tear its node down on SIGTERM (a plain ``ray stop`` would kill every
Ray process of the user on the machine, other runs included). Its own ``--temp-dir`` keeps the
"last started cluster" file out of /tmp/ray, where a later ``ray.init()`` would try to join it.
Every wait has a deadline, so a node that never comes up fails the test instead of hanging CI.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from spurbench.features.ray_backend import release_workers
from tests.scale.conftest import (
    RAY_ENV,
    all_unit_ids,
    assert_one_run_per_protocol,
    assert_same_features,
    assert_same_results,
    cached_features,
    run_eval,
    units_done,
)

START_TIMEOUT_S = 90
STOP_TIMEOUT_S = 45
RAY_CLI = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_args() -> list[str]:
    """Options every node needs on a shared machine: its own free ports, one CPU, blocking."""
    ports = [
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--metrics-export-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
    ]
    if importlib.util.find_spec("grpc"):  # ray[client] present: its server wants a port too
        ports.append(f"--ray-client-server-port={free_port()}")
    return [*ports, "--num-cpus=1", "--object-store-memory=100000000", "--block"]


def start_node(args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [RAY_CLI, "start", *args, *node_args()],
            env={**os.environ, **RAY_ENV},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_for(check, what: str, procs: list[subprocess.Popen], logs: list[Path]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not check():
        dead = [p.args[2] for p in procs if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            tails = "\n".join(f"--- {p}\n{p.read_text()[-2000:]}" for p in logs if p.exists())
            pytest.fail(f"{what}: {'exited' if dead else 'timed out'}\n{tails}")
        time.sleep(0.5)


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def alive_nodes() -> int:
    return sum(n["Alive"] for n in ray.nodes())


def stop_node(proc: subprocess.Popen) -> None:
    """End one node by its pid; SIGKILL its process group if it does not stop in time."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The address (127.0.0.1:PORT) of a running head node plus one joined worker node."""
    if ray.is_initialized():
        release_workers()
        ray.shutdown()
    logs = tmp_path_factory.mktemp("ray-nodes")
    temp_dir = tempfile.mkdtemp(prefix="sbray-")  # short: Ray's socket paths must fit 107 chars
    port = free_port()
    address = f"127.0.0.1:{port}"
    procs: list[subprocess.Popen] = []
    try:
        head = ["--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={temp_dir}"]
        procs.append(start_node(head, logs / "head.log"))
        wait_for(lambda: port_open(port), "head node", procs, [logs / "head.log"])
        procs.append(start_node([f"--address={address}"], logs / "worker.log"))
        with pytest.MonkeyPatch.context() as mp:
            for k, v in RAY_ENV.items():
                mp.setenv(k, v)
            ray.init(address=address)
            try:
                all_logs = [logs / "head.log", logs / "worker.log"]
                wait_for(lambda: alive_nodes() == 2, "worker node", procs, all_logs)
            finally:
                ray.shutdown()
            yield address
    finally:
        if ray.is_initialized():
            release_workers()
            ray.shutdown()
        for proc in reversed(procs):
            stop_node(proc)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.ray
def test_two_nodes_give_local_results(
    two_nodes, model_name, scale_data, local_reference, tmp_path, ray_log, monkeypatch
):
    for k, v in RAY_ENV.items():
        monkeypatch.setenv(k, v)
    results = run_eval(model_name, scale_data, tmp_path, backend="ray", address=two_nodes)
    done = units_done(ray_log)
    assert sorted(u for u, _ in done) == all_unit_ids(local_reference.features.key)
    assert len({node for _, node in done}) == 2, f"units ran on one node only: {done}"
    assert_same_results(results, local_reference.results)
    assert_same_features(
        cached_features(model_name, scale_data, tmp_path / "cache"), local_reference.features
    )
    assert_one_run_per_protocol(tmp_path / "store.duckdb")
