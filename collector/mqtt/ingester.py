"""The MQTT source: subscribe, decode, commit, then acknowledge — at-least-once from DTU to outbox.

Threads: paho's network thread receives and hands each message to a bounded inbox (a payload above
`max_payload` keeps only its first `TOO_LARGE_PREFIX` bytes there, so the inbox is bounded in bytes too);
the ingest thread takes batches (up to `batch_max` messages and half of `max_inflight`, gathered for at
most `batch_wait`) and decodes them; a commit thread commits the readings through `accept` (on the
service's event loop, so listeners run where every source's readings arrive) and the rejects to the
dead-letter store while the next batch is decoded; only then is every message of the batch acknowledged
(manual ack, one write).
A crash at any point leaves the unacknowledged messages with the broker, which redelivers
them to the persistent session; the points they produce are identical (same tags, same device time), so
InfluxDB stores them once, and readings carry the device time so the rule engine can drop repeats by
(site, meter, ts).

When a commit fails (`OutboxFull`, a disk error) nothing of the batch is acknowledged: the source
disconnects — the broker keeps the messages — and reconnects after a backoff. Acknowledgements are only
sent on the connection the message came on: packet ids of an earlier connection are never reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt

from collector import metrics
from collector.backoff import Backoff
from collector.deadletter import DeadLetterStore, NewDeadLetter
from collector.model import Reading
from collector.mqtt.connection import Publish, connect_args, make_client, subscribe_args
from collector.mqtt.decode import DecodeContext, decode
from collector.mqtt.errors import Rejected, RejectReason
from collector.mqtt.rejects import RejectLog
from collector.mqtt.settings import MqttSettings
from collector.mqtt.topics import Router

__all__ = ["MqttSource"]

log = logging.getLogger("collector.mqtt")

Accept = Callable[[Sequence[Reading], str], None]

_ACCEPT_TIMEOUT = 60.0
TOO_LARGE_PREFIX = 4096
"""Bytes kept of a payload above `max_payload`: enough to see what sent it, never the flood itself."""
_POLL = 0.2


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs a setattr call per field
class _Message:
    epoch: int  # the connection it arrived on
    mid: int
    qos: int
    topic: str
    payload: bytes
    received: float
    dup: bool
    size: int  # of the payload as received (`payload` holds its first bytes only when above the bound)
    retain: bool = False  # sent from the broker's retained store (on subscribing): not a reading unless accepted


class MqttSource:
    """A `Source` for the service: `await run(accept)` until `await stop()`."""

    name = "mqtt"

    def __init__(self, settings: MqttSettings, router: Router, context: DecodeContext,
                 deadletters: DeadLetterStore | None = None, backoff: Backoff | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.router = router
        self.context = context
        self.deadletters = deadletters
        self.rejects = RejectLog("mqtt")
        self.backoff = backoff or Backoff(base=settings.reconnect_min.total_seconds(),
                                          cap=settings.reconnect_max.total_seconds())
        self._clock = clock
        self._client = make_client(settings)
        self._client.manual_ack_set(True)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.on_publish_batch = self._on_publishes
        self._inbox: deque[_Message] = deque()
        self._cond = threading.Condition()
        self._ack_lock = threading.Lock()
        self._epoch = 0
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._sub_pending: set[int] = set()
        self._stopping = threading.Event()
        self._worker: threading.Thread | None = None
        self._done: Future[None] | None = None
        self._failures = 0
        self._paused = False
        self._refused_logged: str | None = None
        self._down: tuple[float, str] | None = (time.monotonic(), "not connected yet")  # since, why
        self.received = 0
        self.acked = 0

    # -- Source protocol -----------------------------------------------------------------------------

    async def run(self, accept: Accept) -> None:
        loop = asyncio.get_running_loop()

        def on_loop(readings: Sequence[Reading]) -> None:
            async def call() -> None:
                accept(readings, self.name)
            asyncio.run_coroutine_threadsafe(call(), loop).result(_ACCEPT_TIMEOUT)

        self.start(on_loop)
        assert self._done is not None
        await asyncio.wrap_future(self._done)

    async def stop(self) -> None:
        await asyncio.to_thread(self.close)

    # -- thread-level API (also used by benchmarks and tests without an event loop) --------------------

    def start(self, commit: Callable[[Sequence[Reading]], None]) -> None:
        """Connect (in the background, retrying) and start ingesting; `commit` must be durable."""
        self._done = Future()
        self._client.connect_async(**connect_args(self.settings))
        self._client.loop_start()
        self._worker = threading.Thread(target=self._work, args=(commit,), name="mqtt-ingest", daemon=True)
        self._worker.start()
        log.info("MQTT: connecting to %s:%d as %r (MQTT %s%s), %d subscriptions", self.settings.host,
                 self.settings.port, self.settings.client_id, self.settings.protocol.value,
                 ", TLS" if self.settings.tls else "", len(self.router.subscriptions))

    def close(self) -> None:
        """Stop after the batch in hand; unacknowledged messages stay with the broker."""
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        if self._worker is not None:
            self._worker.join(_ACCEPT_TIMEOUT + 5)
        with contextlib.suppress(Exception):
            self._client.disconnect()
        self._client.loop_stop()
        metrics.MQTT_CONNECTED.set(0)
        if self.deadletters is not None:
            self.deadletters.close()
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    def outages(self) -> dict[str, tuple[float, str]]:
        """The broker, while it cannot be reached: since when (`time.monotonic()`) and why (health)."""
        down = self._down
        if down is None or self._stopping.is_set():
            return {}
        return {f"MQTT {self.settings.host}:{self.settings.port}": down}

    def _went_down(self, why: str) -> None:
        down = self._down
        self._down = (down[0] if down is not None else time.monotonic(), why)

    def wait_subscribed(self, timeout: float) -> bool:
        """True once connected and every subscription is acknowledged by the broker."""
        return self._subscribed.wait(timeout)

    def replace_router(self, router: Router) -> tuple[int, int]:
        """Route by a new topic table from now on (a config reload): subscribe to its new filters and drop
        the ones it no longer has, on the running connection (a reconnect subscribes to the table in use).
        Returns how many filters were added and removed."""
        old = set(self.router.subscriptions)
        new = set(router.subscriptions)
        self.router = router
        added, removed = sorted(new - old), sorted(old - new)
        if not self._connected.is_set():
            return len(added), len(removed)
        prefix = f"$share/{self.settings.shared_group}/" if self.settings.shared_group else ""
        with self._ack_lock:
            subs = subscribe_args(self.settings, tuple(added))
            for i in range(0, len(subs), 100):
                rc, mid = self._client.subscribe(subs[i:i + 100])
                if rc == mqtt.MQTT_ERR_SUCCESS and mid is not None:
                    self._sub_pending.add(mid)
            if removed:
                self._client.unsubscribe([prefix + f for f in removed])
        return len(added), len(removed)

    # -- paho callbacks (network thread) ---------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags,
                    reason: Any, properties: Any) -> None:
        if reason.is_failure:
            text = str(reason)
            if text != self._refused_logged:
                hint = (" — check mqtt.username/password and the broker's ACL"
                        if "authori" in text.lower() or "password" in text.lower() else "")
                log.error("MQTT: %s:%d refused the connection: %s%s (retrying with backoff)",
                          self.settings.host, self.settings.port, text, hint)
                self._refused_logged = text
            self._went_down(f"refused: {text}")
            return
        self._refused_logged = None
        self._down = None
        metrics.MQTT_CONNECTS.inc()
        metrics.MQTT_CONNECTED.set(1)
        subs = subscribe_args(self.settings, self.router.subscriptions)
        with self._ack_lock:
            self._sub_pending = set()
            for i in range(0, len(subs), 100):  # re-made on every connect: a new session has none
                rc, mid = client.subscribe(subs[i:i + 100])
                if rc == mqtt.MQTT_ERR_SUCCESS and mid is not None:
                    self._sub_pending.add(mid)
        log.info("MQTT: connected to %s:%d (session %s), subscribing to %d topic filters",
                 self.settings.host, self.settings.port,
                 "resumed" if flags.session_present else "new", len(subs))
        self._connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        with self._ack_lock:
            self._epoch += 1  # packet ids of the old connection must never be acknowledged on a new one
        self._connected.clear()
        self._subscribed.clear()
        metrics.MQTT_CONNECTED.set(0)
        metrics.MQTT_SUBSCRIBED.set(0)
        if not self._paused:  # a pause says why itself
            self._went_down(f"disconnected: {reason}")
        if not self._stopping.is_set():
            log.warning("MQTT: disconnected from %s:%d (%s); unacknowledged messages will be redelivered",
                        self.settings.host, self.settings.port, reason)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: list[Any],
                      properties: Any) -> None:
        with self._ack_lock:
            self._sub_pending.discard(mid)
            if not self._sub_pending:
                metrics.MQTT_SUBSCRIBED.set(1)
                self._subscribed.set()
        bad = [str(r) for r in reasons if r.is_failure]
        if bad:
            log.error("MQTT: the broker refused %d of %d subscriptions (%s): check its ACL for client %r",
                      len(bad), len(reasons), bad[0], self.settings.client_id)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if self._paused:
            return  # not acknowledged: the broker redelivers it on the next connection
        payload = msg.payload
        size, bound = len(payload), self.context.max_payload
        m = _Message(self._epoch, msg.mid, msg.qos, msg.topic,
                     bytes(payload if size <= bound else payload[:TOO_LARGE_PREFIX]), self._clock(), bool(msg.dup),
                     size, bool(msg.retain))
        with self._cond:
            # The broker bounds what it sends unacknowledged (max_inflight); should it send more, wait
            # here: TCP backpressure, never an unbounded queue.
            while (len(self._inbox) >= self.settings.max_inflight and not self._stopping.is_set()
                   and not self._paused):
                self._cond.wait(_POLL)
            self._inbox.append(m)
            if len(self._inbox) == 1 or len(self._inbox) >= self._batch_size():
                self._cond.notify_all()

    def _on_publishes(self, batch: list[Publish]) -> None:
        """The fast path's runs of PUBLISH packets: into the inbox under one lock, within its bound."""
        if self._paused:
            return  # not acknowledged: the broker redelivers them on the next connection
        epoch, received, cap = self._epoch, self._clock(), self.context.max_payload
        messages = [_Message(epoch, mid, qos, topic, payload if len(payload) <= cap else payload[:TOO_LARGE_PREFIX],
                             received, dup, len(payload), retain)
                    for mid, qos, dup, retain, topic, payload in batch]
        bound, full = self.settings.max_inflight, self._batch_size()
        with self._cond:
            i = 0
            while i < len(messages):
                room = bound - len(self._inbox)
                if room <= 0:  # as in _on_message: TCP backpressure, never an unbounded queue
                    if self._stopping.is_set() or self._paused:
                        return
                    self._cond.wait(_POLL)
                    continue
                was = len(self._inbox)
                self._inbox.extend(messages[i:i + room])
                i += room
                if was == 0 or len(self._inbox) >= full:
                    self._cond.notify_all()

    # -- the ingest thread ---------------------------------------------------------------------------

    def _batch_size(self) -> int:
        # two batches fit in the in-flight window: the broker sends the next while this one commits
        return max(1, min(self.settings.batch_max, self.settings.max_inflight // 2))

    def _take(self, first_wait: float = _POLL) -> list[_Message]:
        batch_max = self._batch_size()
        wait = self.settings.batch_wait.total_seconds()
        with self._cond:
            if not self._inbox:
                self._cond.wait(first_wait)
                if not self._inbox:
                    return []
            deadline = time.monotonic() + wait
            while len(self._inbox) < batch_max and not self._stopping.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            n = min(batch_max, len(self._inbox))
            batch = [self._inbox.popleft() for _ in range(n)]
            self._cond.notify_all()
        metrics.MQTT_PENDING.set(len(self._inbox) + n)
        return batch

    def _work(self, commit: Callable[[Sequence[Reading]], None]) -> None:
        """Take, decode and hand a batch to the committer; while it commits, take and decode the next.

        At most one batch is being committed; it is acknowledged once its commit returns, before the
        next batch is handed over. A failed commit pauses the source and drops the batch decoded
        meanwhile, unacknowledged (the broker redelivers it).
        """
        committer = ThreadPoolExecutor(1, thread_name_prefix="mqtt-commit")
        inflight: tuple[list[_Message], Future[None]] | None = None
        try:
            while not self._stopping.is_set():
                epoch = self._epoch
                # with a commit under way, take only what arrives meanwhile
                batch = self._take(self.settings.batch_wait.total_seconds() if inflight else _POLL)
                decoded = self._decode(batch) if batch else None
                if inflight is not None:
                    ok = self._finish(*inflight)
                    inflight = None
                    if not ok or epoch != self._epoch:
                        continue  # `batch` was received before the pause: not acknowledged, redelivered
                if batch and decoded is not None:
                    self._count(batch)
                    inflight = (batch, committer.submit(self._commit, commit, *decoded))
            if inflight is not None:
                self._finish(*inflight)
        except Exception:  # a fault here must not leave the service running without its source
            log.exception("MQTT: the ingest thread failed")
            raise
        finally:
            committer.shutdown(wait=True)
            if self._done is not None and not self._done.done():
                self._done.set_result(None)

    def _decode(self, batch: list[_Message]) -> tuple[list[Reading], list[NewDeadLetter]]:
        readings: list[Reading] = []
        letters: list[NewDeadLetter] = []
        seconds, received = -1.0, datetime.fromtimestamp(0, UTC)  # messages of one read share a receive time
        for m in batch:
            try:
                refuse_retained = m.retain and not self.settings.accept_retained
                hit = None if refuse_retained else self.router.route(m.topic)
                if m.size > len(m.payload):  # cut on receipt: never decoded
                    rejected = [Rejected(RejectReason.TOO_LARGE, f"{m.size} bytes, the bound is "
                                         f"{self.context.max_payload} (mqtt.max_payload); the first "
                                         f"{len(m.payload)} are kept")]
                elif refuse_retained:
                    rejected = [Rejected(RejectReason.RETAINED, "a retained message is the broker's copy of an "
                                         "old publish, not a reading (see mqtt.accept_retained)")]
                elif hit is None:
                    rejected = [Rejected(RejectReason.UNKNOWN_TOPIC, "no configured meter has this topic")]
                else:
                    route, key = hit
                    if m.received != seconds:
                        seconds, received = m.received, datetime.fromtimestamp(m.received, UTC)
                    d = decode(route.profile, m.payload, received, self.context, route.meters, key)
                    readings += d.readings
                    rejected = d.rejected
            except Exception as exc:  # a decoder fault: keep the message, keep the stream
                log.exception("MQTT: decoding a message on %.200s failed", m.topic)
                rejected = [Rejected(RejectReason.DECODE_ERROR, f"{type(exc).__name__}: {exc}")]
            if rejected:
                for rej in rejected:
                    self.rejects.note(m.topic, rej)
                first = rejected[0]
                detail = first.detail if len(rejected) == 1 else f"{first.detail} (+{len(rejected) - 1} more)"
                letters.append(NewDeadLetter(m.received, "mqtt", m.topic, first.reason.value, detail,
                                             m.payload, m.size))
        return readings, letters

    def _count(self, batch: list[_Message]) -> None:
        self.received += len(batch)
        metrics.MQTT_MESSAGES.inc(len(batch))
        dups = sum(1 for m in batch if m.dup)
        if dups:
            metrics.MQTT_REDELIVERED.inc(dups)

    def _commit(self, commit: Callable[[Sequence[Reading]], None], readings: list[Reading],
                letters: list[NewDeadLetter]) -> None:
        if readings:
            commit(readings)
        if letters and self.deadletters is not None:
            self.deadletters.put(letters)

    def _finish(self, batch: list[_Message], done: Future[None]) -> bool:
        """Wait for a batch's commit; acknowledge it, or pause when it failed. True when acknowledged."""
        try:
            done.result()
        except Exception as exc:  # OutboxFull, a disk error, a stuck loop: nothing acked, pause
            self._pause(exc)
            return False
        if self._failures:
            log.info("MQTT: commits succeed again; consuming")
            self._failures = 0
        self._ack(batch)
        return True

    def _ack(self, batch: list[_Message]) -> None:
        with self._ack_lock:
            epoch = self._epoch
            puback = [m.mid for m in batch if m.qos == 1 and m.epoch == epoch]
            self._client.ack_many(puback)  # one write for the batch
            n = len(puback)
            for m in batch:
                if m.qos == 2 and m.epoch == epoch:
                    self._client.ack(m.mid, m.qos)
                    n += 1
        self.acked += n
        metrics.MQTT_ACKED.inc(n)

    def _pause(self, exc: Exception) -> None:
        """Stop consuming: disconnect (the broker keeps what is not acknowledged), wait, reconnect."""
        self._failures += 1
        metrics.MQTT_PAUSES.inc()
        delay = self.backoff.delay(self._failures)
        log.warning("MQTT: cannot commit readings (%s: %s); pausing consumption for %.1fs — nothing of this "
                    "batch is acknowledged, the broker redelivers it", type(exc).__name__, exc, delay)
        self._paused = True
        self._went_down(f"paused: cannot commit readings: {exc}")
        with self._ack_lock:
            self._epoch += 1
        with self._cond:
            self._inbox.clear()  # not acknowledged: redelivered on the next connection
            self._cond.notify_all()
        with contextlib.suppress(Exception):
            self._client.disconnect()
        self._client.loop_stop()
        if self._stopping.wait(delay):
            return
        self._paused = False
        self._client.connect_async(**connect_args(self.settings))
        self._client.loop_start()


