"""Counting and logging rejected payloads: every one counted, each (topic, reason) logged once per
interval with how many were suppressed since, so a misconfigured DTU cannot flood the log. The MQTT
source and the telemetry servers (topic: the station) share it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from collector import metrics
from collector.mqtt.errors import Rejected

__all__ = ["RejectLog"]

log = logging.getLogger("collector.rejects")


class RejectLog:
    def __init__(self, source: str = "mqtt", interval: float = 60.0, max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.source = source
        self.interval = interval
        self.max_keys = max_keys
        self._clock = clock
        self._last: dict[tuple[str, str], tuple[float, int]] = {}  # (topic, reason) → (logged at, suppressed)

    def note(self, topic: str, rej: Rejected) -> None:
        self.note_reason(topic, rej.reason.value, rej.detail)

    def note_reason(self, topic: str, reason: str, detail: str) -> None:
        """Count a rejected input of `topic` (a topic, a station) and log it unless logged lately."""
        metrics.INGEST_REJECTED.labels(self.source, reason).inc()
        key = (topic, reason)
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last[0] < self.interval:
            self._last[key] = (last[0], last[1] + 1)
            return
        if last is None and len(self._last) >= self.max_keys:
            self._last.clear()  # bounded: forget who was logged, at worst log again
        self._last[key] = (now, 0)
        more = f" ({last[1]} more since the last report)" if last and last[1] else ""
        log.warning("%s: rejected a payload on %.200s [%s]: %s%s — kept in the dead-letter store "
                    "(gshp deadletter list); next report for this topic and reason in %.0fs at the earliest",
                    self.source, topic, reason, detail, more, self.interval)
