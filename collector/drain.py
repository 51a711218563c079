"""The drainer: moves lines from the outbox to InfluxDB, deleting them only once acknowledged.

Batches are sent when `batch_size` lines wait or the oldest has waited `max_batch_age`. Retryable
failures back off exponentially with jitter (honouring Retry-After); a batch InfluxDB rejects as data is
split in halves until the bad lines are isolated, and only those single lines are dropped and counted.

Under load the drainer overlaps the deletion of a written batch with the write of the next one: one
delete at a time, on its own thread, while the next batch is read from after the written one. A delete
that fails (a full disk) leaves its lines in the outbox; they are read and sent again (InfluxDB
overwrites them) until they can be removed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from collector import metrics
from collector.backoff import Backoff
from collector.influx.writer import (
    InfluxTargetMissing,
    RejectedWrite,
    RetryableWriteError,
    WriteError,
    Writer,
)
from collector.outbox import Chunk, Outbox, OutboxError

__all__ = ["Drainer"]

log = logging.getLogger(__name__)


class Drainer:
    def __init__(self, outbox: Outbox, writer: Writer, backoff: Backoff | None = None,
                 sleep: Callable[[float], bool] | None = None) -> None:
        self.outbox = outbox
        self.writer = writer
        self.backoff = backoff or Backoff(base=0.5, cap=30.0)
        self._stop = threading.Event()
        self._sleep = sleep or self._stop.wait  # returns True when stopping
        self._thread: threading.Thread | None = None
        self._failures = 0
        self._last_error_class: str | None = None
        self._need_target = True
        self._ack_failures = 0
        self._sent_upto = 0  # the newest chunk id written to InfluxDB; later reads start after it
        self._deleting: tuple[list[Chunk], Future[None]] | None = None
        self._deleter: ThreadPoolExecutor | None = None
        self._fault: str | None = None  # an unexpected error of the drain loop, until a round succeeds
        self._faults = 0
        self.written = 0
        self.dropped = 0

    @property
    def failing(self) -> str | None:
        """The class of the current write failure, or None while writes succeed."""
        return self._last_error_class

    @property
    def failures(self) -> int:
        """Consecutive failed InfluxDB writes (0 once one succeeds)."""
        return self._failures

    def problems(self) -> list[str]:
        """What stops the drain other than InfluxDB itself (an outbox that cannot be read), while it lasts."""
        fault = self._fault
        return [f"{fault} ({self._faults} attempts)"] if fault is not None else []

    # -- lifecycle -----------------------------------------------------------------------------------

    def prepare(self) -> bool:
        """Check (v2) or create (v1) the database once, before anything is read from it; True when ready.

        A failure is logged and counted like a failed write and leaves the check to the first drain.
        """
        try:
            self.writer.ensure_target()
        except WriteError as exc:
            self._failed(exc)
            return False
        self._need_target = False
        return True

    def start(self) -> Drainer:
        self._thread = threading.Thread(target=self.run, name="outbox-drainer", daemon=True)
        self._thread.start()
        return self

    def stop(self, flush_timeout: float = 5.0) -> None:
        """Stop after a best-effort flush; whatever is not sent stays in the outbox for next time."""
        deadline = time.monotonic() + flush_timeout
        while self._thread is not None and self.outbox.depth and self._failures == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        self._stop.set()
        self.outbox.wake()
        if self._thread is not None:
            self._thread.join(10)

    def run(self) -> None:
        size = self.outbox.settings.batch_size
        max_age = self.outbox.settings.max_batch_age.total_seconds()
        self._deleter = ThreadPoolExecutor(1, thread_name_prefix="outbox-delete")
        try:
            while not self._stop.is_set():
                try:
                    self._round(size, max_age)
                except Exception as exc:  # never let the thread die: log and keep going with backoff
                    self._faulted(exc)
                    if self._sleep(self.backoff.delay(self._faults)):
                        return
                else:
                    self._fault_cleared()
        finally:
            self._settle()
            self._deleter.shutdown(wait=True)
            self._deleter = None

    def _round(self, size: int, max_age: float) -> None:
        """Wait for a batch to be due, or send one."""
        if self.outbox.depth - self._deleting_lines() < size:
            self._settle()  # a full batch does not wait: below one, judge the age without the deleted
            age = self.outbox.oldest_age()
            if self.outbox.depth == 0 or age < max_age:
                self.outbox.wait_for(size, max(0.01, max_age - age) if self.outbox.depth else max_age)
                return
        self.drain_once(overlap=True)

    # -- one batch -----------------------------------------------------------------------------------

    def drain_once(self, overlap: bool = False) -> int:
        """Send one batch; returns lines removed from the outbox (written or dropped).

        With `overlap` (the drain loop), the batch's deletion runs while the next batch is written, and the
        lines counted are those of the deletion that finished meanwhile.
        """
        chunks = self.outbox.peek(self.outbox.settings.batch_size, after=self._sent_upto)
        if not chunks:
            return self._settle()
        n = sum(c.n for c in chunks)
        try:
            if self._need_target:
                self.writer.ensure_target()
                self._need_target = False
            self._send_chunks(chunks, n)
        except (RetryableWriteError, InfluxTargetMissing) as exc:
            if isinstance(exc, InfluxTargetMissing) or exc.error_class == "not_found":
                self._need_target = True
            retry_after = getattr(exc, "retry_after", None)
            self._failed(exc)
            delay = retry_after if retry_after is not None else self.backoff.delay(self._failures)
            self._sleep(min(delay, 300.0))
            return 0
        if self._failures:
            log.info("InfluxDB accepts writes again after %d failed attempts; %d lines waiting",
                     self._failures, self.outbox.depth)
        self._failures, self._last_error_class = 0, None
        # every line is now in InfluxDB or dropped as invalid: only now do the chunks leave the outbox
        self._sent_upto = chunks[-1].id
        removed = self._settle()  # one deletion at a time
        if overlap and self._deleter is not None:
            self._deleting = (chunks, self._deleter.submit(self.outbox.ack, chunks))
            return removed
        try:
            self.outbox.ack(chunks)
        except OutboxError as exc:
            return removed + self._not_deleted(chunks, exc)
        return removed + self._deleted(chunks)

    def _deleting_lines(self) -> int:
        return sum(c.n for c in self._deleting[0]) if self._deleting is not None else 0

    def _settle(self) -> int:
        """Wait for the deletion under way; returns the lines it removed (0: none, or it failed)."""
        if self._deleting is None:
            return 0
        chunks, done = self._deleting
        self._deleting = None
        try:
            done.result()
        except OutboxError as exc:
            return self._not_deleted(chunks, exc)
        return self._deleted(chunks)

    def _deleted(self, chunks: list[Chunk]) -> int:
        if self._ack_failures:
            log.info("the outbox removes sent lines again after %d failed attempts", self._ack_failures)
            self._ack_failures = 0
        return sum(c.n for c in chunks)

    def _not_deleted(self, chunks: list[Chunk], exc: OutboxError) -> int:
        """E.g. the disk is full (a delete needs room in the WAL too): the lines stay and are sent again."""
        self._ack_failures += 1
        self._sent_upto = 0  # read again from the oldest: sent again, removed once there is room
        if self._ack_failures == 1:
            log.error("%s — the %d lines just written stay in the outbox and are sent again until they can "
                      "be removed (InfluxDB overwrites them); free space under state_dir", exc,
                      sum(c.n for c in chunks))
        self._sleep(self.backoff.delay(self._ack_failures))
        return 0

    def _send_chunks(self, chunks: list[Chunk], n: int) -> None:
        """The common case in one request built from the stored bodies; a rejection falls back to lines."""
        try:
            self.writer.write_body("\n".join(c.body for c in chunks))
        except RejectedWrite as exc:
            self._rejected([line for c in chunks for line in c.lines], exc)
            return
        metrics.POINTS_WRITTEN.inc(n)
        self.written += n

    def _send(self, lines: list[str]) -> None:
        """Write lines; on rejection bisect them so only the offending single lines are dropped.

        A retryable error part-way through leaves every chunk in the outbox: re-sending lines InfluxDB
        already has overwrites the same points, so at-least-once is safe.
        """
        try:
            self.writer.write(lines)
        except RejectedWrite as exc:
            self._rejected(lines, exc)
            return
        metrics.POINTS_WRITTEN.inc(len(lines))
        self.written += len(lines)

    def _rejected(self, lines: list[str], exc: RejectedWrite) -> None:
        metrics.WRITE_ERRORS.labels(exc.error_class).inc()
        if len(lines) == 1:
            self._drop(lines[0], exc)
            return
        mid = len(lines) // 2
        self._send(lines[:mid])
        self._send(lines[mid:])

    def _drop(self, line: str, exc: RejectedWrite) -> None:
        self.dropped += 1
        metrics.POINTS_DROPPED.labels(exc.error_class).inc()
        log.error("dropping one line InfluxDB refuses as data (%s): %.300s", exc, line)

    def _faulted(self, exc: Exception) -> None:
        self._faults += 1
        text = f"{type(exc).__name__}: {exc}"
        if text != self._fault:  # logged once per kind of fault, not on every retry
            log.exception("the outbox drainer cannot work: %s; retrying with backoff", text)
        self._fault = text

    def _fault_cleared(self) -> None:
        if self._fault is not None:
            log.info("the outbox drainer works again after %d failed attempts", self._faults)
        self._fault, self._faults = None, 0

    def _failed(self, exc: WriteError) -> None:
        self._failures += 1
        metrics.WRITE_ERRORS.labels(exc.error_class).inc()
        if exc.error_class != self._last_error_class:  # log once per change of state, not per retry
            log.warning("%s — keeping %d lines in the outbox and retrying with backoff", exc,
                        self.outbox.depth)
            self._last_error_class = exc.error_class

