"""Encode a dataset's missing feature-cache shards on a Ray cluster (``--backend ray``).

The work unit is one cache shard: (model name, row range), identified by the feature key and
the range (:func:`unit_id`). Units whose shard already exists are never sent; each unit's
features come back to the driver, and :func:`~spurbench.features.cache.encode_dataset` alone
writes the shard atomically under its fixed name. That gives exactly-once output on top of
Ray's at-least-once tasks: a unit redone after a killed worker replaces the same file with the
same bytes instead of appending; nothing is written on worker nodes, so several nodes need no
shared storage for the output; and the cache layout is the local backend's, so a rerun (Ray or
local) reuses every shard. Shards are whole batches (the cache rounds shard sizes to the batch
size), so each worker feeds the model exactly the batches the local backend would, and the
merged features are bit-identical to the local backend's on the same kind of machine with the
same torch thread count (CPU matmuls may change their last bits with the thread count, as two
local runs with different ``OMP_NUM_THREADS`` do).

Why plain actors and not Ray Data ``map_batches`` with an ``ActorPoolStrategy``: the unit has
to be the shard, not whatever block Ray Data re-chunks rows into, both for the exactly-once
bookkeeping above and for bit-identical batches; the driver must see each shard as soon as it is
done to save it (a killed driver then loses at most the shards in flight); an exception inside
a ``map_batches`` UDF fails the whole dataset rather than one unit; and a pool of actors that
decode their own images needs no separate read stage that a full pool could starve on a small
machine. Each actor loads the model once from its name (the adapter object is never shipped)
with an explicit torch thread count (Ray sets ``OMP_NUM_THREADS=1``), keeps it for the next
units, and is restarted with its in-flight unit retried if its process dies. The pool outlives
one encode, so a sweep of many models pays the workers' process start and imports once
(:func:`release_workers` gives its CPUs back).

Inputs are read by the workers: the model name (a hub name, or a folder) and the image paths
must resolve on every node. The driver checks each shard's weight fingerprint, so a node whose
folder holds other weights fails the run instead of writing wrong features.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from spurbench.data.dataset import ImageDataset
from spurbench.errors import SpurbenchError
from spurbench.features.cache import (
    Shard,
    ShardEncoder,
    ShardUnit,
    _encode_rows,
    feature_key,
    image_files,
)
from spurbench.models.base import ModelAdapter
from spurbench.progress import progress_bar

BACKENDS = ("local", "ray")
INSTALL_HINT = "pip install 'spurbench[ray]'"
#: Restarts of a dead worker, and retries of the unit it was running, before the run fails.
MAX_RETRIES = 3

log = logging.getLogger(__name__)


def import_ray() -> Any:
    """The ``ray`` module, imported only when the Ray backend is used (it is an optional extra)."""
    try:
        import ray
    except ImportError as e:
        raise SpurbenchError(
            f"The Ray backend needs Ray, which is not installed: {INSTALL_HINT}"
        ) from e
    return ray


def unit_id(key: str, rows: tuple[int, int]) -> str:
    """A work unit's identity: the same features for the same rows, whichever run asks."""
    return f"{key}:{rows[0]}-{rows[1]}"


def shard_encoder_for(
    backend: str,
    model: ModelAdapter,
    dataset: ImageDataset,
    *,
    batch_size: int,
    address: str | None = None,
    workers: int | None = None,
    device: str = "cpu",
) -> ShardEncoder | None:
    """The shard encoder of ``backend``: None (encode in this process) for ``local``."""
    if backend == "local":
        if address or workers:
            raise SpurbenchError("A Ray address or worker count needs backend='ray'.")
        return None
    if backend == "ray":
        return RayShardEncoder(model, dataset, batch_size, address, workers, device=device)
    raise SpurbenchError(f"Unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}.")


def connect(address: str | None, workers: int | None) -> Any:
    """Join the cluster at ``address`` (``auto``, ``host:port``, ``ray://host:port``), or start a
    private local one with ``workers`` CPUs (default: all); a connected session is reused.

    Without an address Ray would join whatever cluster ``ray start`` last recorded on this
    machine (even a dead one); ``address="local"`` starts our own instead.
    """
    ray = import_ray()
    if ray.is_initialized():
        return ray
    if address and address.startswith("ray://"):
        _require_ray_client()
    if address:
        ray.init(address=address)
    else:
        cpus = workers or os.cpu_count() or 1
        ray.init(address="local", num_cpus=cpus, include_dashboard=False)
    return ray


