"""The fan-out outbox and its publisher: readings reach the broker at least once, in commit order.

`FanoutOutbox` is an `Outbox` (SQLite WAL, bounded, group commit) whose lines are ``topic payload``. The
collector's `accept` commits a batch to it right after the InfluxDB outbox and before the source is
acknowledged, so a reading acknowledged to its DTU is on disk for the rule workers too.

`FanoutPublisher` is one thread: it takes the oldest rows (up to `batch_size` readings), publishes them at
QoS 1, waits until the broker acknowledged every one (PUBACK), and only then deletes the rows. A broker
restart, a network cut or a SIGKILL leaves the rows in the outbox, and the round is published again: a
rule worker may see a reading twice (same meter, same device time), which its engine ignores as a
duplicate, and never misses one. Paho's own queue is bounded (`max_inflight`, `batch_size`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

import paho.mqtt.client as mqtt

from collector import metrics
from collector.backoff import Backoff
from collector.fanout.settings import FanoutSettings
from collector.mqtt.connection import connect_args, make_client
from collector.mqtt.settings import MqttSettings
from collector.outbox import Chunk, Outbox

__all__ = ["FanoutOutbox", "FanoutPublisher"]

log = logging.getLogger("collector.fanout")

_POLL = 0.002


class FanoutOutbox(Outbox):
    """The collector's second outbox: readings waiting to be published to the rule workers."""

    store_name = "fanout"
    consumer = "the MQTT broker (fan-out to the rule workers)"
    full_hint = ("the broker has not acknowledged the fan-out for a long time; check the broker and `mqtt:`, "
                 "or raise fanout.max_rows")

    def _refused(self, n: int) -> None:
        metrics.FANOUT_REFUSED.inc(n)

    def _update_gauges(self) -> None:
        metrics.FANOUT_DEPTH.set(self.depth)

    def _watch_age(self) -> None:
        pass  # gshp_outbox_oldest_age_seconds is the InfluxDB outbox's


class FanoutPublisher:
    """Moves `FanoutOutbox` rows to the broker; `start()` / `stop()`, like the InfluxDB drainer."""

    def __init__(self, outbox: Outbox, settings: FanoutSettings, broker: MqttSettings, client_id: str,
                 backoff: Backoff | None = None) -> None:
        self.outbox = outbox
        self.settings = settings
        self.broker = broker
        self.client_id = client_id
        self.backoff = backoff or Backoff(base=settings.retry_min.total_seconds(),
                                          cap=settings.retry_max.total_seconds())
        self._client = make_client(broker, client_id)
        self._client.max_inflight_messages_set(settings.max_inflight)
        self._client.max_queued_messages_set(settings.batch_size + settings.max_inflight)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._connected = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures = 0
        self.published = 0
        self.rounds = 0

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> FanoutPublisher:
        self._client.connect_async(**connect_args(self.broker))
        self._client.loop_start()
        self._thread = threading.Thread(target=self.run, name="fanout-publisher", daemon=True)
        self._thread.start()
        log.info("fan-out: publishing readings to %s:%d as %r under %s/…", self.broker.host, self.broker.port,
                 self.client_id, self.settings.topic_prefix)
        return self

    def stop(self, flush_timeout: float = 5.0) -> None:
        """Stop after a best-effort flush; what the broker has not acknowledged stays for the next start."""
        deadline = time.monotonic() + flush_timeout
        while self.outbox.depth and self._connected.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        self._stop.set()
        self.outbox.wake()
        if self._thread is not None:
            self._thread.join(self.settings.publish_timeout.total_seconds() + 5)
        try:
            self._client.disconnect()
        finally:
            self._client.loop_stop()
        metrics.FANOUT_CONNECTED.set(0)

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    # -- paho callbacks --------------------------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            log.error("fan-out: the broker refused the connection: %s (retrying)", reason)
            return
        self._connected.set()
        metrics.FANOUT_CONNECTED.set(1)
        log.info("fan-out: connected to %s:%d", self.broker.host, self.broker.port)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        self._connected.clear()
        metrics.FANOUT_CONNECTED.set(0)
        if not self._stop.is_set():
            log.warning("fan-out: disconnected (%s); unacknowledged readings will be published again", reason)

    # -- the publishing thread -------------------------------------------------------------------------

    def run(self) -> None:
        while not self._stop.is_set():
            if not self._connected.wait(0.5):
                continue
            if self.outbox.depth == 0:
                self.outbox.wait_for(1, 0.5)
                continue
            try:
                self.publish_once()
            except Exception:  # never let the thread die: log and keep going with backoff
                log.exception("unexpected error in the fan-out publisher")
                self._failed()

    def publish_once(self) -> int:
        """Publish one round and delete it once acknowledged; returns readings acknowledged (0 on failure)."""
        chunks = self.outbox.peek(self.settings.batch_size)
        if not chunks:
            return 0
        pending: deque[mqtt.MQTTMessageInfo] = deque()
        for chunk in chunks:
            for line in chunk.lines:
                topic, _, payload = line.partition(" ")
                info = self._client.publish(topic, payload, qos=1)
                if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
                    log.warning("fan-out: the client queue is full; publishing the round again later")
                    self._failed()
                    return 0
                pending.append(info)
        if not self._settled(pending):
            if not self._stop.is_set():
                metrics.FANOUT_RETRIES.inc()
                log.warning("fan-out: %d of %d readings not acknowledged within %s; publishing them again",
                            len(pending), sum(len(c.lines) for c in chunks), self.settings.publish_timeout)
                self._failed()
            return 0
        self._acked(chunks)
        return sum(len(c.lines) for c in chunks)

    def _settled(self, pending: deque[mqtt.MQTTMessageInfo]) -> bool:
        deadline = time.monotonic() + self.settings.publish_timeout.total_seconds()
        while pending:
            if pending[0].is_published():
                pending.popleft()
                continue
            if self._stop.is_set() or time.monotonic() > deadline:
                return False
            time.sleep(_POLL)
        return True

    def _acked(self, chunks: list[Chunk]) -> None:
        n = sum(len(c.lines) for c in chunks)
        self.outbox.ack(chunks)  # only now: every reading of the round is with the broker
        self.published += n
        self.rounds += 1
        metrics.FANOUT_PUBLISHED.inc(n)
        if self._failures:
            log.info("fan-out: the broker acknowledges again; %d readings waiting", self.outbox.depth)
        self._failures = 0

    def _failed(self) -> None:
        self._failures += 1
        self._stop.wait(self.backoff.delay(self._failures))
