"""The ASGI application: the HTTP API (OpenAPI at /openapi.json, browsable at /docs from files shipped in a
package, no CDN), the live board at /, health and metrics.

Routes live in `gshp.api.routes`, one router per concept; each receives the parts of the service it needs
through the dependencies of `gshp.api.deps`, where one `Scope` checks every site and district a caller
names. Every `/api` route checks the caller's role (see `gshp.api.auth`); enforcement tokens limited to
districts see and act on those districts only. Every write is recorded in the audit chain (`rules.audit`) in
the transaction of the change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from gshp import __version__
from gshp.api.auth import Authenticator
from gshp.api.deps import ApiContext
from gshp.api.hosts import HostCheck
from gshp.api.routes import (
    alerts,
    arrival,
    board,
    evidence,
    history,
    incidents,
    maintenance,
    mapview,
    ops,
    reports,
    sites,
    stream,
)

if TYPE_CHECKING:
    from gshp.service import Service

__all__ = ["create_app", "validation_message"]

ROUTERS = (ops.router, sites.router, arrival.router, history.router, maintenance.router, alerts.router,
           incidents.router, mapview.router, stream.router, reports.router, evidence.router, board.router)

MAX_SHOWN_INPUT = 80
"""A refused value is quoted in the error up to this many characters."""


def validation_message(exc: RequestValidationError) -> str:
    """Every problem of a refused request in one line: `where: what (got value)`."""
    parts = []
    for e in exc.errors():
        loc = [str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path")]
        got = e.get("input")
        shown = "" if got is None or isinstance(got, dict | list) else f" (got {str(got)[:MAX_SHOWN_INPUT]!r})"
        parts.append(f"{'.'.join(loc) or 'request'}: {e.get('msg', 'invalid')}{shown}")
    return "请求参数不合规 / invalid request — " + "; ".join(parts)


def create_app(service: Service) -> FastAPI:
    # Swagger UI from files shipped in a package (no CDN), with no call to an online validator; no ReDoc (it
    # loads its logo from a CDN)
    app = FastAPIOffline(title="gshp-monitor", version=__version__,
                         description="Groundwater balance monitoring for open-loop ground-source heat-pump sites",
                         redoc_url=None, swagger_ui_parameters={"validatorUrl": None})
    app.add_middleware(HostCheck, settings=service.config.api)
    app.state.ctx = ApiContext(
        config=service.config, store=service.store, live=service.live, reader=service.reader, engine=service.engine,
        clock=service.clock, audit=service.audit, cases=service.cases, auth=Authenticator(service.config.api),
        health=service.health, evidence_key=service.evidence_key,
        case_closed=lambda incident, outcome: service.incident_case_closed(incident, outcome),
        arrival=service.arrival, outlines=service.outlines)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": validation_message(exc)}, status_code=422)

    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=board.STATIC), name="static")
    return app
