"""A simulated meter: a `MeterModel` encoded through a register profile, answering one unit id."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from collector.modbus.profile import Function, Profile, encode_values
from simulators.flow import MeterModel, ScenarioKind

__all__ = ["ModelClock", "SimulatedMeter", "image_size"]

_FUNCTIONS = {3: Function.HOLDING, 4: Function.INPUT}


class ModelClock:
    """Model seconds since start, `speed` times faster than the wall clock."""

    def __init__(self, speed: float = 1.0, source: Callable[[], float] = time.monotonic) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self._source = source
        self._t0 = source()

    def __call__(self) -> float:
        return (self._source() - self._t0) * self.speed


def image_size(profile: Profile) -> int:
    """Registers a simulated device exposes: up to the profile's last register."""
    return max(f.end for f in profile.fields.values())


class SimulatedMeter:
    def __init__(self, profile: Profile, model: MeterModel, clock: Callable[[], float],
                 refresh_s: float = 0.0) -> None:
        """`refresh_s` > 0 re-encodes the register image at most that often (wall clock), like a meter
        whose display updates once a second; 0 encodes on every request."""
        total = profile.values.get("total_m3")
        self._multiplier = total.pow10.field if total is not None and total.pow10 is not None else None
        if model.scenario.kind is ScenarioKind.RESCALE and self._multiplier is None:
            raise ValueError(f"scenario rescale needs a profile whose total has a multiplier field; "
                             f"{profile.name} has none")
        self.profile = profile
        self.model = model
        self.clock = clock
        self.refresh_s = refresh_s
        self.requests = 0
        self._cached: dict[tuple[Function, int], int] | None = None
        self._cached_at = 0.0

    def image(self) -> dict[tuple[Function, int], int]:
        if self.refresh_s > 0:
            now = time.monotonic()
            if self._cached is None or now - self._cached_at >= self.refresh_s:
                self._cached, self._cached_at = self._encode(), now
            return self._cached
        return self._encode()

    def _encode(self) -> dict[tuple[Function, int], int]:
        values = self.model.sample(self.clock())
        fields: dict[str, float] = dict(self.profile.simulator)
        if "serial_number" in self.profile.fields:
            fields["serial_number"] = self.model.serial_number
        if self.model.decades and self._multiplier is not None:
            fields[self._multiplier] = fields.get(self._multiplier, 0) + self.model.decades
        fields.update(self.model.identity)
        image: dict[tuple[Function, int], int] = {}
        encode_values(self.profile, values, fields, image)
        return image

    def registers(self, function: Function, address: int, count: int) -> list[int]:
        image = self.image()
        return [image.get((function, a), 0) for a in range(address, address + count)]

    async def __call__(self, function_code: int, address: int, count: int) -> list[int] | int | None:
        """The `UnitHandler` for this meter."""
        self.requests += 1
        scenario = self.model.scenario
        if scenario.kind is ScenarioKind.OFFLINE:
            return None
        if scenario.kind is ScenarioKind.EXCEPTION:
            return 2
        if scenario.kind is ScenarioKind.SLOW:
            await asyncio.sleep(scenario.value / 1000.0)
        function = _FUNCTIONS.get(function_code)
        if function is None:
            return 1
        return self.registers(function, address, count)
