"""Live state for the board: the latest reading of every meter, a short history per site, and a fan-out
of events to server-sent-event subscribers.

Fed by `Service.accept` (after the outbox commit) and by the rule engine's alert transitions. Every
buffer is bounded: a slow browser loses old events, never slows the collector. "Newest" is judged by device
time, but a device time after the clock's `now` counts as `now`: a reading dated in the future cannot hold
back the genuine readings that follow it.

Events (`event:` name, then one JSON object as `data:`):

- `reading`: a meter's newest reading — site, meter, role, ts, rate_m3h, total_m3, signal_pct, error_code
  (a reading older than the meter's newest is not sent);
- `flow`: a site's summed flows after those readings — site, ts, extraction_m3h, reinjection_m3h,
  deficit_m3h, complete (the live chart). A meter whose newest reading is more than the site's
  `offline_after` older than the site's newest is left out of the sums (`complete` is then false): a silent
  meter's last rate is never added as if current;
- `alert`: an alert transition, in the one alert event shape (`alerting.model.Alert.to_dict`);
- `incident`: an incident change, `alerting.model.IncidentNotice.to_dict` (change, at, incident);
- `ack`: an alert acknowledged — id, site, by.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from collector.model import Reading, Role, Site

__all__ = ["LiveFlows", "LiveState", "SitePoint", "Subscriber", "reading_event"]


@dataclass(frozen=True, slots=True)
class SitePoint:
    """Summed flows of one site at one moment, for the live chart."""

    ts: datetime
    extraction_m3h: float
    reinjection_m3h: float
    discharge_m3h: float

    @property
    def deficit_m3h(self) -> float:
        return self.extraction_m3h - self.reinjection_m3h


@dataclass(frozen=True, slots=True)
class LiveFlows:
    """A site's flows now, from the meters whose newest reading is recent (at most `offline_after` old):
    a side with no recent meter is None (unknown), not 0. `as_of` is the oldest reading summed, `age_s` its
    age; `complete` says every meter was summed."""

    as_of: datetime | None
    age_s: float | None
    extraction_m3h: float | None
    reinjection_m3h: float | None
    complete: bool


class _SiteHistory:
    """A site's summed flows over the last `span` seconds, at most one point per `resolution` seconds (the
    newest of each wins), packed in arrays: 20 bytes a point instead of an object per point, so a city of
    thousands of sites keeps its charts in a few megabytes."""

    __slots__ = ("flows", "ts")

    def __init__(self) -> None:
        self.ts = array("d")  # epoch seconds
        self.flows = array("f")  # extraction, reinjection, discharge m³/h per point

    def add(self, point: SitePoint, resolution: float, span: float, max_points: int) -> None:
        t = point.ts.timestamp()
        ts = self.ts
        if ts and t <= ts[-1]:
            return
        values = (point.extraction_m3h, point.reinjection_m3h, point.discharge_m3h)
        if ts and t // resolution == ts[-1] // resolution:
            ts[-1] = t
            self.flows[-3:] = array("f", values)
        else:
            ts.append(t)
            self.flows.extend(values)
        drop = max(bisect_left(ts, t - span), len(ts) - max_points)
        if drop > 0:
            del ts[:drop]
            del self.flows[:3 * drop]

    def point(self, i: int) -> SitePoint:
        f = self.flows
        return SitePoint(datetime.fromtimestamp(self.ts[i], UTC), f[3 * i], f[3 * i + 1], f[3 * i + 2])

    def points(self) -> list[SitePoint]:
        return [self.point(i) for i in range(len(self.ts))]


class Subscriber:
    """One SSE client: a bounded queue; when full, the oldest event is dropped and counted."""

    def __init__(self, loop: asyncio.AbstractEventLoop, maxsize: int = 1000, sites: set[str] | None = None) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize)
        self.sites = sites
        self.dropped = 0

    def offer(self, event: str) -> None:
        """Called on the event loop thread."""
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(event)

    def offer_all(self, events: Iterable[str]) -> None:
        for event in events:
            self.offer(event)


class LiveState:
    def __init__(self, sites: Sequence[Site], history: timedelta = timedelta(hours=6), max_points: int = 2000,
                 now: Callable[[], datetime] | None = None, tz: tzinfo = UTC,
                 resolution: timedelta = timedelta(minutes=1),
                 offline_after: Mapping[str, timedelta] | None = None) -> None:
        self.sites = {s.id: s for s in sites}
        # per site: how old a meter's newest reading may be to count in the sums (not given: any age)
        self._offline_after = {k: v.total_seconds() for k, v in (offline_after or {}).items()}
        self._now = now
        self.tz = tz  # the events' times carry this zone's offset, as every time the API answers
        self._lock = threading.Lock()
        self._latest: dict[tuple[str, str], Reading] = {}
        self._order: dict[tuple[str, str], datetime] = {}  # the latest reading's time, no later than the clock
        self._history = {s.id: _SiteHistory() for s in sites}
        self._history_span = history.total_seconds()
        self._resolution = resolution.total_seconds()
        self._max_points = max_points
        self._subscribers: set[Subscriber] = set()
        self._sub_lock = threading.Lock()

    # -- feeding -------------------------------------------------------------------------------------

    def on_readings(self, readings: Sequence[Reading]) -> None:
        touched: set[str] = set()
        newest: dict[tuple[str, str], Reading] = {}
        now = self._now() if self._now is not None else None
        with self._lock:
            for r in readings:
                key = (r.site, r.meter)
                at = r.ts if now is None or r.ts <= now else now
                prev = self._order.get(key)
                if prev is None or at >= prev:
                    self._latest[key] = r
                    self._order[key] = at
                    newest[key] = r
                    touched.add(r.site)
            points = {site: p for site in touched if site in self.sites and (p := self._site_point(site)) is not None}
            for site, (point, _) in points.items():
                self._history[site].add(point, self._resolution, self._history_span, self._max_points)
        if not self._subscribers:  # nobody watches: no event is built (the board's state is kept above)
            return
        events = [("reading", reading_event(r, self.tz), r.site) for r in newest.values() if r.site in self.sites]
        events += [("flow", {"site": site, "ts": point.ts.astimezone(self.tz).isoformat(),
                             "extraction_m3h": round(point.extraction_m3h, 3),
                             "reinjection_m3h": round(point.reinjection_m3h, 3),
                             "deficit_m3h": round(point.deficit_m3h, 3), "complete": complete}, site)
                   for site, (point, complete) in points.items()]
        self.publish_many(events)

    def reconfigure(self, sites: Sequence[Site], offline_after: Mapping[str, timedelta] | None = None) -> None:
        """Take the sites of a reloaded config: a kept site keeps its latest readings and chart history, an
        added one starts empty, a removed one (and its readings) is forgotten."""
        with self._lock:
            self.sites = {s.id: s for s in sites}
            self._offline_after = {k: v.total_seconds() for k, v in (offline_after or {}).items()}
            self._history = {s.id: h if (h := self._history.get(s.id)) is not None else _SiteHistory() for s in sites}
            gone = [key for key in self._latest if key[0] not in self.sites]
            for key in gone:
                del self._latest[key]
                self._order.pop(key, None)

    def _sums(self, site: str, now: datetime | None) -> tuple[dict[Role, float], dict[Role, int], list[datetime],
                                                                 bool]:
        """Per role the summed rates and the meters summed, the times of the readings summed, and whether
        every meter was: a meter counts when its newest reading is at most `offline_after` before `now`
        (default: the site's newest reading)."""
        at = {m.id: self._order.get((site, m.id)) for m in self.sites[site].meters}
        known = [t for t in at.values() if t is not None]
        if now is None and known:
            now = max(known)
        limit = self._offline_after.get(site, math.inf)
        sums = dict.fromkeys(Role, 0.0)
        counted = dict.fromkeys(Role, 0)
        times: list[datetime] = []
        for mid, t in at.items():
            if t is None or now is None or (now - t).total_seconds() > limit:
                continue
            r = self._latest[(site, mid)]
            sums[r.role] += r.rate_m3h or 0.0
            counted[r.role] += 1
            times.append(t)
        return sums, counted, times, len(times) == len(at)

    def _site_point(self, site: str) -> tuple[SitePoint, bool] | None:
        sums, _, times, complete = self._sums(site, None)
        if not times:
            return None
        return SitePoint(max(times), sums[Role.EXTRACTION], sums[Role.REINJECTION], sums[Role.DISCHARGE]), complete

    # -- reading -------------------------------------------------------------------------------------

    def latest(self, site: str) -> dict[str, Reading]:
        meters = self.sites[site].meters if site in self.sites else ()
        with self._lock:
            found = {m.id: self._latest.get((site, m.id)) for m in meters}
        return {m: r for m, r in found.items() if r is not None}

    def history(self, site: str) -> list[SitePoint]:
        """The site's chart: summed flows over the history span, one point per resolution step."""
        with self._lock:
            hist = self._history.get(site)
            return hist.points() if hist is not None else []

    def flows(self, site: str, now: datetime) -> LiveFlows:
        """The site's live flows at `now` (see `LiveFlows`)."""
        with self._lock:
            sums, counted, times, complete = self._sums(site, now)

        def side(role: Role) -> float | None:
            return sums[role] if counted[role] else None

        as_of = min(times) if times else None
        return LiveFlows(as_of, None if as_of is None else max(0.0, (now - as_of).total_seconds()),
                         side(Role.EXTRACTION), side(Role.REINJECTION), complete)

    def last_seen(self, site: str) -> datetime | None:
        meters = self.sites[site].meters if site in self.sites else ()
        with self._lock:
            times = [self._order[site, m.id] for m in meters if (site, m.id) in self._order]
        return max(times) if times else None

    # -- server-sent events --------------------------------------------------------------------------

    def subscribe(self, sites: Iterable[str] | None = None, maxsize: int = 1000) -> Subscriber:
        sub = Subscriber(asyncio.get_running_loop(), maxsize, set(sites) if sites is not None else None)
        with self._sub_lock:
            self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        with self._sub_lock:
            self._subscribers.discard(sub)

    def publish(self, kind: str, data: dict[str, Any], site: str | None = None) -> None:
        """Send an event to every subscriber allowed to see `site` (thread-safe)."""
        self.publish_many([(kind, data, site)])

    def publish_many(self, events: Sequence[tuple[str, dict[str, Any], str | None]]) -> None:
        """Send (kind, data, site) events, in order, to every subscriber allowed to see each event's site
        (thread-safe; one hand-over per subscriber however many events)."""
        with self._sub_lock:
            subs = list(self._subscribers)
        if not subs or not events:
            return
        texts = [(f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False, default=str)}\n\n", site)
                 for kind, data, site in events]
        for sub in subs:
            mine = [text for text, site in texts if site is None or sub.sites is None or site in sub.sites]
            if not mine:
                continue
            try:
                sub.loop.call_soon_threadsafe(sub.offer_all, mine)
            except RuntimeError:  # its loop is closed: the client is gone
                self.unsubscribe(sub)


def reading_event(r: Reading, tz: tzinfo = UTC) -> dict[str, Any]:
    """A reading as the `reading` event (and the API's latest reading of a meter) shows it, its time in `tz`."""
    return {"site": r.site, "meter": r.meter, "role": r.role.value, "ts": r.ts.astimezone(tz).isoformat(),
            "rate_m3h": r.rate_m3h, "total_m3": r.total_m3, "signal_pct": r.signal_pct,
            "error_code": r.error_code}
