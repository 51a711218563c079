"""The service's clock: real time in production, an accelerated `SimClock` in the demo and tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

__all__ = ["Clock", "SystemClock"]


class Clock(Protocol):
    def now(self) -> datetime: ...

    def wall_seconds(self, sim_seconds: float) -> float: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def wall_seconds(self, sim_seconds: float) -> float:
        return sim_seconds
