"""The service's clock: real time in production, an accelerated `SimClock` in the demo and tests, or the
readings' own time (`DataClock`) for a rule worker that evaluates in data time as `gshp replay` does."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Protocol

__all__ = ["Clock", "DataClock", "SystemClock"]


class Clock(Protocol):
    def now(self) -> datetime: ...

    def wall_seconds(self, sim_seconds: float) -> float: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def wall_seconds(self, sim_seconds: float) -> float:
        return sim_seconds


class DataClock:
    """Time is the newest device time seen in the reading stream (the wall clock until the first one).

    The rule loop evaluates at every `evaluate_every` boundary the stream crosses instead of on a timer,
    so the same readings give the same alerts whatever the machine's speed. A meter that falls silent is
    noticed only as the other meters move data time on; production rule workers use the system clock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._newest: datetime | None = None

    def now(self) -> datetime:
        with self._lock:
            return self._newest if self._newest is not None else datetime.now(UTC)

    def advance(self, ts: datetime) -> None:
        with self._lock:
            if self._newest is None or ts > self._newest:
                self._newest = ts

    def wall_seconds(self, sim_seconds: float) -> float:
        return sim_seconds
