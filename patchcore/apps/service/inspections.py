"""The history's routes under /v1: list the inspections, one inspection, its files, and its review."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from patchcore.apps.service.faults import Unavailable
from patchcore.apps.service.history import ID, History
from patchcore.apps.service.state_folder import read_own
from patchcore.apps.service.uploads import Rejected


class Review(BaseModel):
    review: Literal["good", "defective"]


def public(row: dict) -> dict:
    """A stored inspection as the API shows it: predict's fields, with URLs in place of file paths."""
    base = f"/v1/inspections/{row['id']}"
    out = {k: v for k, v in row.items() if not k.startswith("_")}
    out.update(
        {"image_url": f"{base}/image", "heatmap": f"{base}/heatmap", "mask": f"{base}/mask" if row["_mask"] else None}
    )
    return out


def _own_bytes(history: History, path, ident: str, kind: str) -> bytes:
    """A file the service wrote, read whole and without following a link: deleted or swapped since the check, it is a
    404."""
    try:
        data = read_own(history.files, path)
    except ValueError:
        data = None
    if data is None:
        raise Unavailable(404, f"inspection {ident}: its {kind} file is missing (deleted outside the service)")
    return data


def history_routes(api: APIRouter, history: History) -> None:
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
        return {
            "inspections": [public(r) for r in rows],
            "next_before": rows[-1]["id"] if len(rows) == limit else None,
            **history.counts(),
        }

    @api.get("/inspections/{ident}")
    async def inspection(ident: str) -> dict:
        return public(known(ident))

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
        return public(updated or known(ident))
