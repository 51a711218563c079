"""The telemetry TCP server shared by HJ 212 and SZY 206: frame, decode, commit, and only then answer.

Each connection has its protocol's `Framing` (a byte buffer bounded by `max_buffer`); every frame it
yields is decoded into readings, a reject, or both nothing and an answer (a heartbeat). Frames of all
connections go through one bounded queue to a committer, which commits what has gathered as one batch —
readings to the outbox through `accept`, rejects to the dead-letter store — and then lets each connection
send its answers, in the order its frames came. A frame whose commit failed is never answered (the
logger sends it again) and its connection is closed. A connection silent for `idle_timeout` (a slow or
half-open peer) is closed, and beyond `max_connections` a new one is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol as TypingProtocol

from collector import metrics
from collector.deadletter import DeadLetterStore, NewDeadLetter
from collector.model import Reading
from collector.mqtt.rejects import RejectLog
from collector.telemetry.settings import ListenerSettings

__all__ = ["Decoded", "FrameReject", "Framing", "Protocol", "Rejected", "TelemetryServer"]

log = logging.getLogger("collector.telemetry")

Accept = Callable[[Sequence[Reading], str], None]

_READ = 64 * 1024


class FrameReject(ValueError):
    """A frame or data segment that does not follow its standard; `reason` is the metric label."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(detail)


@dataclass(frozen=True, slots=True)
class Rejected:
    """Input that cannot be used: the reason (a metric label), a human detail, the raw bytes; `fatal`
    when the byte stream cannot be resynchronised (the connection is closed)."""

    reason: str
    detail: str
    payload: bytes
    fatal: bool = False


@dataclass(frozen=True, slots=True)
class Decoded:
    """What one frame gives: readings, or a reject; `answer` is sent once they are committed; `station`
    names the sender in logs and dead letters."""

    readings: tuple[Reading, ...] = ()
    answer: bytes | None = None
    reject: Rejected | None = None
    station: str = ""


class Framing(TypingProtocol):
    """One connection's byte stream cut into frames; unusable bytes come out as `Rejected`."""

    def feed(self, data: bytes) -> list[bytes | Rejected]: ...


class Protocol(TypingProtocol):
    """A national protocol: its framing and its decoder (pure; `received` is the receive time, epoch s)."""

    name: str

    def framing(self, max_buffer: int) -> Framing: ...

    def decode(self, frame: bytes, received: float) -> Decoded: ...


class CommitFailed(Exception):
    """The batch holding a frame could not be committed."""


@dataclass(slots=True)
class _Item:
    decoded: Decoded
    done: asyncio.Future[None]
    peer: str


