"""A site's status as the board shows it: normal, suspected discharge, data fault, offline or unknown."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

from alerting.model import Alert, AlertKind, AlertState, Severity
from collector.model import Site
from gshp.api.arrival import arrival_figures, site_arrival_summary
from gshp.arrival import ArrivalTracker
from gshp.clock import Clock
from gshp.evaluation import BOARD_WINDOWS
from gshp.live import LiveFlows, LiveState, reading_event
from rules.arrival import NOTHING, Arrival
from rules.engine import Engine
from rules.report import day_bounds
from rules.settings import RulesSettings
from rules.store import AlertStore

__all__ = ["STATUSES", "SiteStatus", "SiteStatuses", "district_counts", "drained_sum", "site_status"]

STATUSES = ("discharge", "offline", "fault", "normal", "unknown")
"""In order of precedence: a suspected discharge outranks everything."""


@dataclass
class SiteStatus:
    site: Site
    status: str
    last_seen: datetime | None
    age_s: float | None
    flows: LiveFlows  # the live flows of the meters that are not offline, with their time and completeness
    balance: dict[str, dict[str, Any] | None]
    alerts_firing: int
    meters: list[dict[str, Any]] = field(default_factory=list)
    arrival: Arrival = NOTHING  # today's reports: expected and arrived
    drained_today: dict[str, Any] | None = None  # `Engine.volumes_since` the local midnight

    @property
    def district(self) -> str:
        return self.site.district


def site_status(site: Site, open_alerts: Iterable[Alert], *, live: LiveState, engine: Engine,
                rules: RulesSettings, now: datetime, arrival: ArrivalTracker | None = None,
                day_start: datetime | None = None) -> SiteStatus:
    """The site's status at `now`; with `day_start` (the local midnight) also what it drained since then."""
    offline_after = rules.resolve(site.id, site.district).quality.offline_after.total_seconds()
    latest = live.latest(site.id)
    arrived, per_meter = site_arrival_summary(arrival, site, now.timestamp()) if arrival else (NOTHING, {})
    meters = []
    for m in site.meters:
        r = latest.get(m.id)
        age = None if r is None else (now - r.ts).total_seconds()
        meters.append({"id": m.id, "role": m.role.value, "source": m.source,
                       "status": "unknown" if age is None else ("offline" if age > offline_after else "normal"),
                       "latest": None if r is None else reading_event(r), "arrival_pct": per_meter.get(m.id)})
    last_seen = live.last_seen(site.id)
    age_s = None if last_seen is None else max(0.0, (now - last_seen).total_seconds())
    firing = [a for a in open_alerts if a.site == site.id and a.state is AlertState.FIRING]
    if any(a.kind is AlertKind.DISCHARGE for a in firing):
        status = "discharge"
    elif age_s is None:
        status = "unknown"
    elif age_s > offline_after:
        status = "offline"
    elif any(a.severity is not Severity.INFO for a in firing) or any(m["status"] == "offline" for m in meters):
        # an info reminder (calibration past due) is no fault of the site's
        status = "fault"
    else:
        status = "normal"
    return SiteStatus(
        site, status, last_seen, age_s, live.flows(site.id, now),
        {name: engine.balance(site.id, window, now) for name, window in BOARD_WINDOWS.items()},
        len(firing), meters, arrived,
        None if day_start is None else _aged(engine.volumes_since(site.id, day_start), now, offline_after))


@dataclass(frozen=True)
class SiteStatuses:
    """The statuses of sites now on the service's clock, with what they drained since the local midnight."""

    store: AlertStore
    live: LiveState
    engine: Engine
    rules: RulesSettings
    tz: tzinfo
    arrival: ArrivalTracker
    clock: Clock

    def __call__(self, sites: Sequence[Site]) -> list[SiteStatus]:
        firing, now = self.store.open_alerts(), self.clock.now()
        midnight, _ = day_bounds(now.astimezone(self.tz).date(), self.tz)
        return [site_status(s, firing, live=self.live, engine=self.engine, rules=self.rules, now=now,
                            arrival=self.arrival, day_start=midnight) for s in sites]


def _aged(volumes: dict[str, Any] | None, now: datetime, offline_after: float) -> dict[str, Any] | None:
    """Volumes with the age of their `as_of` at `now`: older than `offline_after` they are `stale`, never
    `complete` (a silent meter holds the figure back: it is not current)."""
    if volumes is None:
        return None
    age = max(0.0, (now - datetime.fromisoformat(volumes["as_of"])).total_seconds())
    return {**volumes, "age_s": round(age, 1), "stale": age > offline_after,
            "complete": volumes["complete"] and age <= offline_after}


def drained_sum(volumes: Sequence[dict[str, Any] | None]) -> dict[str, Any] | None:
    """Several sites' drained water summed: complete when each site's is, as of the earliest `as_of`."""
    known = [v for v in volumes if v is not None]
    if not known:
        return None
    e = round(sum(v["extracted_m3"] for v in known), 3)
    r = round(sum(v["reinjected_m3"] for v in known), 3)
    return {"extracted_m3": e, "reinjected_m3": r, "drained_m3": round(e - r, 3),
            "drained_pct": round(100.0 * (e - r) / e, 2) if e > 0 else None,
            "complete": len(known) == len(volumes) and all(v["complete"] for v in known),
            "from": min(v["from"] for v in known), "as_of": min(v["as_of"] for v in known)}


def district_counts(statuses: Sequence[SiteStatus]) -> list[dict[str, Any]]:
    """Per district, the bureau's bulletin columns: sites, online, suspected discharge, fault, offline,
    today's arrival rate (到报率) of its meters, and the water its sites drained today."""
    out: dict[str, dict[str, Any]] = {}
    arrivals: dict[str, Arrival] = {}
    drained: dict[str, list[dict[str, Any] | None]] = {}
    for s in statuses:
        arrivals[s.district] = arrivals.get(s.district, NOTHING) + s.arrival
        drained.setdefault(s.district, []).append(s.drained_today)
        d = out.setdefault(s.district, {"district": s.district, "sites": 0, "online": 0, "discharge": 0,
                                        "fault": 0, "offline": 0})
        d["sites"] += 1
        d["online"] += s.status not in ("offline", "unknown")
        if s.status in ("discharge", "fault", "offline"):
            d[s.status] += 1
    for name, d in out.items():
        d["arrival"] = arrival_figures(arrivals[name])
        d["drained_today"] = drained_sum(drained[name])
    return sorted(out.values(), key=lambda d: d["district"])


