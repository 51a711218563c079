"""The sites a caller sees: status, live flows, balance, district counts, and one site's page."""

from __future__ import annotations

from datetime import date

from fastapi import APIRouter

from collector.model import MeterRecord
from gshp.api.deps import Live, Rules, ServiceClock, Statuses, Store, ViewedSite, ViewerScope, Zone
from gshp.api.models import (
    CalibrationOut,
    DistrictCount,
    FlowPoint,
    LatestReading,
    MeterRecordOut,
    MeterStatus,
    SiteCompliance,
    SiteDetail,
    SiteLocation,
    SitesPage,
)
from gshp.api.status import district_counts
from gshp.api.views import alert_out, drained_out, maintenance_out, site_summary
from rules.compliance import calibration_overdue

router = APIRouter(tags=["api"])

MAX_SITE_ALERTS = 100
"""A site's page lists its newest alerts, at most this many."""


def _record(record: MeterRecord | None, today: date) -> MeterRecordOut | None:
    if record is None:
        return None
    cal = record.calibration
    return MeterRecordOut(serial=record.serial, model=record.model, installed=record.installed,
                          calibration=None if cal is None else CalibrationOut(
                              number=cal.number, calibrated=cal.calibrated, next_due=cal.next_due,
                              overdue=calibration_overdue(cal.next_due, today) > 0))


@router.get("/api/sites/{site_id}/compliance")
def site_compliance(site: ViewedSite, engine: Rules, times: Zone) -> SiteCompliance:
    """The site's permit standing: the permit and its status, this year's extraction against the quota (used
    and projected at the current pace), the extraction's rate peaks against the permitted maximum, and the
    compliance rules pending or firing (`rules.compliance`)."""
    body = engine.compliance(site.id)
    year, rates = body["year"], body["rates"]
    if year is not None:
        year = {**year, "since": times.maybe(year["since"]), "through": times.maybe(year["through"])}
    rates = {**rates, "peak_24h_at": times.maybe(rates["peak_24h_at"]),
             "peak_year_at": times.maybe(rates["peak_year_at"])}
    return SiteCompliance.model_validate({**body, "year": year, "rates": rates})


@router.get("/api/sites")
def list_sites(scope: ViewerScope, statuses: Statuses, clock: ServiceClock, times: Zone,
               district: str | None = None) -> SitesPage:
    """Every visible site (of one district with `district`), and the counts of every visible district.
    `now` is the service's clock: data time when the service runs on a simulated clock."""
    every = statuses(scope.sites)
    shown = {s.id for s in scope.filter(district)}
    return SitesPage(now=times.at(clock.now()), timezone=times.name,
                     sites=[site_summary(s, times) for s in every if s.site.id in shown],
                     districts=[DistrictCount(**{**d, "drained_today": drained_out(d["drained_today"], times)})
                                for d in district_counts(every)])


@router.get("/api/sites/{site_id}")
def get_site(site: ViewedSite, statuses: Statuses, clock: ServiceClock, times: Zone, live: Live, store: Store,
             engine: Rules) -> SiteDetail:
    """A site's status, meters with their latest reading, recent live flows, newest alerts and maintenance."""
    (status,) = statuses([site])
    today = clock.now().astimezone(times.tz).date()
    meters = [MeterStatus(id=m["id"], role=m["role"], source=m["source"], status=m["status"],
                          latest=None if m["latest"] is None else LatestReading.model_validate(
                              {**m["latest"], "ts": times.at(m["latest"]["ts"])}), arrival_pct=m["arrival_pct"],
                          record=_record(site.meter(m["id"]).record, today))
              for m in status.meters]
    history = [FlowPoint(ts=times.at(p.ts), extraction_m3h=round(p.extraction_m3h, 3),
                         reinjection_m3h=round(p.reinjection_m3h, 3), deficit_m3h=round(p.deficit_m3h, 3))
               for p in live.history(site.id)]
    alerts = [alert_out(store, a, times) for a in store.history(site.id)[::-1][:MAX_SITE_ALERTS]]
    return SiteDetail(**site_summary(status, times).model_dump(), operator=site.operator,
                      location=None if site.location is None else SiteLocation(**site.location.model_dump()),
                      meters=meters, history=history, alerts=alerts,
                      maintenance=maintenance_out(store, engine, site, times))
