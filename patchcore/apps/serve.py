"""`patchcore serve`: a model held in memory behind HTTP (patchcore/apps/service/), its history under --state."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
from pathlib import Path

from patchcore.apps.service.settings import Settings
from patchcore.errors import UsageError, optional
from patchcore.store import paths

MIN_TOKEN = 16
ARENAS = 2  # malloc arenas: the model thread and the image workers (backbones/allocator.py)
METRICS = (
    "image_auroc",
    "pixel_auroc",
    "aupro",
    "aupro_005",
    "full_size",
    "ci95",
    "image_ap",
    "test_images",
    "data",
    "weights",
)


def checked_token(host: str, token: str | None) -> str | None:
    """A non-loopback bind only with a token: anyone on the network could otherwise score and review."""
    if token is not None and len(token) < MIN_TOKEN:
        raise UsageError(
            f"PATCHCORE_TOKEN is {len(token)} characters; use at least {MIN_TOKEN} (e.g. python -c 'import secrets; print(secrets.token_urlsafe())')"
        )
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        raise UsageError(
            f"--host {host!r}: not an IP address; use 127.0.0.1 (this machine only) or the address of one of its interfaces"
        ) from None
    if not loopback and token is None:
        raise UsageError(
            f"--host {host}: serving beyond this machine needs a token; set PATCHCORE_TOKEN (at least {MIN_TOKEN} characters), or bind 127.0.0.1"
        )
    return token


def _free(host: str, port: int) -> None:
    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port}: must be in [0, 65535]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise UsageError(
                f"--host {host} --port {port}: cannot listen there ({exc.strerror}); choose another port"
            ) from None


def metrics_of(described: dict) -> dict | None:
    """evaluate's figures for this model, when this project has them (metrics/<dataset>/<backbone>/<category>.json)."""
    try:
        path = paths.metrics_file(described["dataset"], described["category"], described["backbone"])
        found = json.loads(path.read_text())
    except (OSError, ValueError, UsageError, KeyError):
        return None
    return {"file": str(path), **{key: found.get(key) for key in METRICS}} if isinstance(found, dict) else None


def main(
    model: Path,
    host: str,
    port: int,
    runtime: str,
    state: Path,
    device: str,
    max_batch: int,
    max_wait_ms: float,
    max_upload_mb: int,
) -> None:
    for module in ("fastapi", "uvicorn", "python_multipart"):
        optional(module, "patchcore serve", "serve")
    token = checked_token(host, os.environ.get("PATCHCORE_TOKEN") or None)
    settings = Settings(str(model), max_batch, max_wait_ms, max_upload_mb, token=token).check()
    _free(host, port)

    import uvicorn

    from patchcore.apps.service import app, history
    from patchcore.backbones import allocator
    from patchcore.model import loaded as loaded_models

    allocator.few_arenas(ARENAS)
    history.claim(state, check_only=True)  # a folder the service must not use is refused before the model loads
    held = loaded_models.load(model, runtime, device)
    store = history.History(state)
    described = held.describe()
    store.remember(
        {k: described.get(k) for k in ("dataset", "category", "backbone", "weights")} | {"model": str(model)}
    )
    settings.metrics = metrics_of(described)
    swept = f", {store.swept} unfinished inspection(s) of a killed run removed" if store.swept else ""
    print(
        f"serving {described['dataset']}/{described['category']} {described['backbone']} ({described['weights']}, {runtime}) on http://{host}:{port}/ (history: {state}{swept})",
        flush=True,
    )
    application = app.create(held, store, settings)
    server = uvicorn.Server(
        uvicorn.Config(application, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)
    )
    application.state.stop = lambda: setattr(server, "should_exit", True)
    server.run()
    if application.state.fatal:
        raise UsageError(application.state.fatal)
