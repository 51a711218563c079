"""Monthly and annual compliance report (pure): the daily reports of a calendar month or year summed per site
and district, held against each site's permit.

Per site: extraction against the quota's share of the period (the annual quota × the period's days / the
year's days; the whole quota for a year), the reinjection ratio (reinjected / extracted), the incidents open
during the period (all, and compliance), the arrival rate (到报率) and the online rate (在线率: days with
coverage at the online threshold), and for a `suspended` or `sealed` site the check that it stayed dry: a day
is checked when its coverage reaches the online threshold, and dry when less than `DRY_M3` was extracted.
Per district the same summed, with the sealed sites, how many were checked on every day and how many were
found pumping.
"""

from __future__ import annotations

import calendar
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import StrEnum

from alerting.model import Incident, IncidentKind
from collector.model import Site
from rules.arrival import NOTHING, Arrival
from rules.report import DailyReport, ReportError

__all__ = ["DRY_M3", "DistrictPeriod", "Period", "PeriodReport", "SitePeriod", "compute_period_report",
           "period_days"]

DRY_M3 = 1.0
"""A sealed site's day with less extraction than this (m³) is dry (meters idle, a little noise)."""


class Period(StrEnum):
    MONTHLY = "monthly"
    ANNUAL = "annual"


def period_days(period: Period, first: date) -> tuple[date, date]:
    """The calendar month or year holding `first`: its first day and the day after its last."""
    if period is Period.MONTHLY:
        start = first.replace(day=1)
        return start, start + timedelta(days=calendar.monthrange(start.year, start.month)[1])
    start = first.replace(month=1, day=1)
    return start, start.replace(year=start.year + 1)


@dataclass(frozen=True, slots=True)
class SitePeriod:
    site: str
    name: str
    district: str
    days: int
    extracted_m3: float
    reinjected_m3: float
    online_days: int  # days with coverage at the online threshold
    arrival: Arrival
    permit_status: str | None  # None: no permit
    quota_m3: float | None  # the annual quota's share of the period
    incidents: int | None  # open during the period; None when no incident record was read
    compliance_incidents: int | None
    must_be_dry: bool
    checked_days: int  # (suspended / sealed sites) days with coverage at the online threshold
    pumping_days: int  # … of which with extraction

    @property
    def reinjection_pct(self) -> float | None:
        return 100.0 * self.reinjected_m3 / self.extracted_m3 if self.extracted_m3 > 0 else None

    @property
    def quota_used_pct(self) -> float | None:
        return 100.0 * self.extracted_m3 / self.quota_m3 if self.quota_m3 else None

    @property
    def online_pct(self) -> float | None:
        return 100.0 * self.online_days / self.days if self.days else None

    @property
    def arrival_pct(self) -> float | None:
        return self.arrival.pct


@dataclass(frozen=True, slots=True)
class DistrictPeriod:
    district: str | None  # None = every district of the report
    sites: int
    permitted: int  # sites with a permit
    extracted_m3: float
    reinjected_m3: float
    quota_m3: float | None  # summed over the permitted sites
    permitted_extracted_m3: float  # extraction of the permitted sites (against `quota_m3`)
    over_quota: int  # permitted sites above their share
    incidents: int | None
    compliance_incidents: int | None
    sealed: int  # suspended or sealed sites
    sealed_checked: int  # … checked on every day of the period
    sealed_pumping: int  # … found extracting on at least one day
    site_days: int
    online_site_days: int
    arrival: Arrival

    @property
    def reinjection_pct(self) -> float | None:
        return 100.0 * self.reinjected_m3 / self.extracted_m3 if self.extracted_m3 > 0 else None

    @property
    def quota_used_pct(self) -> float | None:
        return 100.0 * self.permitted_extracted_m3 / self.quota_m3 if self.quota_m3 else None

    @property
    def online_pct(self) -> float | None:
        return 100.0 * self.online_site_days / self.site_days if self.site_days else None

    @property
    def arrival_pct(self) -> float | None:
        return self.arrival.pct


@dataclass(frozen=True, slots=True)
class PeriodReport:
    period: Period
    label: str  # 2026-05 / 2026
    start: date
    end: date  # the day after the last day covered
    timezone: str
    district: str | None
    online_threshold_pct: float
    incidents_known: bool
    sites: tuple[SitePeriod, ...]
    districts: tuple[DistrictPeriod, ...]
    total: DistrictPeriod
    notes: tuple[str, ...] = field(default=())


