"""An in-process simulated feed: every configured meter produces readings on an accelerated clock.

It implements the service's `Source` protocol, so `gshp run`/`gshp demo` can be exercised end to end
without wiring a single meter. Each site has one pump flow with a day/night profile; reinjection meters
receive the extracted flow minus the site's discharge fraction; totalizers integrate the rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from collector.model import Reading, Role, Site
from simulators.clock import SimClock

__all__ = ["SimulatedFeed"]


@dataclass
class _MeterState:
    site: str
    meter: str
    role: Role
    share: float  # fraction of the site's flow through this meter
    total: float
    bias: float


@dataclass
class SimulatedFeed:
    sites: Sequence[Site]
    clock: SimClock
    interval_s: float = 10.0  # simulated seconds between readings
    discharge: Mapping[str, float] = field(default_factory=dict)  # site id → fraction drained away
    seed: int = 1
    name: str = "simulated-feed"

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        self._rng = rng
        self._meters: list[_MeterState] = []
        self._base_flow = {s.id: rng.uniform(30, 120) for s in self.sites}
        for s in self.sites:
            for role in Role:
                ms = [m for m in s.meters if m.role is role]
                for m in ms:
                    self._meters.append(_MeterState(s.id, m.id, role, 1 / len(ms), rng.uniform(1e4, 5e5),
                                                    rng.uniform(-0.004, 0.004)))
        self._stop = asyncio.Event()
        self._last: datetime | None = None

    def site_flow(self, site: str, hour: float) -> float:
        """m³/h pumped at a site: a day/night load curve around the site's base flow."""
        return self._base_flow[site] * (0.75 + 0.25 * math.cos((hour - 14) / 24 * 2 * math.pi))

    def step(self, dt_s: float | None = None) -> list[Reading]:
        """Readings at the clock's now; totalizers integrate the time since the last step (or `dt_s`)."""
        now = self.clock.now()
        if dt_s is None:
            dt_s = self.interval_s if self._last is None else max(0.0, (now - self._last).total_seconds())
        self._last = now
        hour = now.hour + now.minute / 60
        out = []
        for m in self._meters:
            flow = self.site_flow(m.site, hour)
            lost = self.discharge.get(m.site, 0.0)
            if m.role is Role.REINJECTION:
                flow *= 1 - lost
            elif m.role is Role.DISCHARGE:
                flow *= lost
            rate = max(0.0, flow * m.share * (1 + m.bias + self._rng.gauss(0, 0.002)))
            m.total += rate * dt_s / 3600
            out.append(Reading(m.site, m.meter, m.role, now, round(rate, 3), round(m.total, 3),
                               signal_pct=float(self._rng.randint(70, 90))))
        return out

    async def run(self, accept: Callable[[Sequence[Reading], str], None]) -> None:
        wall = self.clock.wall_seconds(self.interval_s)
        while not self._stop.is_set():
            accept(self.step(), self.name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), wall)

    async def stop(self) -> None:
        self._stop.set()
