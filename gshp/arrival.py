"""The live arrival rate (到报率) of every meter: counted as readings are committed, re-built from InfluxDB at
start, exported to Prometheus and judged by the `low_arrival` rule.

`ArrivalTracker` owns the `rules.arrival.ArrivalBook` of the configured meters and the record of when each
meter first appeared in the config (`arrival.json` in the state directory): a meter is judged by
`low_arrival` only once it has been configured a full day, so a new meter does not fire for the hours
before it existed.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import date, datetime, timedelta, tzinfo
from pathlib import Path

from prometheus_client.core import REGISTRY, GaugeMetricFamily
from prometheus_client.registry import Collector

from collector.influx.influxql import quote_literal
from collector.influx.reader import InfluxReader, QueryError
from collector.model import Reading
from rules.arrival import Arrival, ArrivalBook, day_span
from rules.engine import Engine

__all__ = ["JUDGE_AFTER", "TRAILING", "ArrivalTracker"]

log = logging.getLogger(__name__)

TRAILING = timedelta(hours=24)
"""The span `low_arrival` judges."""

JUDGE_AFTER = timedelta(days=1)
"""A meter is judged once it has been configured this long."""

SITES_PER_QUERY = 5
"""Sites per InfluxDB query when re-building: a day of 1-minute slots of 20 meters is ~30 000 rows."""


class ArrivalTracker:
    def __init__(self, intervals: Mapping[tuple[str, str], timedelta], tz: tzinfo, state: Path, now: float,
                 keep_days: int = 3) -> None:
        self.book = ArrivalBook(intervals, tz, keep_days)
        self.tz = tz
        self.since = _configured_since(state, list(intervals), now)
        self.rebuilt = threading.Event()

    def on_readings(self, readings: Sequence[Reading]) -> None:
        self.book.on_readings(readings)

    def export(self, now: Callable[[], float]) -> None:
        """Make this tracker the one `/metrics` shows (one per process)."""
        ARRIVAL_METRICS.tracker, ARRIVAL_METRICS.now = self, now

    def today(self, now: float) -> date:
        return datetime.fromtimestamp(now, self.tz).date()

    def judged(self, site: str, meter: str, now: float) -> float | None:
        """The trailing 24 h arrival rate in %, or None before the meter was configured a full day."""
        if now - self.since.get((site, meter), now) < JUDGE_AFTER.total_seconds():
            return None
        return self.book.trailing(site, meter, now, TRAILING).pct

    def judge(self, engine: Engine, now: float) -> None:
        """Hand every meter's trailing arrival rate to the engine's `low_arrival` rule."""
        for site, meter in self.book.meters:
            engine.note_arrival(site, meter, self.judged(site, meter, now))

    def counts(self, now: float) -> Iterator[tuple[str, str, Arrival]]:
        """Every meter's arrival today (slots ended by `now`)."""
        d = self.today(now)
        for site, meter in self.book.meters:
            yield site, meter, self.book.day(site, meter, d, now)

    def rebuild(self, reader: InfluxReader, now: float) -> int:
        """Mark the slots of the kept days that InfluxDB holds readings in (a restart keeps the day's count);
        returns the slots found. Readings arriving meanwhile are counted as usual (marks only add)."""
        first = self.today(now) - timedelta(days=self.book.keep_days - 1)
        start = day_span(first, self.tz)[0]
        by_site: dict[str, list[str]] = {}
        for site, meter in self.book.meters:
            by_site.setdefault(site, []).append(meter)
        sites = list(by_site)
        found = 0
        try:
            for n in range(0, len(sites), SITES_PER_QUERY):
                chunk = sites[n:n + SITES_PER_QUERY]
                intervals = {self.book.interval(s, m) for s in chunk for m in by_site[s]}
                for every in sorted(intervals):
                    found += self._rebuild_chunk(reader, chunk, every, start, now)
        except QueryError as exc:
            log.warning("arrival rate: cannot re-build the kept days from InfluxDB (%s); counting from now on",
                        exc)
            return found
        finally:
            self.rebuilt.set()
        log.info("arrival rate: re-built %d arrived slots of %d meters from InfluxDB", found,
                 len(self.book.meters))
        return found

    def _rebuild_chunk(self, reader: InfluxReader, sites: Sequence[str], every: float, start: float,
                       stop: float) -> int:
        every_ms = round(every * 1000)
        offset_ms = round(start * 1000) % every_ms
        where = " OR ".join(f"site = {quote_literal(s)}" for s in sites)
        rows = reader.rows(f"SELECT count(*) FROM flow WHERE time >= {round(start * 1000)}ms "
                           f"AND time < {round(stop * 1000)}ms AND ({where}) "
                           f"GROUP BY time({every_ms}ms, {offset_ms}ms), site, meter fill(none)")
        if not rows.values or "site" not in rows.columns or "meter" not in rows.columns:
            return 0
        found = 0
        secs = [t / 1000 for t in rows.column("time")]
        for ts, site, meter in zip(secs, rows.column("site"), rows.column("meter"), strict=True):
            if (site, meter) in self.since and self.book.interval(site, meter) == every:
                self.book.note(site, meter, ts)
                found += 1
        return found


def _configured_since(state: Path, meters: Sequence[tuple[str, str]], now: float) -> dict[tuple[str, str], float]:
    """When each meter first appeared in the config, kept in `state` (written only when it changes)."""
    known: dict[str, float] = {}
    try:
        raw = json.loads(state.read_text())
        known = {str(k): float(v) for k, v in raw.get("configured_since", {}).items()}
    except FileNotFoundError:
        pass
    except (ValueError, AttributeError, TypeError) as exc:
        log.warning("%s is unreadable (%s): every meter counts as configured from now", state, exc)
    out = {key: known.get(f"{key[0]}/{key[1]}", now) for key in meters}  # the book's keys: no second tuple
    wanted = {f"{s}/{m}": t for (s, m), t in out.items()}
    if wanted != known:
        tmp = state.with_suffix(".tmp")
        tmp.write_text(json.dumps({"configured_since": wanted}, separators=(",", ":")))
        os.replace(tmp, state)
    return out


class _ArrivalMetrics(Collector):
    """`gshp_arrival_expected` / `gshp_arrival_arrived` per site and meter for today, computed at each scrape
    from the book (no label children held between scrapes)."""

    def __init__(self) -> None:
        self.tracker: ArrivalTracker | None = None
        self.now: Callable[[], float] | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        expected = GaugeMetricFamily("gshp_arrival_expected", "Reports expected today (local day) so far, by "
                                     "the meter's interval", labels=["site", "meter"])
        arrived = GaugeMetricFamily("gshp_arrival_arrived", "Expected reports of today that arrived (by device "
                                    "time; each slot once)", labels=["site", "meter"])
        tracker, now = self.tracker, self.now
        if tracker is not None and now is not None:
            for site, meter, a in tracker.counts(now()):
                expected.add_metric([site, meter], a.expected)
                arrived.add_metric([site, meter], a.arrived)
        yield expected
        yield arrived


ARRIVAL_METRICS = _ArrivalMetrics()
REGISTRY.register(ARRIVAL_METRICS)
