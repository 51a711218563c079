"""A simulated data logger / RTU uplink: frames go to the centre over TCP and stay in the logger's buffer
until the centre answers them (HJ 212 data answer, SZY 206 confirmation) — re-sent after a silence,
after a lost connection, after a restart of the centre, in the order they were made.

The buffer is bounded (`buffer_max` frames; the oldest go first, counted in `dropped`), frames in flight
per connection are bounded (`window`), every wait is timed out. Faults a logger shows in the field can be
switched on: an outage during which nothing is sent (frames pile up and are uploaded afterwards).
"""

from __future__ import annotations

import logging
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from collector.model import Reading

__all__ = ["AnswerReader", "DataLogger", "Encoder", "UplinkPlan", "Upload", "run_uplinks"]

log = logging.getLogger("simulators.datalogger")


@dataclass(slots=True)
class Upload:
    """One frame and the key its answer carries (None: the frame asks for no answer)."""

    frame: bytes
    key: bytes | None
    sent_at: float | None = field(default=None, compare=False)
    tries: int = field(default=0, compare=False)


class AnswerReader:
    """Cuts answers out of the bytes the centre sends and gives each one's key."""

    def __init__(self, split: Callable[[bytearray], list[bytes]], key: Callable[[bytes], bytes | None]) -> None:
        self._split = split
        self._key = key
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        if len(self._buf) > 1 << 20:
            self._buf.clear()  # bounded: a centre that talks nonsense
        return [k for k in (self._key(a) for a in self._split(self._buf)) if k is not None]


class DataLogger:
    def __init__(self, host: str, port: int, answers: Callable[[], AnswerReader], *, window: int = 1,
                 answer_timeout: float = 2.0, buffer_max: int = 100_000, connect_timeout: float = 2.0) -> None:
        self.host, self.port = host, port
        self._answers = answers
        self.window = max(1, window)
        self.answer_timeout = answer_timeout
        self.connect_timeout = connect_timeout
        self.buffer: deque[Upload] = deque()
        self.buffer_max = buffer_max
        self._sock: socket.socket | None = None
        self._reader: AnswerReader | None = None
        self.sent = 0  # frames written, re-sends included
        self.answered = 0
        self.resent = 0
        self.dropped = 0  # the oldest frames, when the buffer overflowed
        self.connects = 0

    def add(self, upload: Upload) -> None:
        if len(self.buffer) >= self.buffer_max:
            self.buffer.popleft()
            self.dropped += 1
        self.buffer.append(upload)

    @property
    def pending(self) -> int:
        return len(self.buffer)

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def pump(self, budget_s: float) -> None:
        """Send and collect answers for at most `budget_s` seconds or until the buffer is empty. A lost or
        refused connection leaves everything in the buffer for the next call."""
        deadline = time.monotonic() + budget_s
        while self.buffer and time.monotonic() < deadline:
            if self._sock is None and not self._connect():
                return
            try:
                self._step(deadline)
            except OSError as exc:
                log.info("connection to %s:%d lost (%s); %d frames wait", self.host, self.port, exc,
                         len(self.buffer))
                self.close()
                return

    def _connect(self) -> bool:
        try:
            self._sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except OSError:
            return False
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._reader = self._answers()
        self.connects += 1
        for u in self.buffer:
            u.sent_at = None  # whatever was in flight on the old connection is sent again
        return True

    def _step(self, deadline: float) -> None:
        assert self._sock is not None and self._reader is not None
        now = time.monotonic()
        inflight = 0
        out = bytearray()
        for u in list(self.buffer)[:self.window]:
            if u.sent_at is not None and now - u.sent_at < self.answer_timeout:
                inflight += 1
                continue
            if u.tries:
                self.resent += 1
            u.sent_at, u.tries = now, u.tries + 1
            out += u.frame
            inflight += 1
        if out:
            self._sock.sendall(out)
            self.sent += inflight
        # frames that ask for no answer are done once written
        while self.buffer and self.buffer[0].key is None and self.buffer[0].sent_at is not None:
            self.buffer.popleft()
        if not self.buffer:
            return
        wait = max(0.0, min(deadline, min(u.sent_at or now for u in list(self.buffer)[:self.window])
                            + self.answer_timeout) - time.monotonic())
        ready, _, _ = select.select([self._sock], [], [], wait)
        if not ready:
            return
        data = self._sock.recv(65536)
        if not data:
            raise ConnectionResetError("the centre closed the connection")
        for key in self._reader.feed(data):  # each answer settles the oldest frame in flight with its key
            for u in self.buffer:
                if u.key == key and u.sent_at is not None:
                    self.buffer.remove(u)
                    self.answered += 1
                    break

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None
                self._reader = None


class Encoder(Protocol):
    """A simulated station: one step's readings as the frames it uploads."""

    def uploads(self, readings: Sequence[Reading], at: datetime) -> list[Upload]: ...


@dataclass(frozen=True, slots=True)
class UplinkPlan:
    """Data time from `start` to `end` in steps of `interval`, `speed` times faster than real time (device
    times never in the future); during `outage` (offset from start, length) nothing is sent; at the end
    the loggers have `drain_s` seconds to have everything answered."""

    start: datetime
    end: datetime
    interval: timedelta = timedelta(minutes=1)
    speed: float = 60.0
    outage: tuple[timedelta, timedelta] | None = None
    drain_s: float = 30.0


def run_uplinks(plan: UplinkPlan, readings: Callable[[datetime], list[Reading]],
                stations: Sequence[tuple[Encoder, DataLogger]], stop: threading.Event | None = None) -> int:
    """Step the data time, hand each station's frames to its logger and let the loggers send between steps.
    Returns the number of frames still unanswered at the end."""
    stop = stop or threading.Event()
    began = time.monotonic()
    t = plan.start
    try:
        while t <= plan.end and not stop.is_set():
            step = readings(t)
            for encoder, logger in stations:
                for u in encoder.uploads(step, t):
                    logger.add(u)
            t += plan.interval
            due = began + (t - plan.start).total_seconds() / plan.speed
            offset = t - plan.start
            down = plan.outage is not None and plan.outage[0] <= offset < plan.outage[0] + plan.outage[1]
            while not stop.is_set() and time.monotonic() < due:
                if down:
                    for _, logger in stations:
                        logger.close()
                    stop.wait(max(0.0, due - time.monotonic()))
                    break
                idle = True
                for _, logger in stations:
                    if logger.pending:
                        idle = False
                        logger.pump(min(0.2, max(0.0, due - time.monotonic())))
                if idle:
                    stop.wait(max(0.0, min(0.2, due - time.monotonic())))
                elif all(lg.pending and not lg.connected for _, lg in stations):
                    stop.wait(min(0.5, max(0.0, due - time.monotonic())))  # the centre is away: back off
        deadline = time.monotonic() + plan.drain_s
        while not stop.is_set() and time.monotonic() < deadline and any(lg.pending for _, lg in stations):
            for _, logger in stations:
                logger.pump(0.2)
            if all(not lg.connected for _, lg in stations if lg.pending):
                stop.wait(0.2)
    finally:
        for _, logger in stations:
            logger.close()
    return sum(lg.pending for _, lg in stations)
