"""Daily balance report (pure): per site and per district, what was extracted and reinjected over one local
day, how much of the day the meters covered, which alerts were active and which maintenance was declared.

Volumes come from the rule engine itself: the day's readings (with a margin on both sides, so the edges can
be interpolated) are fed to an `Engine` exactly as replay feeds it, and the day's intervals are read back
from its ledgers (`Engine.intervals`). So a report's volumes are reset-aware, interpolated at midnight, and
equal to the engine's balance over the same span. Counter events (resets, wraps, rejected jumps) come from
`counters.increase` over each meter's readings.

An interval is *covered* when every meter of the site has a known volume in it. Coverage is the share of
the day's intervals that are covered; the volumes are summed over the covered intervals only, so the two
sides are always compared over the same time. A day below 100 % coverage is marked incomplete.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import TYPE_CHECKING

from collector.model import Meter, Role, Site, expected_interval
from rules.arrival import NOTHING, Arrival, Counted, arrival
from rules.counters import StepKind, increase
from rules.engine import Engine
from rules.roles import role_on
from rules.settings import MaintenanceWindow, RulesSettings
from rules.windows import IntervalSeries

if TYPE_CHECKING:  # numpy is imported by the computation only: the API and the CLI import this module at start
    import numpy as np

    from rules.replay import Readings

__all__ = [
    "ONLINE_THRESHOLD_PCT",
    "AlertSpan",
    "DailyReport",
    "DistrictDay",
    "ReportError",
    "SiteDay",
    "compute_daily_report",
    "day_bounds",
    "district_days",
    "reading_span",
    "site_day",
]

ONLINE_THRESHOLD_PCT = 90.0  # a site counts as online on a day when its coverage reaches this
COUNTER_EVENTS = (StepKind.RESET, StepKind.WRAP, StepKind.JUMP)


class ReportError(Exception):
    """A report cannot be computed from what was given."""


@dataclass(frozen=True, slots=True)
class AlertSpan:
    """One alert as a report sees it: active over [start, end) (end None = still open)."""

    id: str
    site: str
    rule: str
    kind: str  # "discharge" | "data_quality"
    severity: str
    start: datetime
    end: datetime | None
    fired: bool  # reached `firing` (a pending alert that cleared is not counted)

    def active_during(self, start: datetime, end: datetime) -> bool:
        return self.start < end and (self.end is None or self.end > start)


@dataclass(frozen=True, slots=True)
class SiteDay:
    site: str
    name: str
    district: str
    extracted_m3: float  # over the covered intervals
    reinjected_m3: float
    discharge_meter_m3: float | None  # `discharge`-role meters (drain pipes), None when the site has none
    coverage_pct: float
    intervals: int  # intervals in the day
    covered: int  # intervals every meter covered
    counter_events: int  # resets, wraps and rejected jumps during the day
    alerts: Mapping[str, int]  # kind → number of alerts active during the day
    alert_rules: tuple[str, ...]  # the rules of those alerts, sorted, unique
    maintenance: tuple[MaintenanceWindow, ...]  # declared windows overlapping the day
    arrival: Arrival = NOTHING  # reports of its meters expected and arrived during the day (到报率)

    @property
    def arrival_pct(self) -> float | None:
        return self.arrival.pct

    @property
    def deficit_m3(self) -> float:
        return self.extracted_m3 - self.reinjected_m3

    @property
    def deficit_pct(self) -> float | None:
        return 100.0 * self.deficit_m3 / self.extracted_m3 if self.extracted_m3 > 0 else None

    @property
    def complete(self) -> bool:
        return self.covered == self.intervals

    @property
    def alert_count(self) -> int:
        return sum(self.alerts.values())


@dataclass(frozen=True, slots=True)
class DistrictDay:
    district: str | None  # None = all districts of the report
    sites: int
    extracted_m3: float
    reinjected_m3: float
    discharge_meter_m3: float | None
    online: int  # sites with coverage ≥ the online threshold
    complete: int  # sites with 100 % coverage
    with_alerts: int  # sites with at least one alert active during the day
    with_discharge_alerts: int
    with_maintenance: int
    arrival: Arrival = NOTHING  # its sites' reports expected and arrived

    @property
    def arrival_pct(self) -> float | None:
        return self.arrival.pct

    @property
    def deficit_m3(self) -> float:
        return self.extracted_m3 - self.reinjected_m3

    @property
    def deficit_pct(self) -> float | None:
        return 100.0 * self.deficit_m3 / self.extracted_m3 if self.extracted_m3 > 0 else None

    @property
    def online_pct(self) -> float | None:
        return 100.0 * self.online / self.sites if self.sites else None


@dataclass(frozen=True, slots=True)
class DailyReport:
    day: date
    timezone: str
    start: datetime  # local midnight, in the report's zone
    end: datetime  # the next local midnight
    district: str | None  # the district filter, None = all
    online_threshold_pct: float
    step_s: float  # the evaluation interval the coverage is counted in
    alerts_known: bool  # False when no alert store was read: alert columns stay empty, not zero
    sites: tuple[SiteDay, ...]
    districts: tuple[DistrictDay, ...]
    total: DistrictDay
    notes: tuple[str, ...] = field(default=())


def day_bounds(day: date, tz: tzinfo) -> tuple[datetime, datetime]:
    """The local day [00:00, 24:00) as aware datetimes in `tz` (23 or 25 hours long across a DST change)."""
    start = datetime.combine(day, time(0), tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
    # normalise through UTC so arithmetic and comparisons hold across DST changes
    return start.astimezone(UTC).astimezone(tz), end.astimezone(UTC).astimezone(tz)


def reading_span(day: date, tz: tzinfo, settings: RulesSettings, sites: Sequence[Site]
                 ) -> tuple[datetime, datetime]:
    """The readings a day's report needs: the day plus a margin on each side wide enough that each
    meter has a reading around midnight (its gap tolerance plus one interval)."""
    start, end = day_bounds(day, tz)
    gap = max([settings.resolve(s.id, s.district).gap_tolerance for s in sites] + [settings.gap_tolerance])
    margin = gap + settings.evaluate_every
    return start - margin, end + margin


def _counter_events(readings: Readings, idx: np.ndarray, start: float, end: float,
                    settings: RulesSettings, site: Site) -> int:
    rs = settings.resolve(site.id, site.district)
    ts = readings.ts[idx]
    totals = [readings.total[i] for i in idx.tolist()]
    keep = [n for n, t in enumerate(totals) if t is not None]
    if len(keep) < 2:
        return 0
    t_arr = ts[keep].tolist()
    v_arr = [float(t) for t in totals if t is not None]
    a, b = max(start, t_arr[0]), min(end, t_arr[-1])
    if b <= a:
        return 0
    inc = increase(t_arr, v_arr, a, b, rs.gap_tolerance.total_seconds(), rs.counters)
    return sum(1 for _, kind in inc.events if kind in COUNTER_EVENTS)


def site_day(site: Site, day: date, tz: tzinfo, series: Mapping[str, IntervalSeries],
             alerts: Iterable[AlertSpan], maintenance: Iterable[MaintenanceWindow], counter_events: int = 0,
             arrived: Arrival = NOTHING) -> SiteDay:
    """One site's day from its meters' interval series (as `Engine.intervals` gives them for the day)."""
    start, end = day_bounds(day, tz)
    missing = [m.id for m in site.meters if m.id not in series]
    if missing:
        raise ReportError(f"site {site.id}: no interval series for meter(s) {', '.join(missing)}")
    lengths = {len(series[m.id].volumes) for m in site.meters}
    if len(lengths) != 1:
        raise ReportError(f"site {site.id}: the meters' interval series differ in length")
    n = lengths.pop()
    covered = [all(series[m.id].known[k] for m in site.meters) for k in range(n)]
    sums = {Role.EXTRACTION: 0.0, Role.REINJECTION: 0.0, Role.DISCHARGE: 0.0}
    for m in site.meters:
        role = role_on(m, day)  # roles change only at local midnight: one role for the whole day
        s = series[m.id]
        sums[role] += math.fsum(v for v, c in zip(s.volumes, covered, strict=True) if c)
    has_drain = any(role_on(m, day) is Role.DISCHARGE for m in site.meters)
    active = [a for a in alerts if a.site == site.id and a.fired and a.active_during(start, end)]
    kinds: dict[str, int] = {}
    for a in active:
        kinds[a.kind] = kinds.get(a.kind, 0) + 1
    overlapping = tuple(sorted((m for m in maintenance if m.start < end and m.end > start),
                               key=lambda m: m.start))
    return SiteDay(
        site=site.id, name=site.name, district=site.district, extracted_m3=sums[Role.EXTRACTION],
        reinjected_m3=sums[Role.REINJECTION], discharge_meter_m3=sums[Role.DISCHARGE] if has_drain else None,
        coverage_pct=100.0 * sum(covered) / n if n else 0.0, intervals=n, covered=sum(covered),
        counter_events=counter_events, alerts=kinds, alert_rules=tuple(sorted({a.rule for a in active})),
        maintenance=overlapping, arrival=arrived)


def district_days(sites: Sequence[SiteDay], online_threshold_pct: float = ONLINE_THRESHOLD_PCT
                  ) -> tuple[tuple[DistrictDay, ...], DistrictDay]:
    """Totals per district (in the order districts first appear) and over every site."""
    order: list[str] = []
    for s in sites:
        if s.district not in order:
            order.append(s.district)

    def total(name: str | None, group: list[SiteDay]) -> DistrictDay:
        drains = [s.discharge_meter_m3 for s in group if s.discharge_meter_m3 is not None]
        return DistrictDay(
            district=name, sites=len(group), extracted_m3=math.fsum(s.extracted_m3 for s in group),
            reinjected_m3=math.fsum(s.reinjected_m3 for s in group),
            discharge_meter_m3=math.fsum(drains) if drains else None,
            online=sum(1 for s in group if s.coverage_pct >= online_threshold_pct),
            complete=sum(1 for s in group if s.complete),
            with_alerts=sum(1 for s in group if s.alert_count),
            with_discharge_alerts=sum(1 for s in group if s.alerts.get("discharge", 0)),
            with_maintenance=sum(1 for s in group if s.maintenance),
            arrival=sum((s.arrival for s in group), NOTHING))

    per = tuple(total(d, [s for s in sites if s.district == d]) for d in order)
    return per, total(None, list(sites))


def _interval(intervals: Mapping[tuple[str, str], timedelta] | None, site: str, meter: Meter) -> timedelta:
    if intervals is not None and (site, meter.id) in intervals:
        return intervals[site, meter.id]
    return expected_interval(meter, {})


def compute_daily_report(day: date, tz: tzinfo, sites: Sequence[Site], settings: RulesSettings,
                         readings: Readings, alerts: Iterable[AlertSpan] | None = None,
                         district: str | None = None,
                         online_threshold_pct: float = ONLINE_THRESHOLD_PCT,
                         maintenance: Mapping[str, Iterable[MaintenanceWindow]] | None = None,
                         intervals: Mapping[tuple[str, str], timedelta] | None = None,
                         counted: Counted | None = None, today: date | None = None) -> DailyReport:
    """The report of one local day. `readings` should span `reading_span(day, …)`; readings outside it
    are left out. `alerts` None means no alert record was available (not that there were none).
    A day whose readings stop before midnight is in progress, its figures up to the newest reading — unless
    it is before `today` (the local date now): a day that is over is judged whole, what was not read in it
    uncovered.
    `maintenance` holds windows declared outside the config (through the API), per site id; they are listed
    beside the config's. `intervals` gives each meter's expected reporting interval for the arrival rate
    (default: `collector.model.expected_interval` without gateways). `counted`: `readings` are the rows of a
    downsampled series, and the arrival rate is counted from the readings each of its intervals held. Sites
    are listed in config order, grouped by district."""
    import numpy as np

    chosen = [s for s in sites if district is None or s.district == district]
    if district is not None and not chosen:
        known = ", ".join(sorted({s.district for s in sites})) or "none are configured"
        raise ReportError(f"no site in district {district!r} (known districts: {known})")
    start, end = day_bounds(day, tz)
    span_start, span_end = reading_span(day, tz, settings, chosen or sites)
    engine = Engine(chosen, settings, tz, keep=span_end - span_start + settings.evaluate_every)
    for s in chosen:
        for window in (maintenance or {}).get(s.id, ()):
            engine.declare_maintenance(s.id, window)
    # only the span: the ledgers keep that much, and older readings would push the day out of them
    i0, i1 = (int(x) for x in np.searchsorted(readings.ts, [span_start.timestamp(), span_end.timestamp()],
                                              side="left"))
    engine.ingest_columns(readings.site, readings.meter, readings.ts.tolist(), readings.rate, readings.total,
                          readings.signal, readings.error, i0, i1, volume=readings.volume or None,
                          period=readings.period or None)
    notes: list[str] = []
    step = engine.step_s
    if start.timestamp() % step or end.timestamp() % step:
        notes.append(f"local midnight is not on the {step:g}s evaluation grid: the day's edges are moved "
                     "back to the interval holding them")
    if i1 > i0 and float(readings.ts[i1 - 1]) < end.timestamp() and (today is None or day >= today):
        # the day is in progress: its figures, coverage included, run up to the newest reading, not midnight
        upto = datetime.fromtimestamp(float(readings.ts[i1 - 1]) // step * step, tz)
        if upto > start:
            notes.append(f"day in progress: figures up to {upto:%H:%M} / 当日未结束：数据截至 {upto:%H:%M}")
            end = upto
    alert_list = list(alerts) if alerts is not None else []
    rows: dict[tuple[str, str], list[int]] = {}
    for i in range(i0, i1):
        rows.setdefault((readings.site[i], readings.meter[i]), []).append(i)  # sorted by ts, as readings are
    days = []
    for s in chosen:
        events = sum(_counter_events(readings, np.asarray(rows.get((s.id, m.id), []), dtype=np.int64),
                                     start.timestamp(), end.timestamp(), settings, s) for m in s.meters)
        if counted is not None:
            arrived = sum((counted.arrival(s.id, m.id, start.timestamp(), end.timestamp(),
                                           _interval(intervals, s.id, m).total_seconds()) for m in s.meters), NOTHING)
        else:
            arrived = sum((arrival(readings.ts[rows.get((s.id, m.id), [])].tolist(), start.timestamp(),
                                   end.timestamp(), _interval(intervals, s.id, m).total_seconds())
                           for m in s.meters), NOTHING)
        days.append(site_day(s, day, tz, engine.intervals(s.id, start, end), alert_list,
                             engine.maintenance(s.id), events, arrived))
    rank = {d: n for n, d in enumerate(dict.fromkeys(x.district for x in days))}
    by_district = sorted(days, key=lambda d: rank[d.district])
    per, overall = district_days(by_district, online_threshold_pct)
    return DailyReport(day=day, timezone=str(tz), start=start, end=end, district=district,
                       online_threshold_pct=online_threshold_pct, step_s=step, alerts_known=alerts is not None,
                       sites=tuple(by_district),
                       districts=per, total=overall, notes=tuple(notes))
