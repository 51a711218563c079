"""The ASGI application: the HTTP API (OpenAPI at /openapi.json, browsable at /docs from files shipped in a
package, no CDN), the live board at /, health and metrics.

Every `/api` route checks the caller's role (see `gshp.api.auth`); enforcement tokens limited to
districts see and act on those districts only. Every write is recorded in the audit chain (`rules.audit`) in
the transaction of the change.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import AwareDatetime, BaseModel, Field, model_validator

from collector.duration import parse_duration
from collector.influx.reader import QueryError, quote_literal
from collector.model import Site
from gshp import __version__
from gshp.api.auth import Authenticator, Principal
from gshp.api.hosts import HostCheck
from gshp.api.status import SiteStatus, district_counts, site_status
from gshp.evaluation import BOARD_WINDOWS
from gshp.report import ReportError, build_daily_report, render
from rules import audited
from rules.audit import Actor
from rules.settings import MaintenanceWindow
from rules.store import DeclaredMaintenance

if TYPE_CHECKING:
    from gshp.service import Service

__all__ = ["create_app"]

STATIC = Path(__file__).parent / "static"

MAX_POINTS = 20_000
"""History routes answer at most this many steps per series."""

MAX_MAINTENANCE = timedelta(days=7)
"""Longest maintenance window the API accepts: its cap allows a deficit in every balance window it overlaps,
so an open-ended declaration would blind the site. Longer work is declared day by day (or in the config)."""


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


class MaintenanceBody(BaseModel):
    start: AwareDatetime = Field(description="ISO-8601 with offset, e.g. 2026-05-05T08:00:00+08:00")
    end: AwareDatetime
    reason: str = Field(min_length=1, max_length=200, description="e.g. 回扬 R1 (backwashing reinjection well R1)")
    volume_cap_m3: float = Field(ge=0, le=1_000_000, allow_inf_nan=False,
                                 description="deficit allowed in each balance window the maintenance overlaps")

    @model_validator(mode="after")
    def _span(self) -> MaintenanceBody:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        if self.end - self.start > MAX_MAINTENANCE:
            raise ValueError(f"a declared maintenance lasts at most {MAX_MAINTENANCE.days} days: declare longer "
                             "work as several windows")
        if not self.reason.strip():
            raise ValueError("reason: say what is done, e.g. 回扬 R1")
        return self

    def window(self) -> MaintenanceWindow:
        return MaintenanceWindow.model_validate({"from": self.start, "to": self.end, "reason": self.reason.strip(),
                                                 "volume_cap_m3": self.volume_cap_m3})


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


def _step_seconds(step: str, start: datetime, stop: datetime) -> int:
    """A history route's `step` in seconds, refused (422) when unreadable or too fine for the range."""
    try:
        step_s = int(parse_duration(step).total_seconds())
    except ValueError as exc:
        raise HTTPException(422, f"step: {exc}") from None
    if step_s < 1 or (stop - start).total_seconds() / step_s > MAX_POINTS:
        most = f"{MAX_POINTS:,}".replace(",", " ")
        raise HTTPException(422, f"step: too fine for this range (at most {most} points per series)")
    return step_s


def _actor(who: Principal) -> Actor:
    return Actor(who.name, who.role)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _value(v: Any) -> Any:
    """A DataFrame cell as JSON: a missing field (NaN) is null."""
    return None if isinstance(v, float) and math.isnan(v) else v


