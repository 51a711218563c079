"""The ASGI application: `/healthz` and `/metrics` (Prometheus)."""

from __future__ import annotations

from typing import Any, Protocol

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

__all__ = ["Health", "create_app"]


class Health(Protocol):
    def health(self) -> dict[str, Any]: ...


def create_app(service: Health) -> FastAPI:
    app = FastAPI(title="gshp-monitor", version="0.1.0",
                  description="Groundwater balance monitoring for open-loop ground-source heat-pump sites")

    @app.get("/healthz", tags=["ops"])
    def healthz() -> JSONResponse:
        body = service.health()
        return JSONResponse(body, status_code=200 if body["status"] == "ok" else 503)

    @app.get("/metrics", tags=["ops"], response_class=Response)
    def prometheus_metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
