"""Publishing simulated DTU messages: the config's MQTT meters, encoded by their payload profiles, from
the site physics every live simulator shares (`simulators.city.site_physics`).

Simulated time runs from `start` to `end` in steps of `interval`, `speed` times faster than real time,
so device timestamps are never in the future. Bounded: stops at `end`, after `count` readings, or on
`stop()`. Messages are published at QoS 1 with a bounded window of unconfirmed messages.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

from collector.model import Reading
from collector.mqtt.connection import connect_args, make_client
from collector.mqtt.encode import encode
from collector.mqtt.registers import NO_REGISTER_CODEC, RegisterCodec
from collector.mqtt.settings import MqttSettings
from collector.mqtt.topics import KEY_LEVEL, Route, Router
from simulators.city import CityPhysics

__all__ = ["DtuSimulator", "SimPlan"]

log = logging.getLogger("simulators.mqtt")


@dataclass(frozen=True)
class SimPlan:
    start: datetime
    end: datetime
    interval: timedelta = timedelta(seconds=10)
    speed: float = 60.0
    rate: float | None = None  # messages per second, at most
    count: int | None = None  # readings, at most


def _topic(route: Route, key: str) -> str:
    f = route.filter
    if any(lv in ("+", "#") for lv in f.levels):
        raise ValueError(f"cannot publish to wildcard topic {f.text!r}: give the meter a concrete topic "
                         "(or a {key} level)")
    return "/".join(key if lv == KEY_LEVEL else lv for lv in f.levels)


class DtuSimulator:
    def __init__(self, settings: MqttSettings, router: Router, physics: CityPhysics | None, tz: tzinfo,
                 codec: RegisterCodec = NO_REGISTER_CODEC, window: int = 500) -> None:
        """`physics` drives `run(plan)` (its MQTT meters, at each step's time); a live feed passes None
        and calls `publish(readings)` instead."""
        self.router, self.physics, self.tz, self.codec = router, physics, tz, codec
        self.settings = settings.model_copy(update={"client_id": f"{settings.client_id}-sim"})
        self.client = make_client(self.settings)
        self.client.max_inflight_messages_set(window)
        self.window = window
        self._index = {(b.site, b.meter): (route, b.key) for route in router.routes
                       for b in route.meters.values()}
        for route in router.routes:
            for b in route.meters.values():
                _topic(route, b.key)  # fail early on wildcard topics
        self._stop = threading.Event()
        self._confirmed: set[int] = set()
        self._lock = threading.Lock()
        self.client.on_publish = self._on_publish
        self.published = 0
        self.readings = 0

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        with self._lock:
            self._confirmed.add(mid)

    def messages(self, readings: list[Reading]) -> list[tuple[str, bytes]]:
        """Group a step's readings by topic and encode them as the DTUs would."""
        groups: dict[tuple[str, str], list[tuple[str, Reading]]] = {}
        routes: dict[tuple[str, str], Route] = {}
        for r in readings:
            hit = self._index.get((r.site, r.meter))
            if hit is None:
                continue
            route, key = hit
            topic = _topic(route, key)
            shared = route.profile.keyed and route.filter.key_level is None
            gk = (topic, "" if shared else key)
            groups.setdefault(gk, []).append((key, r))
            routes[gk] = route
        return [(gk[0], encode(routes[gk].profile, items, self.tz, self.codec))
                for gk, items in groups.items()]

    def connect(self) -> None:
        """Connect in the background (for `publish`); `close()` ends it."""
        self.client.connect_async(**connect_args(self.settings))
        self.client.loop_start()

    def publish(self, readings: list[Reading]) -> int:
        """Publish one step's readings at QoS 1 (paho queues them while the broker is away)."""
        n = 0
        for topic, payload in self.messages(readings):
            self.client.publish(topic, payload, qos=1)
            n += 1
        self.published += n
        self.readings += len(readings)
        return n

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def run(self, plan: SimPlan) -> None:
        if self.physics is None:
            raise ValueError("run(plan) needs the site physics")
        physics = self.physics
        self.client.connect_async(**connect_args(self.settings))
        self.client.loop_start()
        pending: deque[int] = deque()
        t = plan.start
        began = time.monotonic()
        sent_at = time.monotonic()
        try:
            while t <= plan.end and not self._stop.is_set():
                due = began + (t - plan.start).total_seconds() / plan.speed
                if self._stop.wait(max(0.0, due - time.monotonic())):
                    break
                readings = physics.readings(t, source="mqtt")
                if plan.count is not None:
                    readings = readings[:max(0, plan.count - self.readings)]
                for topic, payload in self.messages(readings):
                    if plan.rate:
                        sent_at = max(sent_at + 1 / plan.rate, time.monotonic())
                        self._stop.wait(max(0.0, sent_at - time.monotonic()))
                    pending.append(self.client.publish(topic, payload, qos=1).mid)
                    self.published += 1
                    while len(pending) >= self.window and not self._stop.is_set():
                        self._settle(pending)
                self.readings += len(readings)
                if plan.count is not None and self.readings >= plan.count:
                    break
                t += plan.interval
            deadline = time.monotonic() + 30
            while pending and time.monotonic() < deadline and not self._stop.is_set():
                self._settle(pending)
        finally:
            self.client.disconnect()
            self.client.loop_stop()
        log.info("simulated %d readings in %d messages", self.readings, self.published)

    def _settle(self, pending: deque[int]) -> None:
        with self._lock:
            while pending and pending[0] in self._confirmed:
                self._confirmed.discard(pending.popleft())
        if pending:
            time.sleep(0.002)

    def stop(self) -> None:
        self._stop.set()


