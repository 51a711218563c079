"""An in-process simulated feed: the city physics' meters as a source the service runs directly.

It implements the service's `Source` protocol, so the service can be exercised end to end (tests,
benchmarks) without Modbus or MQTT in between; the water is the same as the simulators serve.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from collector.model import Reading
from simulators.city import CityPhysics
from simulators.clock import SimClock

__all__ = ["SimulatedFeed"]


@dataclass
class SimulatedFeed:
    physics: CityPhysics
    clock: SimClock
    interval_s: float = 60.0  # simulated seconds between readings
    name: str = "simulated-feed"
    _stop: asyncio.Event = field(default_factory=asyncio.Event, init=False)

    async def run(self, accept: Callable[[Sequence[Reading], str], None]) -> None:
        wall = self.clock.wall_seconds(self.interval_s)
        while not self._stop.is_set():
            accept(self.physics.readings(self.clock.now()), self.name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), wall)

    async def stop(self) -> None:
        self._stop.set()
