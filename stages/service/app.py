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
from dataclasses import dataclass, field
from typing import Annotated, Literal

import anyio
import numpy as np
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from ..engines.loaded_models import OnnxModel, Scored, TorchModel
from ..store.figures import heat_overlay
from . import page
from .batching import Batcher
from .faults import Unavailable
from .history import ID, History, png_bytes
from .state_folder import read_own
from .uploads import Rejected, capped_body, decoded, file_part


@dataclass
class Settings:
    model_path: str
    max_batch: int = 8
    max_wait_ms: float = 10.0
    max_queue: int = 256
    max_bytes: int = 32 * 1024 * 1024
    token: str | None = None
    metrics: dict | None = None  # evaluate's figures for this model, when the project has them
    extra: dict = field(default_factory=dict)


class Review(BaseModel):
    review: Literal["good", "defective"]


def _public(row: dict) -> dict:
    """A stored inspection as the API shows it: predict's fields, with URLs in place of file paths."""
    base = f"/v1/inspections/{row['id']}"
    out = {k: v for k, v in row.items() if not k.startswith("_")}
    out.update({"image_url": f"{base}/image", "heatmap": f"{base}/heatmap", "mask": f"{base}/mask" if row["_mask"] else None})
    return out


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
        messages = {404: f"no such endpoint: {request.method} {request.url.path}", 405: f"{request.method} is not allowed on {request.url.path}"}
        return _error(exc.status_code, messages.get(exc.status_code, str(exc.detail)))

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error(422, f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(Exception)
    async def crashed(_request: Request, exc: Exception) -> JSONResponse:
        return _error(500, f"internal error ({exc.__class__.__name__}); the server log has the details")


def _pictures(model: TorchModel | OnnxModel, scored: Scored) -> tuple[bytes, bytes | None]:
    """The heatmap over the image, and the mask when the model has a pixel threshold, as PNG."""
    heatmap = png_bytes(heat_overlay(scored.picture, scored.amap, model.heat_scale))
    return heatmap, None if scored.mask is None else png_bytes(scored.mask.astype("uint8") * 255)


def _store(model: TorchModel | OnnxModel, described: dict, history: History, settings: Settings, upload, scored: Scored) -> dict:
    """Encode the heatmap and mask, and keep the inspection (run off the event loop)."""
    heatmap, mask = _pictures(model, scored)
    record = {
        "image": upload.name,
        **scored.entry,
        "model": settings.model_path,
        "weights": described["weights"],
        "device": described["device"],
    }
    return history.add(record, upload.data, upload.suffix, heatmap, mask)


def _api(model: TorchModel | OnnxModel, history: History, settings: Settings, batcher: Batcher, image_work: anyio.CapacityLimiter) -> APIRouter:
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
            "service": {"max_batch": settings.max_batch, "max_wait_ms": settings.max_wait_ms, "recent_batches": batcher.batches},
        }

    @api.post("/inspect")
    async def inspect(request: Request, filename: Annotated[str | None, Query(max_length=200)] = None) -> dict:
        body = await capped_body(request.stream(), request.headers.get("content-length"), settings.max_bytes)
        name = filename or "upload"
        if request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
            name, body = await file_part(body, request.headers)
        upload = await anyio.to_thread.run_sync(decoded, name, body, limiter=image_work)
        scored = await batcher.submit(upload.image)
        row = await anyio.to_thread.run_sync(_store, model, described, history, settings, upload, scored, limiter=image_work)
        return _public(row)

    _history_routes(api, history)
    return api


def _own_bytes(history: History, path, ident: str, kind: str) -> bytes:
    """A file the service wrote, read whole and without following a link: deleted or swapped since the check, it is a 404."""
    try:
        data = read_own(history.files, path)
    except ValueError:
        data = None
    if data is None:
        raise Unavailable(404, f"inspection {ident}: its {kind} file is missing (deleted outside the service)")
    return data


def _history_routes(api: APIRouter, history: History) -> None:
    def known(ident: str) -> dict:
        row = history.get(ident)
        if row is None:
            raise Rejected(404, f"unknown inspection id {ident[:40]!r}; list them with GET /v1/inspections")
        return row

    @api.get("/inspections")
    async def inspections(
        verdict: Literal["good", "anomalous"] | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        before: Annotated[str | None, Query(pattern=ID.pattern)] = None,
    ) -> dict:
        if before is not None:
            known(before)
        rows = await run_in_threadpool(history.latest, verdict, limit, before)
        return {"inspections": [_public(r) for r in rows], "next_before": rows[-1]["id"] if len(rows) == limit else None, **history.counts()}

    @api.get("/inspections/{ident}")
    async def inspection(ident: str) -> dict:
        return _public(known(ident))

    @api.get("/inspections/{ident}/{kind}")
    async def inspection_file(ident: str, kind: Literal["image", "heatmap", "mask"]) -> Response:
        found = history.file(known(ident)["id"], kind)
        if found is None:
            raise Rejected(404, f"inspection {ident} has no {kind} (the model has no pixel threshold)")
        return Response(await run_in_threadpool(_own_bytes, history, found[0], ident, kind), media_type=found[1])

    @api.post("/inspections/{ident}/review")
    async def review(ident: str, body: Review) -> dict:
        known(ident)
        updated = await run_in_threadpool(history.review, ident, body.review)
        return _public(updated or known(ident))


WARM_SIZES = 8  # batches of 1..8 images are warmed besides the full one: a line's batches are mostly that small


async def _warm_up(model: TorchModel | OnnxModel, batcher: Batcher, image_work: anyio.CapacityLimiter, size: int, ready: asyncio.Event) -> None:
    """A full batch down a request's whole path (decode, score, heatmap), on the threads requests use, then the smaller batch sizes.

    What that allocates (imports, the network's working set and its per-shape kernels, the
    allocator's kept memory, backbones.allocator) is then in place before readyz says ready, so
    load adds only what it holds: growth under load fell from +201 to +21 MB (bench/README.md,
    "Inspection service"). Each batch size has its own block sizes; a full batch alone leaves
    the fragmentation of the others for the first load to add.
    """
    noise = np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)  # compresses like a photo, unlike a flat image
    blob = png_bytes(noise)
    uploads = await asyncio.gather(*(anyio.to_thread.run_sync(decoded, "warm-up.png", blob, limiter=image_work) for _ in range(size)))
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


def create(model: TorchModel | OnnxModel, history: History, settings: Settings) -> FastAPI:
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

    app = FastAPI(title="patchcore inspection service", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
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