class TelemetryServer:
    """A `Source` for the service: `await run(accept)` until `await stop()`."""

    def __init__(self, protocol: Protocol, settings: ListenerSettings, deadletters: DeadLetterStore | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.protocol = protocol
        self.name = protocol.name
        self.settings = settings
        self.deadletters = deadletters
        self.rejects = RejectLog(protocol.name)
        self._clock = clock
        self._server: asyncio.Server | None = None
        self._queue: asyncio.Queue[_Item] | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._stopping: asyncio.Event | None = None
        self.port: int | None = None
        self.committed = 0  # frames committed (readings or dead letters)

    # -- Source protocol -----------------------------------------------------------------------------

    async def run(self, accept: Accept) -> None:
        self._stopping = asyncio.Event()
        self._queue = asyncio.Queue(maxsize=max(16, 2 * self.settings.batch_max))
        self._server = await asyncio.start_server(self._connection, self.settings.host, self.settings.port,
                                                  limit=_READ, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("%s: listening on %s:%d", self.name, self.settings.host, self.port)
        committer = asyncio.create_task(self._commit_loop(accept), name=f"{self.name}-commit")
        try:
            await self._stopping.wait()
        finally:
            self._server.close()
            for w in list(self._writers):
                w.close()
            for t in list(self._handlers):
                t.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)
            committer.cancel()
            await asyncio.gather(committer, return_exceptions=True)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            if self.deadletters is not None:
                self.deadletters.close()

    async def stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()

    async def started(self, timeout: float = 10.0) -> int:
        """Wait until listening; the bound port (useful with port 0)."""
        deadline = time.monotonic() + timeout
        while self.port is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: not listening after {timeout}s")
            await asyncio.sleep(0.01)
        return self.port

    # -- connections ---------------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        peer = _peer(writer)
        if len(self._writers) >= self.settings.max_connections:
            metrics.TELEMETRY_CLOSED.labels(self.name, "limit").inc()
            log.warning("%s: refused %s: %d connections open (max_connections)", self.name, peer,
                        len(self._writers))
            writer.close()
            return
        self._writers.add(writer)
        self._handlers.add(task)
        metrics.TELEMETRY_CONNECTIONS.labels(self.name).set(len(self._writers))
        sock = writer.get_extra_info("socket")
        if sock is not None:  # the kernel notices a peer that vanished without a word
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        try:
            await self._serve(reader, writer, peer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except TimeoutError:  # answers not taken: the peer does not read
            metrics.TELEMETRY_CLOSED.labels(self.name, "idle").inc()
            log.info("%s: closing %s: it does not read its answers", self.name, peer)
        finally:
            self._writers.discard(writer)
            self._handlers.discard(task)
            metrics.TELEMETRY_CONNECTIONS.labels(self.name).set(len(self._writers))
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str) -> None:
        framing = self.protocol.framing(self.settings.max_buffer)
        idle = self.settings.idle_timeout.total_seconds()
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = await asyncio.wait_for(reader.read(_READ), idle)
            except TimeoutError:
                metrics.TELEMETRY_CLOSED.labels(self.name, "idle").inc()
                log.info("%s: closing %s: nothing received for %.0fs (idle_timeout)", self.name, peer, idle)
                return
            if not data:
                return
            items = framing.feed(data)
            if not items:
                continue
            received = self._clock()
            pending: list[_Item] = []
            fatal = False
            for frame in items:
                if isinstance(frame, Rejected):
                    decoded = Decoded(reject=frame)
                    fatal = fatal or frame.fatal
                else:
                    decoded = self._decode(frame, received, peer)
                item = _Item(decoded, loop.create_future(), peer)
                await self._queue.put(item)
                pending.append(item)
            answered = False
            for n, item in enumerate(pending):
                try:
                    await item.done
                except CommitFailed:
                    metrics.TELEMETRY_CLOSED.labels(self.name, "commit_failed").inc()
                    for rest in pending[n + 1:]:  # their outcome is known or moot: nothing more is answered
                        if rest.done.done():
                            rest.done.exception()
                        else:
                            rest.done.cancel()
                    return  # nothing after it is answered: the logger sends it again
                if item.decoded.answer is not None:
                    writer.write(item.decoded.answer)
                    answered = True
            if answered:
                await asyncio.wait_for(writer.drain(), idle)
            if fatal:
                metrics.TELEMETRY_CLOSED.labels(self.name, "framing").inc()
                log.info("%s: closing %s: its byte stream cannot be framed", self.name, peer)
                return

    def _decode(self, frame: bytes, received: float, peer: str) -> Decoded:
        try:
            return self.protocol.decode(frame, received)
        except Exception as exc:  # a decoder fault: keep the frame, keep the stream
            log.exception("%s: decoding a frame from %s failed", self.name, peer)
            return Decoded(reject=Rejected("decode_error", f"{type(exc).__name__}: {exc}", frame))

    # -- commits -------------------------------------------------------------------------------------

    async def _commit_loop(self, accept: Accept) -> None:
        assert self._queue is not None
        queue = self._queue
        while True:
            batch = [await queue.get()]
            while len(batch) < self.settings.batch_max and not queue.empty():
                batch.append(queue.get_nowait())
            self._commit(batch, accept)
            await asyncio.sleep(0)  # let the connections answer and read before the next batch

    def _commit(self, batch: list[_Item], accept: Accept) -> None:
        readings: list[Reading] = []
        letters: list[NewDeadLetter] = []
        now = self._clock()
        for item in batch:
            d = item.decoded
            readings.extend(d.readings)
            if d.reject is not None:
                where = d.station or item.peer.rsplit(":", 1)[0]  # a station, or the peer's address
                self.rejects.note_reason(where, d.reject.reason, d.reject.detail)
                letters.append(NewDeadLetter(now, self.name, where, d.reject.reason,
                                             f"{d.reject.detail} (from {item.peer})", d.reject.payload))
        try:
            if readings:
                accept(readings, self.name)
            if letters and self.deadletters is not None:
                self.deadletters.put(letters)
        except Exception as exc:  # OutboxFull, a disk error: nothing of the batch is answered
            metrics.TELEMETRY_FRAMES.labels(self.name, "failed").inc(len(batch))
            log.warning("%s: cannot commit %d frames (%s: %s); not answered — the loggers send them again",
                        self.name, len(batch), type(exc).__name__, exc)
            for item in batch:
                if not item.done.done():
                    item.done.set_exception(CommitFailed(str(exc)))
            return
        rejected = len(letters)
        metrics.TELEMETRY_FRAMES.labels(self.name, "committed").inc(len(batch) - rejected)
        if rejected:
            metrics.TELEMETRY_FRAMES.labels(self.name, "rejected").inc(rejected)
        self.committed += len(batch)
        for item in batch:
            if not item.done.done():
                item.done.set_result(None)


def _peer(writer: asyncio.StreamWriter) -> str:
    info = writer.get_extra_info("peername")
    if isinstance(info, tuple) and len(info) >= 2:
        return f"{info[0]}:{info[1]}"
    return str(info)