def _site_period(site: Site, days: Sequence[DailyReport], year_days: int, incidents: list[Incident] | None,
                 threshold: float) -> SitePeriod:
    rows = [s for r in days for s in r.sites if s.site == site.id]
    permit = site.permit
    dry_rule = permit is not None and permit.status.must_be_dry
    checked = [s for s in rows if s.coverage_pct >= threshold]
    mine = None if incidents is None else [i for i in incidents if i.site == site.id]
    return SitePeriod(
        site=site.id, name=site.name, district=site.district, days=len(rows),
        extracted_m3=math.fsum(s.extracted_m3 for s in rows), reinjected_m3=math.fsum(s.reinjected_m3 for s in rows),
        online_days=len(checked), arrival=sum((s.arrival for s in rows), NOTHING),
        permit_status=None if permit is None else permit.status.value,
        quota_m3=None if permit is None else permit.annual_quota_m3 * len(rows) / year_days,
        incidents=None if mine is None else len(mine),
        compliance_incidents=None if mine is None else sum(1 for i in mine if i.kind is IncidentKind.COMPLIANCE),
        must_be_dry=dry_rule, checked_days=len(checked) if dry_rule else 0,
        pumping_days=sum(1 for s in checked if s.extracted_m3 >= DRY_M3) if dry_rule else 0)


def _district(name: str | None, group: Sequence[SitePeriod], known: bool) -> DistrictPeriod:
    permitted = [s for s in group if s.quota_m3 is not None]
    sealed = [s for s in group if s.must_be_dry]
    return DistrictPeriod(
        district=name, sites=len(group), permitted=len(permitted),
        extracted_m3=math.fsum(s.extracted_m3 for s in group), reinjected_m3=math.fsum(s.reinjected_m3 for s in group),
        quota_m3=math.fsum(s.quota_m3 or 0.0 for s in permitted) if permitted else None,
        permitted_extracted_m3=math.fsum(s.extracted_m3 for s in permitted),
        over_quota=sum(1 for s in permitted if (s.quota_used_pct or 0.0) > 100.0),
        incidents=sum(s.incidents or 0 for s in group) if known else None,
        compliance_incidents=sum(s.compliance_incidents or 0 for s in group) if known else None,
        sealed=len(sealed), sealed_checked=sum(1 for s in sealed if s.days and s.checked_days == s.days),
        sealed_pumping=sum(1 for s in sealed if s.pumping_days), site_days=sum(s.days for s in group),
        online_site_days=sum(s.online_days for s in group), arrival=sum((s.arrival for s in group), NOTHING))


def compute_period_report(period: Period, days: Sequence[DailyReport], sites: Sequence[Site],
                          incidents: Iterable[Incident] | None, district: str | None = None) -> PeriodReport:
    """The report of the month or year whose daily reports are `days` (consecutive, from its first day; a
    period in progress stops at its newest day). `incidents` None: no incident record was read (the columns
    stay empty, they do not claim zero)."""
    if not days:
        raise ReportError("a monthly or annual report needs at least one day")
    first = days[0].day
    start, end = period_days(period, first)
    if first != start:
        raise ReportError(f"the period starts on {start.isoformat()}, not {first.isoformat()}")
    covered = days[-1].day + timedelta(days=1)
    chosen = [s for s in sites if district is None or s.district == district]
    tz = days[0].start.tzinfo
    assert tz is not None
    in_period: list[Incident] | None = None
    if incidents is not None:
        lo, hi = days[0].start, days[-1].end
        in_period = [i for i in incidents if i.started_at < hi and (i.ended_at is None or i.ended_at > lo)]
    year_days = 366 if calendar.isleap(start.year) else 365
    site_rows = [_site_period(s, days, year_days, in_period, days[0].online_threshold_pct) for s in chosen]
    order = list(dict.fromkeys(s.district for s in site_rows))
    site_rows.sort(key=lambda s: order.index(s.district))
    known = in_period is not None
    per = tuple(_district(d, [s for s in site_rows if s.district == d], known) for d in order)
    notes = [n for r in days for n in r.notes if "审计链头" in n][-1:]
    if covered < end:
        notes.insert(0, f"period in progress: figures up to {days[-1].day.isoformat()} / "
                        f"统计期未结束：数据截至 {days[-1].day.isoformat()}")
    label = f"{start:%Y-%m}" if period is Period.MONTHLY else f"{start:%Y}"
    return PeriodReport(period=period, label=label, start=start, end=covered, timezone=days[0].timezone,
                        district=district, online_threshold_pct=days[0].online_threshold_pct,
                        incidents_known=known, sites=tuple(site_rows), districts=per,
                        total=_district(None, site_rows, known), notes=tuple(notes))
