"""The ASGI application: the HTTP API (OpenAPI at /docs), the live board at /, health and metrics.

Every `/api` route checks the caller's role (see `gshp.api.auth`); enforcement tokens limited to
districts see and act on those districts only. Writes are audit-logged with who and when.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from collector.duration import parse_duration
from collector.influx.reader import QueryError, quote_literal
from collector.model import Site
from gshp import __version__
from gshp.api.auth import Authenticator, Principal
from gshp.api.status import SiteStatus, district_counts, site_status
from gshp.report import ReportError, build_daily_report, render

if TYPE_CHECKING:
    from gshp.service import Service

__all__ = ["create_app"]

STATIC = Path(__file__).parent / "static"


class AckBody(BaseModel):
    comment: str | None = Field(default=None, max_length=2000)


class NoteBody(BaseModel):
    text: str = Field(min_length=1, max_length=2000)


class Outcome(StrEnum):
    CONFIRMED_DISCHARGE = "confirmed_discharge"  # 现场核查确认外排
    NO_DISCHARGE = "no_discharge"  # 现场核查未发现外排
    METER_FAULT = "meter_fault"  # 仪表故障
    MAINTENANCE = "maintenance"  # 维护（回扬）
    OTHER = "other"


class CloseBody(BaseModel):
    outcome: Outcome | str = Field(description="confirmed_discharge | no_discharge | meter_fault | maintenance | "
                                               "other, or free text")
    text: str = Field(default="", max_length=2000)


def _time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise HTTPException(422, f"{name}: not an ISO-8601 time (e.g. 2026-07-01T08:00:00+08:00)") from None
    if t.tzinfo is None:
        raise HTTPException(422, f"{name}: give a time zone offset (e.g. +08:00 or Z)")
    return t


def create_app(service: Service) -> FastAPI:
    config = service.config
    auth = Authenticator(config.api)
    viewer = Depends(auth.require("viewer"))
    enforcer = Depends(auth.require("enforcement"))
    admin = Depends(auth.require("admin"))
    sites_by_id = {s.id: s for s in config.sites}
    app = FastAPI(title="gshp-monitor", version=__version__,
                  description="Groundwater balance monitoring for open-loop ground-source heat-pump sites")

    def visible_site(site_id: str, who: Principal) -> Site:
        site = sites_by_id.get(site_id)
        if site is None or not who.sees(site.district):
            raise HTTPException(404, f"no site {site_id!r}")
        return site

    def statuses(who: Principal, district: str | None = None) -> list[SiteStatus]:
        firing = service.store.open_alerts()
        return [site_status(service, s, firing) for s in config.sites
                if who.sees(s.district) and (district is None or s.district == district)]

    def alert_view(a: Any) -> dict[str, Any]:
        notes = [{"at": n.at, "who": n.author, "text": n.text} for n in service.store.annotations(a.id)]
        return {**a.event, "state": a.state, "acknowledged": a.acked_by is not None, "acked_by": a.acked_by,
                "acked_at": a.acked_at, "notes": notes, "outcome": service.store.outcome(a.id)}

    def visible_alert(alert_id: str, who: Principal) -> Any:
        a = service.store.get(alert_id)
        if a is None or a.site not in sites_by_id or not who.sees(sites_by_id[a.site].district):
            raise HTTPException(404, f"no alert {alert_id!r}")
        return a

    # -- ops -------------------------------------------------------------------------------------

    @app.get("/healthz", tags=["ops"])
    def healthz() -> JSONResponse:
        body = service.health()
        return JSONResponse(body, status_code=503 if body["status"] == "full" else 200)

    @app.get("/metrics", tags=["ops"], response_class=Response)
    def prometheus_metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    # -- who am I ----------------------------------------------------------------------------------

    @app.get("/api/me", tags=["api"])
    def me(who: Principal = viewer) -> dict[str, Any]:
        return {"name": who.name, "role": who.role,
                "districts": sorted(who.districts) if who.districts is not None else None,
                "timezone": config.timezone, "version": __version__}

    # -- sites ---------------------------------------------------------------------------------------

    @app.get("/api/sites", tags=["api"])
    def list_sites(district: str | None = None, who: Principal = viewer) -> dict[str, Any]:
        all_visible = statuses(who)
        shown = [s for s in all_visible if district is None or s.district == district]
        return {"now": datetime.now(UTC).isoformat(), "timezone": config.timezone,
                "sites": [s.summary() for s in shown], "districts": district_counts(all_visible)}

    @app.get("/api/sites/{site_id}", tags=["api"])
    def get_site(site_id: str, who: Principal = viewer) -> dict[str, Any]:
        site = visible_site(site_id, who)
        status = site_status(service, site, service.store.open_alerts())
        alerts = [alert_view(a) for a in reversed(service.store.history(site.id))][:100]
        maintenance = [{"start": m.start.isoformat(), "end": m.end.isoformat(), "reason": m.reason,
                        "volume_cap_m3": m.volume_cap_m3} for m in service.engine.maintenance(site.id)]
        history = [{"ts": p.ts.isoformat(), "extraction_m3h": round(p.extraction_m3h, 3),
                    "reinjection_m3h": round(p.reinjection_m3h, 3), "deficit_m3h": round(p.deficit_m3h, 3)}
                   for p in service.live.history(site.id)]
        return {**status.summary(), "operator": site.operator, "location": site.location,
                "meters": status.meters, "history": history, "alerts": alerts, "maintenance": maintenance}

    @app.get("/api/sites/{site_id}/readings", tags=["api"])
    def site_readings(site_id: str, from_: Annotated[str, Query(alias="from")],
                      to: str | None = None, step: str = "5m", who: Principal = viewer) -> dict[str, Any]:
        """Mean rate and last total per meter and step, from InfluxDB."""
        site = visible_site(site_id, who)
        start = _time(from_, "from")
        stop = _time(to, "to") or datetime.now(UTC)
        assert start is not None
        try:
            step_s = int(parse_duration(step).total_seconds())
        except ValueError as exc:
            raise HTTPException(422, f"step: {exc}") from None
        if step_s < 1 or (stop - start).total_seconds() / step_s > 20_000:
            raise HTTPException(422, "step: too fine for this range (at most 20 000 points per meter)")
        q = (f"SELECT mean(rate_m3h) AS rate_m3h, last(total_m3) AS total_m3 FROM flow "
             f"WHERE site = {quote_literal(site.id)} AND time >= {quote_literal(start.isoformat())} "
             f"AND time < {quote_literal(stop.isoformat())} GROUP BY time({step_s}s), meter, role fill(none)")
        try:
            df = service.reader.query(q)
        except QueryError as exc:
            raise HTTPException(503, f"history is unavailable: {exc}") from None
        series: dict[str, dict[str, Any]] = {}
        for row in df.itertuples(index=False):
            d = row._asdict()
            m = series.setdefault(d["meter"], {"meter": d["meter"], "role": d.get("role"), "points": []})
            m["points"].append({"ts": d["time"].isoformat(), "rate_m3h": d.get("rate_m3h"),
                                "total_m3": d.get("total_m3")})
        return {"site": site.id, "from": start.isoformat(), "to": stop.isoformat(), "step_s": step_s,
                "meters": list(series.values())}

    @app.get("/api/sites/{site_id}/balance", tags=["api"])
    def site_balance(site_id: str, from_: Annotated[str, Query(alias="from")], to: str | None = None,
                     window: str = "1h", who: Principal = viewer) -> dict[str, Any]:
        """The balance written at each evaluation for window 1h or 24h, from InfluxDB."""
        site = visible_site(site_id, who)
        if window not in ("1h", "24h"):
            raise HTTPException(422, "window: 1h or 24h")
        start, stop = _time(from_, "from"), _time(to, "to") or datetime.now(UTC)
        assert start is not None
        q = (f"SELECT extracted_m3, reinjected_m3, deficit_m3, deficit_pct, complete FROM balance "
             f"WHERE site = {quote_literal(site.id)} AND \"window\" = {quote_literal(window)} "
             f"AND time >= {quote_literal(start.isoformat())} AND time < {quote_literal(stop.isoformat())}")
        try:
            df = service.reader.query(q)
        except QueryError as exc:
            raise HTTPException(503, f"history is unavailable: {exc}") from None
        points = [] if df.empty else [
            {"ts": r["time"].isoformat(), **{k: r.get(k) for k in ("extracted_m3", "reinjected_m3", "deficit_m3",
                                                                   "deficit_pct", "complete")}}
            for r in df.to_dict("records")]
        return {"site": site.id, "window": window, "points": points}

    # -- alerts --------------------------------------------------------------------------------------

    @app.get("/api/alerts", tags=["api"])
    def list_alerts(state: str | None = None, kind: str | None = None, severity: str | None = None,
                    district: str | None = None, site: str | None = None,
                    from_: Annotated[str | None, Query(alias="from")] = None, to: str | None = None,
                    limit: int = Query(200, ge=1, le=5000), who: Principal = viewer) -> dict[str, Any]:
        start, stop = _time(from_, "from"), _time(to, "to")
        out = []
        for a in reversed(service.store.history(site)):
            s = sites_by_id.get(a.site)
            if s is None or not who.sees(s.district):
                continue
            if (state and a.state != state) or (kind and a.kind != kind) or (severity and a.severity != severity):
                continue
            if district and s.district != district:
                continue
            if start and a.starts_ts < start.timestamp():
                continue
            if stop and a.starts_ts >= stop.timestamp():
                continue
            out.append(alert_view(a))
            if len(out) >= limit:
                break
        return {"alerts": out}

    @app.get("/api/alerts/{alert_id}", tags=["api"])
    def get_alert(alert_id: str, who: Principal = viewer) -> dict[str, Any]:
        a = visible_alert(alert_id, who)
        return {**alert_view(a), "transitions": service.store.transitions(a.id)}

    @app.post("/api/alerts/{alert_id}/ack", tags=["api"])
    def ack_alert(alert_id: str, body: AckBody, who: Principal = enforcer) -> dict[str, Any]:
        a = visible_alert(alert_id, who)
        at = datetime.now(UTC).isoformat(timespec="seconds")
        service.store.acknowledge(a.id, who.name, at, body.comment or None)
        service.silence_repeats(a.id, who.name)
        service.audit.write(who, "ack", a.id, {"comment": body.comment} if body.comment else None)
        service.live.publish("ack", {"id": a.id, "site": a.site, "by": who.name}, a.site)
        return alert_view(visible_alert(alert_id, who))

    @app.post("/api/alerts/{alert_id}/notes", tags=["api"])
    def annotate_alert(alert_id: str, body: NoteBody, who: Principal = enforcer) -> dict[str, Any]:
        a = visible_alert(alert_id, who)
        service.store.annotate(a.id, who.name, datetime.now(UTC).isoformat(timespec="seconds"), body.text)
        service.audit.write(who, "note", a.id, {"text": body.text})
        return alert_view(visible_alert(alert_id, who))

    @app.post("/api/alerts/{alert_id}/close", tags=["api"])
    def close_alert(alert_id: str, body: CloseBody, who: Principal = enforcer) -> dict[str, Any]:
        a = visible_alert(alert_id, who)
        outcome = body.outcome.value if isinstance(body.outcome, Outcome) else body.outcome
        service.store.close_case(a.id, who.name, datetime.now(UTC).isoformat(timespec="seconds"), outcome, body.text)
        service.audit.write(who, "close", a.id, {"outcome": outcome, "text": body.text})
        return alert_view(visible_alert(alert_id, who))

    @app.get("/api/audit", tags=["api"])
    def audit(limit: int = Query(200, ge=1, le=5000),
              who: Principal = admin) -> dict[str, Any]:
        return {"entries": service.audit.entries(limit)}

    # -- live stream ---------------------------------------------------------------------------------

    @app.get("/api/stream", tags=["api"])
    async def stream(request: Request, site: str | None = None, who: Principal = viewer) -> StreamingResponse:
        """Server-sent events: `flow` (a site's summed flows), `alert` (transitions), `ack`."""
        if site is not None:
            visible_site(site, who)
        allowed = {s.id for s in config.sites if who.sees(s.district)}
        sub = service.live.subscribe(allowed if site is None else {site})

        async def events() -> AsyncIterator[str]:
            try:
                yield ": connected\n\n"
                while not await request.is_disconnected():
                    try:
                        yield await asyncio.wait_for(sub.queue.get(), 15)
                    except TimeoutError:
                        yield ": keep-alive\n\n"
            finally:
                service.live.unsubscribe(sub)

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    # -- reports -------------------------------------------------------------------------------------

    @app.get("/api/reports/daily", tags=["api"])
    def daily_report(date: str, district: str | None = None, format: str = "csv", language: str = "zh",
                     who: Principal = viewer) -> Response:
        """The daily balance report (the same as `gshp report`): csv, xlsx or html, zh or en."""
        try:
            day = datetime.strptime(date, "%Y-%m-%d").date()
        except ValueError:
            raise HTTPException(422, "date: write YYYY-MM-DD") from None
        if format not in ("csv", "xlsx", "html") or language not in ("zh", "en"):
            raise HTTPException(422, "format: csv, xlsx or html; language: zh or en")
        if district is not None and not who.sees(district):
            raise HTTPException(404, f"no district {district!r}")
        if district is None and who.districts is not None:
            if len(who.districts) != 1:
                raise HTTPException(422, "district: choose one of your districts")
            district = next(iter(who.districts))
        try:
            report = build_daily_report(config, day, district, service.reader, service.store)
        except ReportError as exc:
            raise HTTPException(422, str(exc)) from None
        except QueryError as exc:
            raise HTTPException(503, f"history is unavailable: {exc}") from None
        out = render(report, format, language)
        return Response(out.body, media_type=out.content_type, headers={
            "Content-Disposition": f"attachment; filename=\"gshp-daily-{day}.{format}\"; "
                                   f"filename*=UTF-8''{quote(out.filename)}"})

    # -- the board -----------------------------------------------------------------------------------

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def board() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

    @app.get("/sites/{site_id}", include_in_schema=False)
    def board_site(site_id: str) -> Response:
        # links sent to enforcement point here; the board itself routes with #/sites/<id>
        return Response(status_code=307, headers={"Location": f"/#/sites/{quote(site_id, safe='')}"})

    return app
