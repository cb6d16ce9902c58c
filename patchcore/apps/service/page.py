"""The review page: three files of this package, served by the app itself (no CDN, no build step)."""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI, Request
from fastapi.responses import Response

# The page runs only its own script and style; heatmaps arrive as blobs fetched with the token.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src 'self'; "
    "form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)
ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}


def _assets() -> dict[str, bytes]:
    folder = resources.files(__package__) / "assets"
    return {name: (folder / name).read_bytes() for name in ASSETS}


def mount(app: FastAPI) -> None:
    assets = _assets()  # read once: a request names one of these three, never a file

    @app.middleware("http")
    async def headers(request: Request, call_next):
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        return Response(assets["index.html"], media_type=ASSETS["index.html"])

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return Response(status_code=204)  # browsers ask for one; the page has none

    @app.get("/app.js", include_in_schema=False)
    async def script() -> Response:
        return Response(assets["app.js"], media_type=ASSETS["app.js"])

    @app.get("/style.css", include_in_schema=False)
    async def style() -> Response:
        return Response(assets["style.css"], media_type=ASSETS["style.css"])