def _require_ray_client() -> None:
    """``ray://`` addresses go through Ray Client, whose gRPC dependency ``ray[data]`` lacks."""
    try:
        import grpc  # noqa: F401
    except ImportError as e:
        raise SpurbenchError(
            "ray:// addresses need Ray Client: pip install 'ray[client]' (or use host:port "
            "from a node of the cluster)."
        ) from e


class ShardWorker:
    """One Ray actor: pays the process start and imports once, keeps one model loaded (loaded
    once from its name, on its first unit), and encodes unit after unit for the driver."""

    def __init__(self, threads: int, driver_cwd: str) -> None:
        import torch

        torch.set_num_threads(threads)  # Ray pins OMP_NUM_THREADS; say what we want explicitly
        if os.path.isdir(driver_cwd):  # a relative model folder means what it meant to the user
            os.chdir(driver_cwd)
        self.loaded: tuple[str, str] | None = None
        self.model: ModelAdapter | None = None

    def encode(self, spec: UnitSpec) -> tuple[int, tuple[int, int], Shard, str, str]:
        """(index, rows, shard, weight fingerprint, node id) of one unit.

        The unit carries its own rows' paths, so the actor keeps no arguments in the object
        store that a restart would need; the fingerprint lets the driver refuse features
        computed from other weights than its own model's; the node id says where it ran.
        """
        import ray

        model = self._model(spec.model_name, spec.device, spec.fingerprint)
        model.precision = spec.precision
        files = image_files(model, spec.paths)
        with progress_bar("", 0, enabled=False) as bar:
            shard = _encode_rows(model, files, range(len(spec.paths)), spec.batch_size, 0, bar)
        node = ray.get_runtime_context().get_node_id()
        return spec.index, spec.rows, shard, model.fingerprint, node

    def _model(self, name: str, device: str, fingerprint: str) -> ModelAdapter:
        """The model ``name`` on ``device``, loaded on first use and kept; another name, or
        weights the driver no longer has (a folder rewritten since), load it again."""
        if (
            self.loaded != (name, device)
            or self.model is None
            or self.model.fingerprint != fingerprint
        ):
            import torch

            from spurbench.models.registry import create_model

            self.model = None  # free the previous model before loading the next one
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            self.model = create_model(name, device=device)
            self.loaded = (name, device)
        return self.model


@dataclass(frozen=True)
class UnitSpec:
    """Everything a worker needs for one unit: names and paths, never a model object."""

    model_name: str
    fingerprint: str  # of the driver's model: the weights the worker must have
    device: str
    index: int
    rows: tuple[int, int]
    paths: list[str]
    batch_size: int
    precision: str = "fp32"  # resolved by the driver: every worker runs the same


@dataclass(frozen=True)
class _PoolShape:
    cluster: str  # the driver's node id: a new Ray session needs new actors
    threads: int
    gpus: int


#: The live worker pool, reused by later encodes in this driver session (the next model, the
#: next dataset): starting a worker process and importing torch costs seconds per worker,
#: once per sweep instead of once per model. :func:`release_workers` frees it.
_pool: tuple[_PoolShape, list[Any]] | None = None


def _workers_for(ray: Any, shape: _PoolShape, size: int) -> list[Any]:
    """``size`` actors of the live pool if it has this shape and enough of them, else of a new
    pool (a smaller job leaves the extra actors idle rather than restarting the pool)."""
    global _pool
    if _pool is not None and _pool[0] == shape and len(_pool[1]) >= size:
        return _pool[1][:size]
    release_workers()
    remote = ray.remote(
        num_cpus=shape.threads,
        num_gpus=shape.gpus,
        max_restarts=MAX_RETRIES,
        max_task_retries=MAX_RETRIES,
    )(ShardWorker)
    _pool = (shape, [remote.remote(shape.threads, os.getcwd()) for _ in range(size)])
    return _pool[1]


def release_workers() -> None:
    """Kill the worker pool, giving its CPUs/GPUs back to the cluster (``ray.shutdown`` and the
    driver's exit do it too)."""
    global _pool
    if _pool is None:
        return
    _, actors = _pool
    _pool = None
    ray = import_ray()
    if ray.is_initialized():
        for actor in actors:
            with suppress(Exception):  # already dead, or from a Ray session since shut down
                ray.kill(actor)


