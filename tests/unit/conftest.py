from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from collector.model import MeterChange, Reading, Role, Site
from rules.engine import Engine
from rules.settings import RulesSettings

T0 = datetime(2026, 5, 5, 0, 0, tzinfo=UTC)
ROLES = {"E1": Role.EXTRACTION, "R1": Role.REINJECTION, "D1": Role.DISCHARGE}


@pytest.fixture
def site() -> Site:
    return Site.model_validate({"id": "hehua", "name": "向阳荷花广场", "district": "宛城区",
                                "meters": [{"id": "E1", "role": "extraction"},
                                           {"id": "R1", "role": "reinjection"},
                                           {"id": "D1", "role": "discharge"}]})


def flow(minutes: int, e_m3h: float = 120.0, r_m3h: float = 120.0, start: datetime = T0,
         meters: tuple[str, ...] = ("E1", "R1"), totals: dict[str, float] | None = None) -> Iterator[Reading]:
    """Readings every minute: E1 at e_m3h, R1 at r_m3h (D1 idle when listed)."""
    rates = {"E1": e_m3h, "R1": r_m3h, "D1": 0.0}
    tot = dict(totals or {"E1": 1000.0, "R1": 2000.0, "D1": 0.0})
    for i in range(minutes + 1):
        ts = start + timedelta(minutes=i)
        for m in meters:
            yield Reading("hehua", m, ROLES[m], ts, rates[m], round(tot[m], 4))
            tot[m] += rates[m] / 60.0


def run(engine: Engine, readings: list[Reading], until: datetime, changes: Sequence[MeterChange] = ()) -> list:
    """Ingest in data time and evaluate every 5 minutes (like replay); return all events. Meter `changes`
    are noted in stream order: before the first reading at or after each."""
    readings = sorted(readings, key=lambda r: r.ts)
    pending = sorted(changes, key=lambda c: c.ts)
    events = []
    t = readings[0].ts.replace(second=0, microsecond=0)
    i = 0
    while t <= until:
        while i < len(readings) and readings[i].ts <= t:
            while pending and pending[0].ts <= readings[i].ts:
                engine.note_changes([pending.pop(0)])
            engine.ingest([readings[i]])
            i += 1
        events.extend(engine.evaluate(t))
        t += timedelta(minutes=5)
    return events


@pytest.fixture
def engine(site: Site) -> Engine:
    return Engine([site], RulesSettings(), UTC)
