"""The engine, chosen by environment variables, never by params.yaml.

An engine cannot change an output's bytes, so it must not be a stage parameter: switching it
would make DVC rerun every stage for nothing. RAY_ADDRESS is Ray's own variable for the
cluster to attach to; without it, Ray starts one on this machine.

    PATCHCORE_ENGINE             local (default) | ray
    PATCHCORE_RAY_WORKERS        actors; default: one per GPU of the cluster, else one per CPU slot
    PATCHCORE_RAY_CPUS           CPU slots per actor (default 1)
    PATCHCORE_RAY_SHARD_BATCHES  batches of extract.batch_size per shard (default 4)
    PATCHCORE_RAY_OBJECT_STORE_MB  object store of a Ray started here (default 1024)
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PositiveInt, ValidationError

from patchcore.errors import UsageError

VARIABLES = {
    "PATCHCORE_ENGINE": "engine",
    "PATCHCORE_RAY_WORKERS": "workers",
    "PATCHCORE_RAY_CPUS": "cpus_per_worker",
    "PATCHCORE_RAY_SHARD_BATCHES": "shard_batches",
    "PATCHCORE_RAY_OBJECT_STORE_MB": "object_store_mb",
}


# Ray refuses an object store under 75 MiB; one larger than this machine's memory cannot be made
OBJECT_STORE_MIN_MB = 75


def _memory_mb() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20


def _fits(mb: int) -> int:
    if mb < OBJECT_STORE_MIN_MB:
        raise ValueError(f"must be at least {OBJECT_STORE_MIN_MB} (MB): Ray refuses a smaller object store")
    if mb > _memory_mb():
        raise ValueError(f"must be at most this machine's memory ({_memory_mb():,} MB)")
    return mb


def _ray_address(address: str) -> str:
    """auto, local, host:port or ray://host:port, with a port Ray could listen on."""
    if address in ("auto", "local"):
        return address
    parts = urllib.parse.urlsplit(address if "://" in address else f"ray-gcs://{address}")
    try:
        port = parts.port
    except ValueError:
        port = -1
    if not parts.hostname or port == -1 or port == 0 or parts.scheme not in ("ray", "ray-gcs"):
        raise ValueError("must be auto, host:port or ray://host:port with a port in 1-65535, e.g. 10.0.0.5:6379")
    return address


class EngineSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    engine: Literal["local", "ray"] = "local"
    workers: Annotated[PositiveInt, Field(le=4096)] | None = None  # more than the cluster places are not started
    cpus_per_worker: Annotated[PositiveInt, Field(le=4096)] = 1  # checked against the cluster when Ray starts
    # batches of extract.batch_size sent to an actor at once, read whole into memory
    shard_batches: Annotated[PositiveInt, Field(le=64)] = 4
    object_store_mb: Annotated[PositiveInt, AfterValidator(_fits)] = 1024
    address: Annotated[str, AfterValidator(_ray_address)] | None = None  # RAY_ADDRESS


def from_env(environ: Mapping[str, str] = os.environ) -> EngineSettings:
    values: dict[str, object] = {
        field: environ[name] for name, field in VARIABLES.items() if environ.get(name, "") != ""
    }
    values["address"] = environ.get("RAY_ADDRESS") or None
    try:
        return EngineSettings.model_validate(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = error["loc"][0]
        name = next((n for n, f in VARIABLES.items() if f == field), "RAY_ADDRESS")
        message = error["msg"].removeprefix("Value error, ")
        raise UsageError(
            f"{name}={environ.get(name)!r}: {message[0].lower() + message[1:]}; see README 'Running on a Ray cluster'"
        ) from None
