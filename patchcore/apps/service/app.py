"""The HTTP application: the API under /v1, health probes, and the review page.

Every answer is JSON (or a file the service itself wrote); every error is {"error": one line}
with a 4xx/5xx status, never a traceback. With a token, every /v1 call needs it as a bearer
token, compared in constant time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import os
from collections.abc import Awaitable
from typing import Annotated

import anyio
import numpy as np
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from patchcore.apps.service import page
from patchcore.apps.service.batching import Batcher
from patchcore.apps.service.faults import Unavailable
from patchcore.apps.service.history import History, png_bytes
from patchcore.apps.service.inspections import history_routes, public
from patchcore.apps.service.settings import Settings
from patchcore.apps.service.uploads import Rejected, capped_body, decoded, file_part
from patchcore.model.loaded import Model, Scored
from patchcore.store.figures import heat_overlay


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split())[:1000]}, status_code=status, headers=headers)


def _handlers(app: FastAPI) -> None:
    @app.exception_handler(Rejected)
    async def rejected(_request: Request, exc: Rejected) -> JSONResponse:
        return _error(exc.status, str(exc), {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None)

    @app.exception_handler(Unavailable)
    async def unavailable(_request: Request, exc: Unavailable) -> JSONResponse:
        return _error(exc.status, str(exc), {"Retry-After": "5"} if exc.status == 503 else None)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        messages = {
            404: f"no such endpoint: {request.method} {request.url.path}",
            405: f"{request.method} is not allowed on {request.url.path}",
        }
        return _error(exc.status_code, messages.get(exc.status_code, str(exc.detail)))

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error(422, f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(Exception)
    async def crashed(_request: Request, exc: Exception) -> JSONResponse:
        return _error(500, f"internal error ({exc.__class__.__name__}); the server log has the details")


def _pictures(model: Model, scored: Scored) -> tuple[bytes, bytes | None]:
    """The heatmap over the image, and the mask when the model has a pixel threshold, as PNG."""
    heatmap = png_bytes(heat_overlay(scored.picture, scored.amap, model.heat_scale))
    return heatmap, None if scored.mask is None else png_bytes(scored.mask.astype("uint8") * 255)


def _store(model: Model, described: dict, history: History, settings: Settings, upload, scored: Scored) -> dict:
    """Encode the heatmap and mask, and keep the inspection (run off the event loop)."""
    heatmap, mask = _pictures(model, scored)
    record = {
        "image": upload.name,
        **scored.entry,
        # where the heatmap lies in the image (x0, y0, x1, y1): the page draws the regions over it
        "heatmap_window": [round(v, 3) for v in scored.window],
        "model": settings.model_path,
        "weights": described["weights"],
        "device": described["device"],
    }
    return history.add(record, upload.data, upload.suffix, heatmap, mask)


def _api(
    model: Model,
    history: History,
    settings: Settings,
    batcher: Batcher,
    image_work: anyio.CapacityLimiter,
) -> APIRouter:
    async def authorised(request: Request) -> None:
        if settings.token is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), settings.token.encode()):
            raise Rejected(401, "missing or wrong token: send 'Authorization: Bearer <PATCHCORE_TOKEN>'")

    api = APIRouter(prefix="/v1", dependencies=[Depends(authorised)])
    described = model.describe()

    @api.get("/model")
    async def model_card() -> dict:
        return {
            **described,
            "metrics": settings.metrics,
            "service": {
                "max_batch": settings.max_batch,
                "max_wait_ms": settings.max_wait_ms,
                "recent_batches": batcher.batches,
            },
        }

    @api.post("/inspect")
    async def inspect(request: Request, filename: Annotated[str | None, Query(max_length=200)] = None) -> dict:
        body = await capped_body(request.stream(), request.headers.get("content-length"), settings.max_bytes)
        name = filename or "upload"
        if request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
            name, body = await file_part(body, request.headers)
        upload = await anyio.to_thread.run_sync(decoded, name, body, limiter=image_work)
        scored = await batcher.submit(upload.image)
        row = await anyio.to_thread.run_sync(
            _store, model, described, history, settings, upload, scored, limiter=image_work
        )
        return public(row)

    history_routes(api, history)
    return api


WARM_SIZES = 8  # batches of 1..8 images are warmed besides the full one: a line's batches are mostly that small


async def _warm_up(
    model: Model, batcher: Batcher, image_work: anyio.CapacityLimiter, size: int, ready: asyncio.Event
) -> None:
    """A full batch down a request's whole path (decode, score, heatmap), on the threads requests use, then the smaller
    batch sizes.

    What that allocates (imports, the network's working set and its per-shape kernels, the
    allocator's kept memory, backbones.allocator) is then in place before readyz says ready, so
    load adds only what it holds: growth under load fell from +201 to +21 MB (bench/README.md,
    "Inspection service"). Each batch size has its own block sizes; a full batch alone leaves
    the fragmentation of the others for the first load to add.
    """
    noise = np.random.default_rng(0).integers(
        0, 256, (512, 512, 3), dtype=np.uint8
    )  # compresses like a photo, unlike a flat image
    blob = png_bytes(noise)
    uploads = await asyncio.gather(
        *(anyio.to_thread.run_sync(decoded, "warm-up.png", blob, limiter=image_work) for _ in range(size))
    )
    images = [u.image for u in uploads]
    scored = await asyncio.get_running_loop().run_in_executor(batcher.model_thread, model.score, images)
    await asyncio.gather(*(anyio.to_thread.run_sync(_pictures, model, one, limiter=image_work) for one in scored))
    sizes = range(min(size - 1, WARM_SIZES), 0, -1)
    for smaller in [*sizes, *reversed(sizes)]:  # down, then up: the blocks of one size land between another's
        await asyncio.get_running_loop().run_in_executor(batcher.model_thread, model.score, images[:smaller])
    ready.set()


async def _warm_or_stop(app: FastAPI, warm_up: Awaitable[None]) -> None:
    """A model that cannot score the warm-up's images cannot score a request: say why and stop the process
    (serve exits non-zero with that line) instead of answering 503 on readyz for good."""
    try:
        await warm_up
    except Exception as exc:
        app.state.fatal = f"the model failed its warm-up ({exc.__class__.__name__}: {' '.join(str(exc).split())[:300]}); the service stopped"
        app.state.stop()


def create(model: Model, history: History, settings: Settings) -> FastAPI:
    batcher = Batcher(model.score, settings.max_batch, settings.max_wait_ms / 1000, settings.max_queue)
    # decoding and encoding images is CPU work: more of it at once than there are cores adds only
    # memory in flight (each request's pixels), not throughput
    image_work = anyio.CapacityLimiter(os.cpu_count() or 1)
    ready = asyncio.Event()

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        batcher.start()
        warm_up = _warm_up(model, batcher, image_work, settings.max_batch, ready)
        task = asyncio.get_running_loop().create_task(_warm_or_stop(app, warm_up))
        yield
        task.cancel()
        await batcher.stop()
        history.close()

    app = FastAPI(
        title="patchcore inspection service", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.fatal, app.state.stop = None, lambda: None  # serve sets stop to end its server
    _handlers(app)
    page.mount(app)

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Response:
        if not ready.is_set():
            return _error(503, "the model is warming up; retry shortly")
        return JSONResponse({"ready": True, "runtime": model.runtime, "model": settings.model_path})

    app.include_router(_api(model, history, settings, batcher, image_work))
    return app
