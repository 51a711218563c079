"""The durable outbox: every line is committed to SQLite (WAL) before its source is acknowledged.

Lines leave the outbox only when InfluxDB has acknowledged them (`Outbox.ack`), so a crash, a broker
restart or a database outage loses nothing. The outbox is bounded: near the bound it warns loudly, at the
bound `put` raises `OutboxFull` and the source is not acknowledged (MQTT redelivers later; a meter's
totalizer keeps counting, so the volume is recovered from the next reading).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from collector import metrics
from collector.duration import Duration

__all__ = ["Batch", "Outbox", "OutboxError", "OutboxFull", "OutboxSettings"]

log = logging.getLogger(__name__)


class OutboxSettings(BaseModel):
    """`outbox:` in the config file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    batch_size: int = Field(default=5000, ge=1, le=100_000, description="lines per InfluxDB write")
    max_batch_age: Duration = Field(default=timedelta(seconds=1), description="flush a partial batch after")
    max_rows: int = Field(default=5_000_000, ge=100, description="bound: put() refuses beyond it")
    warn_fraction: float = Field(default=0.8, gt=0, lt=1, description="warn when this full")
    synchronous: str = Field(default="full", pattern="^(full|normal)$",
                             description="full survives power loss; normal survives process crashes")


class OutboxError(Exception):
    """The outbox cannot take or give lines."""


class OutboxFull(OutboxError):
    """The outbox is at its configured bound; the caller must not acknowledge its source."""


Batch = list[tuple[int, str]]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    line TEXT NOT NULL
);
"""


class Outbox:
    """A bounded, durable FIFO of line-protocol lines.

    Thread-safe: `put` may be called from any thread (each call is one transaction); the drainer uses
    `peek`/`ack` from its own thread. `clock` returns Unix seconds and is injected for tests.
    """

    def __init__(self, path: str | Path, settings: OutboxSettings | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.settings = settings or OutboxSettings()
        self._clock = clock
        self._lock = threading.Lock()
        self._new = threading.Condition(self._lock)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={self.settings.synchronous.upper()}")
            self._db.executescript(_SCHEMA)
            self._rows = int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot open the outbox {self.path}: {exc}") from exc
        self._warned = False
        self._closed = False
        self._update_gauges()
        if self._rows:
            log.info("outbox %s holds %d unsent lines from before; they will be sent first", self.path,
                     self._rows)

    # -- producer side -------------------------------------------------------------------------------

    def put(self, lines: Iterable[str]) -> int:
        """Commit lines durably; returns how many. Raises `OutboxFull` (nothing committed) at the bound."""
        batch = list(lines)
        if not batch:
            return 0
        now = self._clock()
        with self._lock:
            if self._closed:
                raise OutboxError("the outbox is closed")
            if self._rows + len(batch) > self.settings.max_rows:
                metrics.OUTBOX_REFUSED.inc(len(batch))
                raise OutboxFull(
                    f"outbox {self.path} is full ({self._rows} of {self.settings.max_rows} lines): InfluxDB "
                    "has not accepted writes for a long time; fix the database connection or raise "
                    "outbox.max_rows"
                )
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany("INSERT INTO outbox (created, line) VALUES (?, ?)",
                                     [(now, line) for line in batch])
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise OutboxError(f"cannot commit to the outbox {self.path}: {exc}") from exc
            self._rows += len(batch)
            self._check_bound()
            self._new.notify_all()
        return len(batch)

    # -- consumer side -------------------------------------------------------------------------------

    def peek(self, limit: int) -> Batch:
        """The oldest `limit` lines, still in the outbox."""
        with self._lock:
            return list(self._db.execute("SELECT id, line FROM outbox ORDER BY id LIMIT ?", (limit,)))

    def ack(self, ids: Sequence[int]) -> None:
        """Remove lines InfluxDB has acknowledged (or that were dropped as invalid)."""
        if not ids:
            return
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                if len(ids) == ids[-1] - ids[0] + 1:  # a contiguous run: one range delete
                    cur = self._db.execute("DELETE FROM outbox WHERE id BETWEEN ? AND ?", (ids[0], ids[-1]))
                else:
                    cur = self._db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise OutboxError(f"cannot delete from the outbox {self.path}: {exc}") from exc
            self._rows = max(0, self._rows - cur.rowcount)
            self._check_bound()

    def wait_for(self, rows: int, timeout: float) -> None:
        """Block until at least `rows` lines are waiting, or `timeout` seconds pass."""
        with self._new:
            self._new.wait_for(lambda: self._rows >= rows or self._closed, timeout)

    def wake(self) -> None:
        """Wake threads blocked in `wait_for` (used when stopping)."""
        with self._new:
            self._new.notify_all()

    def oldest_age(self) -> float:
        """Seconds since the oldest waiting line was committed (0 when empty)."""
        with self._lock:
            row = self._db.execute("SELECT created FROM outbox ORDER BY id LIMIT 1").fetchone()
        age = max(0.0, self._clock() - row[0]) if row else 0.0
        metrics.OUTBOX_OLDEST_AGE.set(age)
        return age

    @property
    def depth(self) -> int:
        return self._rows

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._new.notify_all()
                self._db.close()

    # -- internals -----------------------------------------------------------------------------------

    def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("ROLLBACK")

    def _check_bound(self) -> None:
        self._update_gauges()
        fill = self._rows / self.settings.max_rows
        if fill >= self.settings.warn_fraction and not self._warned:
            self._warned = True
            log.warning("outbox %s is %.0f%% full (%d of %d lines): InfluxDB is not keeping up or is down; "
                        "at 100%% new readings are refused", self.path, fill * 100, self._rows,
                        self.settings.max_rows)
        elif fill < self.settings.warn_fraction / 2 and self._warned:
            self._warned = False
            log.info("outbox %s is draining again (%d lines)", self.path, self._rows)

    def _update_gauges(self) -> None:
        metrics.OUTBOX_DEPTH.set(self._rows)
        metrics.OUTBOX_FILL.set(self._rows / self.settings.max_rows)
