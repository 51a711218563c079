"""Declared maintenance of a site (e.g. backwashing 回扬): listed for everyone, declared by enforcement."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter
from pydantic import AwareDatetime, BaseModel, Field, model_validator

from collector.influx.reader import InfluxReader, QueryError, quote_literal
from collector.model import Role, Site
from gshp.api.deps import Audit, Enforcer, ManagedSite, Reader, Rules, ServiceClock, Store, ViewedSite, Zone
from gshp.api.errors import refused
from gshp.api.models import MaintenanceDeclared, MaintenanceList
from gshp.api.views import maintenance_out
from rules import audited
from rules.audit import Actor
from rules.settings import MaintenanceWindow

router = APIRouter(tags=["api"])

MAX_MAINTENANCE = timedelta(days=7)
"""Longest maintenance window the API accepts: its cap allows a deficit in every balance window it overlaps,
so an open-ended declaration would blind the site. Longer work is declared day by day (or in the config)."""


MAX_BACKDATE = timedelta(minutes=15)
"""How far in the past a declared maintenance may start: a window declared after the fact would excuse a
discharge that already happened."""

CAPACITY_HISTORY = timedelta(days=30)
"""Without `max_flow_m3h` on a meter, its capacity is the highest rate it reported over this span."""


def extraction_capacity_m3h(site: Site, reader: InfluxReader, now: datetime) -> float | None:
    """The most the site can extract per hour: the sum over its extraction meters of `max_flow_m3h`, or of the
    highest rate each reported in the last `CAPACITY_HISTORY`; None when a meter has neither."""
    meters = [m for m in site.meters if m.role is Role.EXTRACTION or any(p.role is Role.EXTRACTION for p in m.roles)]
    rated = {m.id: m.max_flow_m3h for m in meters if m.max_flow_m3h is not None}
    if len(rated) < len(meters):
        start = now - CAPACITY_HISTORY
        df = reader.query(f"SELECT max(rate_m3h) AS peak FROM flow WHERE site = {quote_literal(site.id)} "
                          f"AND time >= {quote_literal(start.isoformat())} "
                          f"AND time <= {quote_literal(now.isoformat())} "
                          "GROUP BY meter")
        for row in df.to_dict("records"):
            peak = row.get("peak")
            if row.get("meter") not in rated and isinstance(peak, float | int) and not math.isnan(peak) and peak > 0:
                rated[str(row["meter"])] = float(peak)
    if len(rated) < len(meters):
        return None
    return sum(rated[m.id] for m in meters)


def check_claim(site: Site, body: MaintenanceBody, reader: InfluxReader, now: datetime) -> None:
    """422 when a declaration could cover a discharge: starting more than `MAX_BACKDATE` before `now` (the
    service's clock), or allowing more deficit than the site can extract over the window."""
    if body.start < now - MAX_BACKDATE:
        now_shown = now.astimezone(body.start.tzinfo).isoformat(timespec="seconds")
        raise refused(422, f"start：维护最多只能从 {MAX_BACKDATE.seconds // 60} 分钟前开始（现在是 {now_shown}），"
                           "已完成的作业不能事后申报",
                      f"start: a maintenance may start at most {MAX_BACKDATE.seconds // 60} minutes in the past "
                      f"(it is {now_shown} now); work already done cannot be declared after the fact")
    try:
        rate = extraction_capacity_m3h(site, reader, now)
    except QueryError as exc:
        raise refused(503, "无法用站点历史数据核对 volume_cap_m3",
                      f"cannot check volume_cap_m3 against the site's history: {exc}") from None
    if rate is None:
        raise refused(422, "volume_cap_m3：站点抽水能力未知（抽水流量计未配置 max_flow_m3h，也无历史数据），"
                           "请在配置中设置 max_flow_m3h",
                      "volume_cap_m3: the site's extraction capacity is unknown (no max_flow_m3h on its "
                      "extraction meters and no history): set max_flow_m3h in the config")
    hours = (body.end - body.start).total_seconds() / 3600
    if body.volume_cap_m3 > rate * hours:
        raise refused(422, f"volume_cap_m3：最多 {rate * hours:.1f} m³，"
                           f"即站点以 {rate:g} m³/h 在 {hours:g} 小时内的抽水量",
                      f"volume_cap_m3: at most {rate * hours:.1f} m³, what the site can extract in "
                      f"{hours:g} h at {rate:g} m³/h")


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


@router.get("/api/sites/{site_id}/maintenance")
def list_maintenance(site: ViewedSite, times: Zone, store: Store, engine: Rules) -> MaintenanceList:
    """Declared maintenance (e.g. backwashing 回扬) of a site: config and API windows, past ones too."""
    return MaintenanceList(site=site.id, maintenance=maintenance_out(store, engine, site, times))


@router.post("/api/sites/{site_id}/maintenance", status_code=201)
def declare_maintenance(site: ManagedSite, body: MaintenanceBody, who: Enforcer, times: Zone, clock: ServiceClock,
                        store: Store, engine: Rules, audit: Audit, reader: Reader) -> MaintenanceDeclared:
    """Declare a maintenance window: a balance deficit inside it and under `volume_cap_m3` does not alert,
    one beyond the cap does. It may start at most 15 minutes in the past, and its cap is at most what the
    site can extract over it (its extraction meters' `max_flow_m3h`, else their highest rate in 30 days).
    Declared while an incident of the site is open, it excuses nothing: it is recorded on the incident as a
    claim for the officer to judge (`claim: true`). Stored (it survives a restart), audited, and listed in
    the site's history and the daily report; a declaration cannot be withdrawn."""
    check_claim(site, body, reader, clock.now())
    window = body.window()
    stored = audited.declare_maintenance(store, audit, Actor(who.name, who.role), site.id, window,
                                         datetime.now(UTC).isoformat(timespec="seconds"))
    claim = engine.declare_maintenance(site.id, window, who.name, datetime.now(UTC))
    return MaintenanceDeclared(site=site.id, id=stored.id, claim=claim,
                               maintenance=maintenance_out(store, engine, site, times))
