"""The broker's own counters, read from `$SYS` (mosquitto): readings lost upstream of the collector.

A broker that queues more for an offline or slow session than its limit allows (mosquitto's
`max_queued_messages`) drops the rest after the publisher got its PUBACK: nothing downstream can see them.
Mosquitto counts them in `$SYS/broker/publish/messages/dropped` (broker-wide, since the broker started).
`BrokerStats` watches that counter on a connection of its own (clean session, QoS 0) and turns every
increase into `gshp_broker_dropped_total` and a problem the health report shows for `DROP_HOLD`.

Drops happen most while the collector is away (its session's queue overflows), so the last value seen is
kept in a small state file with the broker's start time (from `$SYS/broker/uptime`): after a restart of
the collector the increase since then is counted; after a restart of the broker everything it counts is
new. Only on the very first start is the counter taken as it is (older drops are logged, not blamed).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from collector import metrics
from collector.mqtt.connection import connect_args, make_client
from collector.mqtt.settings import MqttProtocol, MqttSettings

__all__ = ["DROPPED", "DROP_HOLD", "STORED", "BrokerStats", "ride_out_need"]

log = logging.getLogger(__name__)

DROPPED = "$SYS/broker/publish/messages/dropped"
STORED = "$SYS/broker/store/messages/count"
VERSION = "$SYS/broker/version"
UPTIME = "$SYS/broker/uptime"
_SAME_BROKER_S = 120.0  # start times this close (uptime is whole seconds, published every sys_interval)
DROP_HOLD = timedelta(hours=1)
"""How long health stays `degraded` after the broker last dropped messages."""


@dataclass(frozen=True, slots=True)
class Need:
    """What a broker must queue for this collector's session to ride out an outage."""

    meters: int
    messages: int
    ride_out: timedelta

    def advice(self) -> str:
        return (f"to ride out a {self.ride_out} outage of the collector, the broker must queue {self.messages:,} "
                f"messages for its session ({self.meters} MQTT meters): mosquitto `max_queued_messages "
                f"{self.messages}` (its default is 1000) and `max_queued_bytes 0`; EMQX `mqtt.max_mqueue_len`")


def ride_out_need(intervals: list[timedelta], ride_out: timedelta) -> Need:
    """Messages queued over `ride_out` by meters reporting every `intervals[i]` (one message a reading)."""
    return Need(len(intervals), sum(int(ride_out / i) for i in intervals if i.total_seconds() > 0), ride_out)


class BrokerStats:
    """Thread-safe; `start()` connects in the background, `problems()` is read by the health report."""

    def __init__(self, settings: MqttSettings, client_id: str, need: Need | None = None,
                 state: Path | None = None, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.need = need
        self.state = state
        self._clock, self._wall = clock, wall
        self._lock = threading.Lock()
        self._last: int | None = None
        self._started: float | None = None  # the broker's start (wall time), from its uptime
        self._early: int | None = None  # a drop count that came before the uptime
        self.dropped = 0  # since this process started watching
        self.stored: int | None = None
        self.version: str | None = None
        self._dropped_at: float | None = None
        self._client = make_client(settings, f"{client_id}-sys"[:64], persistent=False)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message

    def start(self) -> BrokerStats:
        self._client.connect_async(**{**connect_args(self.settings), **_clean(self.settings)})
        self._client.loop_start()
        return self

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if not reason.is_failure:
            client.subscribe([(UPTIME, 0), (DROPPED, 0), (STORED, 0), (VERSION, 0)])

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        text = bytes(message.payload).decode("ascii", errors="replace").strip()
        if message.topic == VERSION:
            self.version = text[:80]
            return
        try:
            value = int(text.split()[0])
        except (ValueError, IndexError):
            return
        if message.topic == UPTIME:
            self.observe_uptime(value)
            return
        if message.topic == STORED:
            self.stored = value
            metrics.BROKER_STORED.set(value)
        elif message.topic == DROPPED:
            self.observe_dropped(value)

    def observe_uptime(self, seconds: int) -> None:
        started = self._wall() - seconds
        with self._lock:
            restarted = self._started is not None and abs(started - self._started) > _SAME_BROKER_S
            if self._started is None or restarted:
                self._started = started
                if restarted:
                    self._last = 0  # a new broker counts from zero
            early, self._early = self._early, None
        if early is not None:
            self.observe_dropped(early)

    def observe_dropped(self, value: int) -> None:
        """The broker's cumulative drop counter as last published."""
        with self._lock:
            if self._started is None:
                self._early = value  # judged once the broker's start time is known
                return
            if self._last is None:
                self._last = self._resume(value)
            if value < self._last:  # the broker restarted between two uptimes
                self._last = 0
            delta = value - self._last
            self._last = value
            self._save()
            if delta <= 0:
                return
            self.dropped += delta
            first = self._dropped_at is None or self._clock() - self._dropped_at > DROP_HOLD.total_seconds()
            self._dropped_at = self._clock()
        metrics.BROKER_DROPPED.inc(delta)
        if first:
            fix = self.need.advice() if self.need is not None else (
                "raise the broker's queue limit (mosquitto: max_queued_messages, max_queued_bytes)")
            log.warning("the MQTT broker dropped %d messages (readings lost before they reached the collector; "
                        "%d since start): %s", delta, self.dropped, fix)

    def _resume(self, value: int) -> int:
        """Where the count stood when this collector last saw it: from the state file for the same broker,
        0 for a broker that restarted since, `value` itself on the very first start."""
        try:
            saved = json.loads(self.state.read_text()) if self.state is not None else None
        except (OSError, ValueError):
            saved = None
        if not isinstance(saved, dict) or not isinstance(saved.get("dropped"), int):
            if value:
                log.info("the MQTT broker has dropped %d messages since it started (before this collector "
                         "watched it)", value)
            return value
        assert self._started is not None
        if abs(float(saved.get("broker_started", 0.0)) - self._started) > _SAME_BROKER_S:
            return 0
        return min(int(saved["dropped"]), value)

    def _save(self) -> None:
        if self.state is None:
            return
        tmp = self.state.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps({"dropped": self._last, "broker_started": self._started}))
            os.chmod(tmp, 0o600)
            tmp.replace(self.state)
        except OSError as exc:
            log.warning("cannot keep the broker's drop count in %s: %s", self.state, exc)

    def problems(self) -> list[str]:
        with self._lock:
            if self._dropped_at is None or self._clock() - self._dropped_at > DROP_HOLD.total_seconds():
                return []
            return [f"MQTT broker dropped {self.dropped} messages (its queue limit is below the backlog) / "
                    f"MQTT 代理丢弃了 {self.dropped} 条消息（队列上限过小）"]


def _clean(settings: MqttSettings) -> dict[str, Any]:
    """A v5 connection without the ingester's session expiry: nothing is kept for it."""
    return {"clean_start": True, "properties": None} if settings.protocol is MqttProtocol.V5 else {}
