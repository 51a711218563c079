"""The live stream of readings, flows and alert transitions (server-sent events)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from gshp.api.deps import Live, ViewerScope

router = APIRouter(tags=["api"])

KEEP_ALIVE_S = 15


@router.get("/api/stream", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}, "description": "server-sent events"}})
async def stream(request: Request, scope: ViewerScope, live: Live, site: str | None = None) -> StreamingResponse:
    """Server-sent events: `reading` (a meter's newest reading: site, meter, role, ts, rate_m3h, total_m3,
    signal_pct, error_code), `flow` (a site's summed flows), `alert` (transitions, in the alert event
    shape), `ack`. `site` limits the stream to one site; a district-limited token sees its districts."""
    sites = {scope.site(site).id} if site is not None else {s.id for s in scope.sites}
    sub = live.subscribe(sites)

    async def events() -> AsyncIterator[str]:
        try:
            yield ": connected\n\n"
            while not await request.is_disconnected():
                try:
                    yield await asyncio.wait_for(sub.queue.get(), KEEP_ALIVE_S)
                except TimeoutError:
                    yield ": keep-alive\n\n"
        finally:
            live.unsubscribe(sub)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
