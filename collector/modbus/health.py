"""Per-unit health: cool-down with exponential backoff, offline after N failures (pure, clock passed in)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["MeterState", "UnitHealth"]


class MeterState(StrEnum):
    UNKNOWN = "unknown"   # not polled yet
    ONLINE = "online"
    FAILING = "failing"   # failed recently, in cool-down, not yet offline
    OFFLINE = "offline"   # `offline_after` consecutive failures


@dataclass(slots=True)
class UnitHealth:
    """Times are in seconds on any monotonic clock; `interval` is the gateway's poll interval.

    After the k-th consecutive failure the next attempt is ``interval × 2**(k-1)`` later (capped at
    `backoff_max`): the 1st failure retries on the next cycle, the 2nd skips one cycle, the 3rd three…
    """

    interval: float
    offline_after: int
    backoff_max: float
    state: MeterState = MeterState.UNKNOWN
    failures: int = 0
    next_attempt: float = 0.0

    def due(self, now: float) -> bool:
        return now >= self.next_attempt - self.interval / 2

    def success(self) -> MeterState | None:
        """Record a good poll; return the new state if it changed."""
        old = self.state
        self.state, self.failures, self.next_attempt = MeterState.ONLINE, 0, 0.0
        return self.state if old is not self.state else None

    def failure(self, now: float, *, cool_down: bool = True) -> MeterState | None:
        """Record a failed poll at cycle time `now`; return the new state if it changed."""
        old = self.state
        self.failures += 1
        if cool_down:
            self.next_attempt = now + min(self.interval * 2 ** (self.failures - 1), self.backoff_max)
        self.state = MeterState.OFFLINE if self.failures >= self.offline_after else MeterState.FAILING
        return self.state if old is not self.state else None
