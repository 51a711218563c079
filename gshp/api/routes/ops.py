"""Health, Prometheus metrics and who the caller is."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gshp import __version__
from gshp.api.deps import HealthCheck, ServiceClock, Viewer, Zone
from gshp.api.models import ClockOut, Health, Me
from gshp.clock import SystemClock

router = APIRouter()


@router.get("/healthz", tags=["ops"], response_model=Health)
def healthz(health: HealthCheck) -> JSONResponse:
    """`ok`, `degraded` (and why) or `full` (503: the outbox is full and sources are refused)."""
    body = health()
    return JSONResponse(body, status_code=503 if body["status"] == "full" else 200)


@router.get("/metrics", tags=["ops"], response_class=Response)
def prometheus_metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


@router.get("/api/me", tags=["api"])
def me(who: Viewer, clock: ServiceClock, times: Zone) -> Me:
    """Who the caller is, and the service's clock: `system` (wall time) or `data` (a simulated clock, as in
    the demo: the board's header then says it shows data time)."""
    shown = ClockOut(kind="system" if isinstance(clock, SystemClock) else "data",
                     now=times.at(clock.now()), speed=round(1.0 / clock.wall_seconds(1.0), 6))
    return Me(name=who.name, role=who.role, districts=sorted(who.districts) if who.districts is not None else None,
              timezone=times.name, version=__version__, clock=shown)