@dataclass
class RayShardEncoder:
    """A :data:`~spurbench.features.cache.ShardEncoder` running units on a pool of Ray actors.

    ``workers`` actors of ``threads`` CPUs each (default: as many as the cluster's CPUs allow,
    never more than the units); Ray is started or joined only when some shard is missing.
    ``encoded`` lists the unit ids this encoder ran, in completion order.
    """

    model: ModelAdapter
    dataset: ImageDataset
    batch_size: int
    address: str | None = None
    workers: int | None = None
    threads: int = 1
    device: str = "cpu"
    encoded: list[str] = field(default_factory=list)

    def __call__(self, units: list[ShardUnit], bar: Any) -> Iterator[tuple[int, Shard]]:
        if self.model.spec.is_random_init:
            raise SpurbenchError(
                f"{self.model.name!r} draws new random weights in every process, so Ray workers "
                "cannot reproduce the driver's model: save it to a folder and pass the folder."
            )
        ray = connect(self.address, self.workers)
        from ray.util import ActorPool

        key = feature_key(self.model, self.dataset)
        gpus = self._gpus_per_worker(ray)
        shape = _PoolShape(ray.get_runtime_context().get_node_id(), self.threads, gpus)
        actors = _workers_for(ray, shape, self._pool_size(ray, len(units), gpus))
        log.info(
            "Ray: encoding %d missing shards of %s on %d workers", len(units), key, len(actors)
        )
        planned = dict(units)
        try:
            results = ActorPool(actors).map_unordered(
                lambda actor, spec: actor.encode.remote(spec), self._specs(units, gpus)
            )
            for index, rows, shard, fingerprint, node in results:
                self._check(index, rows, shard, fingerprint, planned)
                self.encoded.append(unit_id(key, rows))
                log.debug("Ray: unit %s done on node %s", unit_id(key, rows), node)
                bar.advance(rows[1] - rows[0])
                yield index, shard
        except BaseException:
            release_workers()  # a failed or abandoned run may leave broken or busy actors
            raise

    def _specs(self, units: list[ShardUnit], gpus: int) -> list[UnitSpec]:
        paths = [str(p) for p in self.dataset.table["path"]]
        device = "cuda" if gpus else self.device  # Ray maps the actor's GPU to cuda:0
        return [
            UnitSpec(
                self.model.name,
                self.model.fingerprint,
                device,
                i,
                rows,
                paths[slice(*rows)],
                self.batch_size,
                self.model.precision,
            )
            for i, rows in units
        ]

    def _gpus_per_worker(self, ray: Any) -> int:
        """1 for a CUDA device, after checking the cluster has GPUs (else the actors wait
        forever for a GPU that will never come); 0 otherwise."""
        if not self.device.startswith("cuda"):
            return 0
        if ray.cluster_resources().get("GPU", 0) < 1:
            raise SpurbenchError(
                f"device={self.device!r} but the Ray cluster has no GPU; use --device cpu or "
                "add GPU nodes."
            )
        return 1

    def _pool_size(self, ray: Any, n_units: int, gpus: int) -> int:
        """Actors that can all be placed now: more would sit pending and hang the run."""
        resources = ray.cluster_resources()
        fit = int(resources.get("CPU", 0)) // self.threads
        if gpus:
            fit = min(fit, int(resources.get("GPU", 0)))
        if fit < 1:
            raise SpurbenchError(
                f"The Ray cluster has {resources.get('CPU', 0)} CPUs; a worker needs "
                f"{self.threads}."
            )
        wanted = self.workers or fit
        if wanted > fit:
            log.warning("Ray: %d workers asked, %d fit in the cluster; using %d", wanted, fit, fit)
        return max(1, min(wanted, fit, n_units))

    def _check(
        self,
        index: int,
        rows: tuple[int, int],
        shard: Shard,
        fingerprint: str,
        planned: dict[int, tuple[int, int]],
    ) -> None:
        """Refuse a shard that is not exactly the planned unit, from the driver's weights."""
        if fingerprint != self.model.fingerprint:
            raise SpurbenchError(
                f"A Ray worker loaded {self.model.name!r} with other weights (fingerprint "
                f"{fingerprint}, expected {self.model.fingerprint}): every node must see the "
                "same model files. Nothing from it was written."
            )
        n = rows[1] - rows[0]
        if planned.get(index) != tuple(rows) or not len(shard[0]) == len(shard[1]) == n:
            raise SpurbenchError(f"Ray returned shard {index} rows {rows}, not the planned unit.")
