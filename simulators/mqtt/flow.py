"""A small site flow model for the DTU simulator (replaceable by the shared site physics).

Per site one pump flow follows a day curve and is split over the extraction meters; reinjection is
extraction × (1 − discharge fraction of the scenario), split over the reinjection meters. Each meter has
a fixed bias within its accuracy; its totalizer integrates the rate it measures, and the rate it reports
also jitters a little (both within the accuracy). Pure: the caller
passes the clock and the random generator.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo

from collector.model import Reading, Role, Site

__all__ = ["SCENARIOS", "FlowModel", "Scenario"]


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    discharge: Callable[[datetime], float]  # fraction of extraction not reinjected, at local time
    silent_roles: frozenset[Role] = frozenset()  # meters of these roles publish nothing


def _night(t: datetime) -> float:
    return 0.3 if t.hour >= 22 or t.hour < 6 else 0.0


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("balanced", "everything extracted is reinjected", lambda t: 0.0),
    Scenario("discharge", "20 % of the extracted water goes to the drain, all day", lambda t: 0.2),
    Scenario("night-discharge", "30 % discharged between 22:00 and 06:00 local time", _night),
    Scenario("reinjection-offline", "reinjection meters fall silent (unplugged)", lambda t: 0.0,
             frozenset({Role.REINJECTION})),
)}


@dataclass
class _Meter:
    site: str
    meter: str
    role: Role
    accuracy_pct: float
    total: float
    bias: float  # the meter's fixed error, within its accuracy


@dataclass
class FlowModel:
    sites: Sequence[Site]
    scenario: Scenario
    tz: tzinfo
    base_rate_m3h: float = 40.0  # per extraction meter at full load
    rng: random.Random = field(default_factory=lambda: random.Random(7))

    def __post_init__(self) -> None:
        self._meters = [_Meter(s.id, m.id, m.role, m.accuracy_pct, 10_000.0 * (1 + i),
                               self.rng.gauss(0, m.accuracy_pct / 100 / 3))
                        for s in self.sites for i, m in enumerate(s.meters)]

    def load(self, t: datetime) -> float:
        """Fraction of full load at local time: higher by day, never off."""
        hour = t.astimezone(self.tz).hour + t.astimezone(self.tz).minute / 60
        return 0.65 + 0.3 * math.sin((hour - 8) / 24 * 2 * math.pi)

    def step(self, t: datetime, dt: timedelta) -> list[Reading]:
        """Advance the totalizers by `dt` ending at `t`; one reading per publishing meter."""
        local = t.astimezone(self.tz)
        d = min(1.0, max(0.0, self.scenario.discharge(local)))
        hours = dt.total_seconds() / 3600
        out = []
        for site in self.sites:
            ms = [m for m in self._meters if m.site == site.id]
            extraction = [m for m in ms if m.role is Role.EXTRACTION]
            reinjection = [m for m in ms if m.role is Role.REINJECTION]
            e_rate = self.base_rate_m3h * self.load(t)
            r_rate = e_rate * len(extraction) * (1 - d) / max(1, len(reinjection))
            for m in ms:
                true = e_rate if m.role is Role.EXTRACTION else r_rate if m.role is Role.REINJECTION else 0.0
                if m.role is Role.DISCHARGE:
                    true = e_rate * len(extraction) * d
                m.total += true * (1 + m.bias) * hours  # the totalizer integrates what the meter measures
                if m.role in self.scenario.silent_roles:
                    continue
                noise = self.rng.gauss(0, m.accuracy_pct / 100 / 6)  # rate jitter, inside the accuracy
                out.append(Reading(m.site, m.meter, m.role, t, round(true * (1 + m.bias + noise), 3),
                                   round(m.total, 3)))
        return out
