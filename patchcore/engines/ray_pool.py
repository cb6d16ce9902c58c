"""A pool of Ray actors that load their model once and work through shards in order.

Each actor is restarted by Ray if its process dies, and the shard it held is sent again
(``max_restarts`` / ``max_task_retries``), so a killed worker costs time, not results. The
driver takes results back in shard order and writes them itself: outputs are written only
where the local engine writes them, through the same atomic files.
"""

from __future__ import annotations

import os
import socket
import urllib.parse
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Concatenate, Generic, TypeVar

import numpy as np

from patchcore.engines.settings import EngineSettings
from patchcore.errors import UsageError

# a shard whose worker died this many times in a row is reported instead of retried forever
RETRIES = 3
_PROBE_TIMEOUT_S = 5.0


def _probe(address: str) -> None:
    """Fail in seconds, naming RAY_ADDRESS, where Ray itself would retry for minutes."""
    if address in ("auto", "local"):
        return
    parsed = urllib.parse.urlsplit(address if "://" in address else f"ray-gcs://{address}")
    host, port = parsed.hostname, parsed.port or (10001 if parsed.scheme == "ray" else 6379)
    try:
        with socket.create_connection((host or "", port), timeout=_PROBE_TIMEOUT_S):
            return
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc.__class__.__name__
        raise UsageError(
            f"RAY_ADDRESS={address}: no Ray cluster answers at {host}:{port} ({reason}); "
            "start one ('ray start --head') or unset RAY_ADDRESS to run Ray on this machine"
        ) from None


def start(settings: EngineSettings):
    """Attach to RAY_ADDRESS's cluster, or start Ray on this machine; return the ray module."""
    import ray

    if ray.is_initialized():
        return ray
    quiet: dict[str, Any] = {"logging_level": "ERROR", "log_to_driver": False, "include_dashboard": False}
    if settings.address:
        _probe(settings.address)
        try:
            ray.init(address=settings.address, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            first = (str(exc).splitlines() or [exc.__class__.__name__])[0][:160]
            raise UsageError(
                f"RAY_ADDRESS={settings.address}: cannot attach to a Ray cluster ({first}); check the address or unset it"
            ) from None
    else:
        # a Ray of this machine's cores, with an object store bounded so it fits beside the stage
        ray.init(num_cpus=os.cpu_count(), object_store_memory=settings.object_store_mb * 2**20, **quiet)
    return ray


P = TypeVar("P", bound="_Pool")
W = TypeVar("W")  # the worker class
R = TypeVar("R")  # what one of its methods returns

# a worker's method, named as the class's attribute (ExtractWorker.features_of): mypy checks that
# the worker has it and what it returns; a Ray actor is called by the same method's name
Method = Callable[Concatenate[W, ...], R]


class _Pool(Generic[W]):
    """What both engines answer: map() of shards in order, first() of one call, and a with-block that frees the
    workers."""

    size: int

    def map(self, method: Method[W, R], shards: Iterable[tuple]) -> Iterator[R]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def first(self, method: Method[W, R]) -> R:
        """``method()`` of the first worker (what every worker would answer, e.g. its device)."""
        return next(self.map(method, [()]))

    def __enter__(self: P) -> P:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ShardPool(_Pool[W]):
    """Actors of ``worker`` built with ``args``; map() sends shards and yields results in shard order."""

    def __init__(self, worker: type[W], args: tuple, settings: EngineSettings):
        ray = self.ray = start(settings)
        gpus = int(ray.cluster_resources().get("GPU", 0))
        cpus = int(ray.cluster_resources().get("CPU", 1))
        # one actor per GPU where the cluster has them, else one per CPU slot; never more actors
        # than the cluster can place (one it cannot place would wait forever with its shards)
        if not gpus and settings.cpus_per_worker > cpus:
            raise UsageError(
                f"PATCHCORE_RAY_CPUS={settings.cpus_per_worker}: the Ray cluster has {cpus} CPU slots, so no worker could be placed "
                f"(it would wait forever); use at most {cpus}"
            )
        slots = gpus if gpus else max(1, cpus // settings.cpus_per_worker)
        count = min(settings.workers or slots, slots)
        options = {"num_gpus": 1} if gpus else {"num_cpus": settings.cpus_per_worker}
        # OpenMP threads that spin while they wait would take the cores from a neighbouring actor
        # (each actor computes with the driver's thread count; see extract_worker)
        runtime_env = {"env_vars": {"OMP_WAIT_POLICY": "PASSIVE"}}
        remote = ray.remote(max_restarts=RETRIES, max_task_retries=RETRIES, runtime_env=runtime_env, **options)(worker)
        # large arrays (a memory bank) go into the object store once, not once per actor
        # (kept referenced: a restarted actor is built again from the same objects)
        self.args = tuple(ray.put(a) if isinstance(a, np.ndarray) else a for a in args)
        self.actors = [remote.remote(*self.args) for _ in range(count)]
        self.size = count

    def map(self, method: Method[W, R], shards: Iterable[tuple]) -> Iterator[R]:
        """Results of ``actor.method(*shard)`` in the order of ``shards``, two shards in flight per actor."""
        from ray.exceptions import RayActorError, RayTaskError

        pending: deque = deque()
        shards = iter(shards)
        exhausted = False
        turn = 0
        while True:
            while not exhausted and len(pending) < 2 * len(self.actors):
                shard = next(shards, None)
                if shard is None:
                    exhausted = True
                    break
                actor = self.actors[turn % len(self.actors)]
                pending.append(getattr(actor, method.__name__).remote(*shard))
                turn += 1
            if not pending:
                return
            try:
                yield self.ray.get(pending.popleft())
            except RayActorError as exc:
                # a worker whose model could not be built (a GPU asked for where there is none) dies too
                said = [line.split("UsageError: ", 1)[1] for line in str(exc).splitlines() if "UsageError: " in line]
                if said:
                    raise UsageError(said[-1]) from None
                raise UsageError(
                    f"a Ray worker died {RETRIES + 1} times on one shard ({exc.__class__.__name__}); see the Ray logs"
                ) from None
            except RayTaskError as exc:
                cause = exc.as_instanceof_cause()
                if isinstance(cause, UsageError):
                    raise UsageError(str(cause).splitlines()[0]) from None
                raise

    def close(self) -> None:
        """Free the actors' slots (a driver that goes on, e.g. a benchmark, would find them taken)."""
        for actor in self.actors:
            self.ray.kill(actor)


class Local(_Pool[W]):
    """The local engine: one worker object in this process, called shard by shard."""

    def __init__(self, worker: type[W], args: tuple):
        self.worker = worker(*args)
        self.size = 1

    def map(self, method: Method[W, R], shards: Iterable[tuple]) -> Iterator[R]:
        for shard in shards:
            yield method(self.worker, *shard)


def pool(worker: type[W], args: tuple, settings: EngineSettings) -> Local[W] | ShardPool[W]:
    """``worker(*args)`` here (engine local) or as Ray actors (engine ray); both answer first() and map()."""
    return Local(worker, args) if settings.engine == "local" else ShardPool(worker, args, settings)
