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
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, PositiveInt, ValidationError

from ..errors import UsageError

VARIABLES = {
    "PATCHCORE_ENGINE": "engine",
    "PATCHCORE_RAY_WORKERS": "workers",
    "PATCHCORE_RAY_CPUS": "cpus_per_worker",
    "PATCHCORE_RAY_SHARD_BATCHES": "shard_batches",
    "PATCHCORE_RAY_OBJECT_STORE_MB": "object_store_mb",
}


class EngineSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    engine: Literal["local", "ray"] = "local"
    workers: PositiveInt | None = None
    cpus_per_worker: PositiveInt = 1
    shard_batches: PositiveInt = 4
    object_store_mb: PositiveInt = 1024
    address: str | None = None  # RAY_ADDRESS


def from_env(environ: Mapping[str, str] = os.environ) -> EngineSettings:
    values: dict[str, object] = {field: environ[name] for name, field in VARIABLES.items() if environ.get(name, "") != ""}
    values["address"] = environ.get("RAY_ADDRESS") or None
    try:
        return EngineSettings.model_validate(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        name = next(n for n, f in VARIABLES.items() if f == error["loc"][0])
        raise UsageError(f"{name}={environ.get(name)!r}: {error['msg'].lower()}; see README 'Running on a Ray cluster'") from None
