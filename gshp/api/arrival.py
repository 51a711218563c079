"""`GET /api/sites/{id}/arrival?date=`: a site's arrival rate (到报率) on one local day, per meter and for the
site — expected and arrived reports, the rate, and the slots in which nothing arrived as time ranges.

Days the service keeps in memory come from its `ArrivalBook`; older days are counted from the readings in
InfluxDB with the same pure functions (`rules.arrival`), so both give the same figures.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, tzinfo
from typing import Any

from collector.influx.reader import InfluxReader, QueryError
from collector.model import Site
from gshp.api.errors import refused
from gshp.arrival import ArrivalTracker
from rules.arrival import NOTHING, Arrival, arrival, day_span, missing_ranges, slot_range, slots_of

__all__ = ["arrival_figures", "arrival_route", "arrival_view", "site_arrival_summary"]


def arrival_route(tracker: ArrivalTracker, reader: InfluxReader, site: Site, date_text: str | None,
                  now: float) -> dict[str, Any]:
    """The route: `date` (YYYY-MM-DD, a local day; default today) checked, then `arrival_view`."""
    if date_text is None:
        day = tracker.today(now)
    else:
        try:
            day = datetime.strptime(date_text, "%Y-%m-%d").date()
        except ValueError:
            raise refused(422, "date：请写成 YYYY-MM-DD", "date: write YYYY-MM-DD") from None
    try:
        return arrival_view(tracker, reader, site, day, now)
    except QueryError as exc:
        raise refused(503, "历史数据暂不可用", f"history is unavailable: {exc}") from None


def arrival_figures(a: Arrival) -> dict[str, Any]:
    """Arrival as the API shows it: expected, arrived and the rate in % (None: nothing expected)."""
    return {"expected": a.expected, "arrived": a.arrived, "rate_pct": None if a.pct is None else round(a.pct, 2)}


def _ranges(ranges: list[tuple[float, float]], tz: tzinfo) -> list[dict[str, str]]:
    return [{"from": datetime.fromtimestamp(a, UTC).astimezone(tz).isoformat(),
             "to": datetime.fromtimestamp(b, UTC).astimezone(tz).isoformat()} for a, b in ranges]


def arrival_view(tracker: ArrivalTracker, reader: InfluxReader, site: Site, day: date, now: float) -> dict[str, Any]:
    """The route's answer; raises `collector.influx.reader.QueryError` when a past day needs InfluxDB and it
    is unreachable."""
    book, tz = tracker.book, tracker.tz
    start, end = day_span(day, tz)
    meters = []
    total = NOTHING
    if book.holds(day) or start >= now:
        for m in site.meters:
            a = book.day(site.id, m.id, day, now)
            meters.append({"id": m.id, "role": m.role.value, "interval_s": book.interval(site.id, m.id),
                           **arrival_figures(a), "missing": _ranges(book.missing(site.id, m.id, day, now), tz)})
            total += a
    else:
        df = reader.flow(datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC), site=site.id)
        secs = (df["ts"].astype("datetime64[ns, UTC]").astype("int64") / 1e9).tolist() if len(df) else []
        names = df["meter"].tolist() if len(df) else []
        for m in site.meters:
            every = book.interval(site.id, m.id)
            times = [t for t, name in zip(secs, names, strict=True) if name == m.id]
            a = arrival(times, start, end, every, until=now)
            lo, hi = slot_range(start, end, every, start, now)
            meters.append({"id": m.id, "role": m.role.value, "interval_s": every, **arrival_figures(a),
                           "missing": _ranges(missing_ranges(slots_of(times, start, end, every), start, end, every,
                                                             lo, hi), tz)})
            total += a
    return {"site": site.id, "date": day.isoformat(), "timezone": str(tz),
            "from": datetime.fromtimestamp(start, UTC).astimezone(tz).isoformat(),
            "to": datetime.fromtimestamp(end, UTC).astimezone(tz).isoformat(), **arrival_figures(total),
            "meters": meters}


def site_arrival_summary(tracker: ArrivalTracker, site: Site, now: float) -> tuple[Arrival, dict[str, float | None]]:
    """A site's arrival today (its meters summed) and each meter's rate in % (None: nothing expected yet)."""
    d = tracker.today(now)
    total = NOTHING
    per: dict[str, float | None] = {}
    for m in site.meters:
        a = tracker.book.day(site.id, m.id, d, now)
        total += a
        per[m.id] = None if a.pct is None else round(a.pct, 2)
    return total, per
