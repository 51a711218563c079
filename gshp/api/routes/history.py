"""A site's history from InfluxDB: readings per meter and the balance as written at each evaluation.

Without `from`/`to` a route answers the last 24 hours of data, ending at the site's newest reading (not at
wall-clock time: a simulated clock may run days ahead of it)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter

from collector.influx.reader import QueryError, quote_literal
from collector.model import Site
from gshp.api.deps import Live, Reader, ServiceClock, ViewedSite, Zone
from gshp.api.errors import refused
from gshp.api.models import BalancePage, BalancePoint, MeterSeries, ReadingPoint, ReadingsPage
from gshp.api.params import From, To, parse_time, step_seconds
from gshp.clock import Clock
from gshp.evaluation import BOARD_WINDOWS
from gshp.live import LiveState

router = APIRouter(tags=["api"])


DEFAULT_SPAN = timedelta(hours=24)


def default_window(live: LiveState, clock: Clock, site: Site, start: datetime | None,
                   stop: datetime | None) -> tuple[datetime, datetime]:
    """A history route's [from, to): missing ends make the last `DEFAULT_SPAN` of data, up to the site's newest
    reading (the service's clock before any)."""
    if stop is None:
        newest = live.last_seen(site.id) or clock.now()
        stop = start + DEFAULT_SPAN if start is not None else newest + timedelta(seconds=1)
    return (start if start is not None else stop - DEFAULT_SPAN), stop


def _value(v: Any) -> Any:
    """A DataFrame cell as JSON: a missing field (NaN) is null."""
    return None if isinstance(v, float) and math.isnan(v) else v


@router.get("/api/sites/{site_id}/readings")
def site_readings(site: ViewedSite, reader: Reader, live: Live, clock: ServiceClock, times: Zone,
                  from_: From = None, to: To = None, step: str = "5m") -> ReadingsPage:
    """Mean rate and last total per meter and step, from InfluxDB (`ts` is the step's start)."""
    start, stop = default_window(live, clock, site, parse_time(from_, "from"), parse_time(to, "to"))
    step_s = step_seconds(step, start, stop)
    source = reader.source("flow", start, stop, timedelta(seconds=step_s))
    q = (f"SELECT mean(rate_m3h) AS rate_m3h, last(total_m3) AS total_m3 FROM {source} "
         f"WHERE site = {quote_literal(site.id)} AND time >= {quote_literal(start.isoformat())} "
         f"AND time < {quote_literal(stop.isoformat())} GROUP BY time({step_s}s), meter, role fill(none)")
    try:
        df = reader.query(q)
    except QueryError as exc:
        raise refused(503, "历史数据暂不可用", f"history is unavailable: {exc}") from None
    series: dict[str, MeterSeries] = {}
    for row in df.itertuples(index=False):
        d = row._asdict()
        m = series.setdefault(d["meter"], MeterSeries(meter=d["meter"], role=d.get("role"), points=[]))
        m.points.append(ReadingPoint(ts=times.at(d["time"].to_pydatetime()), rate_m3h=_value(d.get("rate_m3h")),
                                     total_m3=_value(d.get("total_m3"))))
    return ReadingsPage.model_validate({"site": site.id, "from": times.at(start), "to": times.at(stop),
                                        "step_s": step_s, "meters": list(series.values())})


@router.get("/api/sites/{site_id}/balance")
def site_balance(site: ViewedSite, reader: Reader, live: Live, clock: ServiceClock, times: Zone,
                 from_: From = None, to: To = None, window: str = "1h", step: str = "5m") -> BalancePage:
    """The balance over the trailing window 1h or 24h, as written at each evaluation, from InfluxDB:
    per step, the last balance written in it (`ts` is the step's start, as in `/readings`)."""
    if window not in BOARD_WINDOWS:
        raise refused(422, f"window：可选 {'、'.join(BOARD_WINDOWS)}（收到 {window!r}）",
                      f"window: {' or '.join(BOARD_WINDOWS)} (got {window!r})")
    start, stop = default_window(live, clock, site, parse_time(from_, "from"), parse_time(to, "to"))
    step_s = step_seconds(step, start, stop)
    # one selector with the other fields: every value of a step comes from the same balance point
    source = reader.source("balance", start, stop, timedelta(seconds=step_s))
    q = (f"SELECT last(extracted_m3) AS extracted_m3, reinjected_m3, deficit_m3, deficit_pct, complete "
         f"FROM {source} WHERE site = {quote_literal(site.id)} AND \"window\" = {quote_literal(window)} "
         f"AND time >= {quote_literal(start.isoformat())} AND time < {quote_literal(stop.isoformat())} "
         f"GROUP BY time({step_s}s) fill(none)")
    try:
        df = reader.query(q)
    except QueryError as exc:
        raise refused(503, "历史数据暂不可用", f"history is unavailable: {exc}") from None
    points = [] if df.empty else [
        BalancePoint(ts=times.at(r["time"].to_pydatetime()), **{k: _value(r.get(k)) for k in (
            "extracted_m3", "reinjected_m3", "deficit_m3", "deficit_pct", "complete")})
        for r in df.to_dict("records")]
    return BalancePage.model_validate({"site": site.id, "window": window, "from": times.at(start),
                                       "to": times.at(stop), "step_s": step_s, "points": points})