def create_app(service: Service) -> FastAPI:
    config = service.config
    auth = Authenticator(config.api)
    viewer = Depends(auth.require("viewer"))
    enforcer = Depends(auth.require("enforcement"))
    admin = Depends(auth.require("admin"))
    sites_by_id = {s.id: s for s in config.sites}
    # Swagger UI from files shipped in a package (no CDN), with no call to an online validator; no ReDoc (it
    # loads its logo from a CDN)
    app = FastAPIOffline(title="gshp-monitor", version=__version__,
                         description="Groundwater balance monitoring for open-loop ground-source heat-pump sites",
                         redoc_url=None, swagger_ui_parameters={"validatorUrl": None})
    app.add_middleware(HostCheck, settings=config.api)

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
        history = [{"ts": p.ts.isoformat(), "extraction_m3h": round(p.extraction_m3h, 3),
                    "reinjection_m3h": round(p.reinjection_m3h, 3), "deficit_m3h": round(p.deficit_m3h, 3)}
                   for p in service.live.history(site.id)]
        return {**status.summary(), "operator": site.operator, "location": site.location,
                "meters": status.meters, "history": history, "alerts": alerts,
                "maintenance": maintenance_view(site)}

    @app.get("/api/sites/{site_id}/readings", tags=["api"])
    def site_readings(site_id: str, from_: Annotated[str, Query(alias="from")],
                      to: str | None = None, step: str = "5m", who: Principal = viewer) -> dict[str, Any]:
        """Mean rate and last total per meter and step, from InfluxDB."""
        site = visible_site(site_id, who)
        start = _time(from_, "from")
        stop = _time(to, "to") or datetime.now(UTC)
        assert start is not None
        step_s = _step_seconds(step, start, stop)
        source = service.reader.source("flow", start, stop, timedelta(seconds=step_s))
        q = (f"SELECT mean(rate_m3h) AS rate_m3h, last(total_m3) AS total_m3 FROM {source} "
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
            m["points"].append({"ts": d["time"].isoformat(), "rate_m3h": _value(d.get("rate_m3h")),
                                "total_m3": _value(d.get("total_m3"))})
        return {"site": site.id, "from": start.isoformat(), "to": stop.isoformat(), "step_s": step_s,
                "meters": list(series.values())}

    @app.get("/api/sites/{site_id}/balance", tags=["api"])
    def site_balance(site_id: str, from_: Annotated[str, Query(alias="from")], to: str | None = None,
                     window: str = "1h", step: str = "5m", who: Principal = viewer) -> dict[str, Any]:
        """The balance over the trailing window 1h or 24h, as written at each evaluation, from InfluxDB:
        per step, the last balance written in it (`ts` is the step's start, as in `/readings`)."""
        site = visible_site(site_id, who)
        if window not in BOARD_WINDOWS:
            raise HTTPException(422, f"window: {' or '.join(BOARD_WINDOWS)}")
        start, stop = _time(from_, "from"), _time(to, "to") or datetime.now(UTC)
        assert start is not None
        step_s = _step_seconds(step, start, stop)
        # one selector with the other fields: every value of a step comes from the same balance point
        source = service.reader.source("balance", start, stop, timedelta(seconds=step_s))
        q = (f"SELECT last(extracted_m3) AS extracted_m3, reinjected_m3, deficit_m3, deficit_pct, complete "
             f"FROM {source} WHERE site = {quote_literal(site.id)} AND \"window\" = {quote_literal(window)} "
             f"AND time >= {quote_literal(start.isoformat())} AND time < {quote_literal(stop.isoformat())} "
             f"GROUP BY time({step_s}s) fill(none)")
        try:
            df = service.reader.query(q)
        except QueryError as exc:
            raise HTTPException(503, f"history is unavailable: {exc}") from None
        points = [] if df.empty else [
            {"ts": r["time"].isoformat(), **{k: _value(r.get(k)) for k in (
                "extracted_m3", "reinjected_m3", "deficit_m3", "deficit_pct", "complete")}}
            for r in df.to_dict("records")]
        return {"site": site.id, "window": window, "from": start.isoformat(), "to": stop.isoformat(),
                "step_s": step_s, "points": points}

    # -- declared maintenance ------------------------------------------------------------------------

    def maintenance_view(site: Site) -> list[dict[str, Any]]:
        """Every window declared for a site, from the config or through the API (who and when), in time order."""
        declared: dict[MaintenanceWindow, list[DeclaredMaintenance]] = {}
        for m in service.store.maintenance(site.id):
            declared.setdefault(m.window, []).append(m)
        out = []
        for w in service.engine.maintenance(site.id):
            d = declared[w].pop(0) if declared.get(w) else None
            out.append({"start": w.start.isoformat(), "end": w.end.isoformat(), "reason": w.reason,
                        "volume_cap_m3": w.volume_cap_m3, "source": "api" if d else "config",
                        "declared_by": d.declared_by if d else None, "declared_at": d.declared_at if d else None})
        return out

    @app.get("/api/sites/{site_id}/maintenance", tags=["api"])
    def list_maintenance(site_id: str, who: Principal = viewer) -> dict[str, Any]:
        """Declared maintenance (e.g. backwashing 回扬) of a site: config and API windows, past ones too."""
        site = visible_site(site_id, who)
        return {"site": site.id, "maintenance": maintenance_view(site)}

    @app.post("/api/sites/{site_id}/maintenance", tags=["api"], status_code=201)
    def declare_maintenance(site_id: str, body: MaintenanceBody, who: Principal = enforcer) -> dict[str, Any]:
        """Declare a maintenance window: a balance deficit inside it and under `volume_cap_m3` does not alert,
        one beyond the cap does. Stored (it survives a restart), audit-logged, and listed in the site's
        history and the daily report; a declaration cannot be withdrawn."""
        site = visible_site(site_id, who)
        window = body.window()
        stored = audited.declare_maintenance(service.store, service.audit, _actor(who), site.id, window, _now())
        service.engine.declare_maintenance(site.id, window)
        return {"site": site.id, "id": stored.id, "maintenance": maintenance_view(site)}

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
        audited.acknowledge_alert(service.store, service.audit, _actor(who), a.id, _now(), body.comment or None)
        service.live.publish("ack", {"id": a.id, "site": a.site, "by": who.name}, a.site)
        return alert_view(visible_alert(alert_id, who))

    @app.post("/api/alerts/{alert_id}/notes", tags=["api"])
    def annotate_alert(alert_id: str, body: NoteBody, who: Principal = enforcer) -> dict[str, Any]:
        a = visible_alert(alert_id, who)
        audited.annotate_alert(service.store, service.audit, _actor(who), a.id, _now(), body.text)
        return alert_view(visible_alert(alert_id, who))

    @app.post("/api/alerts/{alert_id}/close", tags=["api"])
    def close_alert(alert_id: str, body: CloseBody, who: Principal = enforcer) -> dict[str, Any]:
        a = visible_alert(alert_id, who)
        outcome = body.outcome.value if isinstance(body.outcome, Outcome) else body.outcome
        audited.close_alert(service.store, service.audit, _actor(who), a.id, _now(), outcome, body.text)
        return alert_view(visible_alert(alert_id, who))

    @app.get("/api/audit", tags=["api"])
    def audit(limit: int = Query(200, ge=1, le=5000),
              who: Principal = admin) -> dict[str, Any]:
        return {"entries": service.audit.entries(limit)}

    # -- live stream ---------------------------------------------------------------------------------

    @app.get("/api/stream", tags=["api"])
    async def stream(request: Request, site: str | None = None, who: Principal = viewer) -> StreamingResponse:
        """Server-sent events: `reading` (a meter's newest reading: site, meter, role, ts, rate_m3h, total_m3,
        signal_pct, error_code), `flow` (a site's summed flows), `alert` (transitions, in the alert event
        shape), `ack`. `site` limits the stream to one site; a district-limited token sees its districts."""
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
