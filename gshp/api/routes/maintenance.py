"""Declared maintenance of a site (e.g. backwashing 回扬): listed for everyone, declared by enforcement."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import APIRouter
from pydantic import AwareDatetime, BaseModel, Field, model_validator

from gshp.api.deps import Audit, Ctx, Enforcer, ManagedSite, Rules, Store, ViewedSite
from gshp.api.models import MaintenanceDeclared, MaintenanceList
from gshp.api.views import maintenance_out
from rules.settings import MaintenanceWindow

router = APIRouter(tags=["api"])

MAX_MAINTENANCE = timedelta(days=7)
"""Longest maintenance window the API accepts: its cap allows a deficit in every balance window it overlaps,
so an open-ended declaration would blind the site. Longer work is declared day by day (or in the config)."""


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
def list_maintenance(site: ViewedSite, ctx: Ctx, store: Store, engine: Rules) -> MaintenanceList:
    """Declared maintenance (e.g. backwashing 回扬) of a site: config and API windows, past ones too."""
    return MaintenanceList(site=site.id, maintenance=maintenance_out(store, engine, site, ctx.times))


@router.post("/api/sites/{site_id}/maintenance", status_code=201)
def declare_maintenance(site: ManagedSite, body: MaintenanceBody, who: Enforcer, ctx: Ctx, store: Store,
                        engine: Rules, audit: Audit) -> MaintenanceDeclared:
    """Declare a maintenance window: a balance deficit inside it and under `volume_cap_m3` does not alert,
    one beyond the cap does. Stored (it survives a restart), audit-logged, and listed in the site's
    history and the daily report; a declaration cannot be withdrawn."""
    window = body.window()
    stored = store.declare_maintenance(site.id, window, who.name, datetime.now(UTC).isoformat(timespec="seconds"))
    engine.declare_maintenance(site.id, window)
    audit.write(who, "maintenance", site.id, {
        "start": window.start.isoformat(), "end": window.end.isoformat(), "reason": window.reason,
        "volume_cap_m3": window.volume_cap_m3})
    return MaintenanceDeclared(site=site.id, id=stored.id, maintenance=maintenance_out(store, engine, site, ctx.times))
