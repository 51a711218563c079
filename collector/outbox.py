"""The durable outbox: every line is committed to SQLite (WAL) before its source is acknowledged.

Lines leave the outbox only when InfluxDB has acknowledged them (`Outbox.ack`), so a crash, a broker
restart or a database outage loses nothing. The outbox is bounded: near the bound it warns loudly, at the
bound `put` raises `OutboxFull` and the source is not acknowledged (MQTT redelivers later; a meter's
totalizer keeps counting, so the volume is recovered from the next reading).

The file is opened by `collector.sqlite.open_store` (checked, repaired, migrated, 0600). A file found
damaged while running (``database disk image is malformed`` on a read or write) is repaired the same way —
moved aside, its readable chunks salvaged into a fresh file — and the call is retried once; what was lost
is counted, logged and listed in `problems()` for the health check.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from collector import metrics
from collector.duration import Duration
from collector.sqlite import (
    StoreHealth,
    StoreSpec,
    StoreVersionError,
    Synchronous,
    close_store,
    connect,
    is_corrupt,
    open_store,
    repair,
)

__all__ = ["Chunk", "Companion", "Outbox", "OutboxDamaged", "OutboxError", "OutboxFull", "OutboxSettings"]

T = TypeVar("T")

Companion = Sequence[tuple[str, Sequence[Sequence[Any]]]]
"""Statements (SQL, rows) run in the transaction that commits a put's lines (`Outbox.put_with`)."""

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


class OutboxDamaged(OutboxError):
    """The outbox file is damaged (SQLite: malformed, not a database); it is repaired and the call retried."""


class OutboxFull(OutboxError):
    """The outbox is at its configured bound; the caller must not acknowledge its source."""


@dataclass(frozen=True)
class Chunk:
    """Lines committed together by one `put` (at most `batch_size` of them), stored as one row.

    Stored as the request body itself (lines joined by newlines), so draining costs no per-line work;
    only a chunk holding a string field with a raw newline is stored as a JSON list of its lines.
    """

    id: int
    n: int
    text: str
    is_json: bool = False

    @property
    def body(self) -> str:
        return "\n".join(json.loads(self.text)) if self.is_json else self.text

    @cached_property
    def lines(self) -> list[str]:
        return list(json.loads(self.text)) if self.is_json else self.text.split("\n")


def _row(now: float, lines: list[str]) -> tuple[float, int, str, int]:
    body = "\n".join(lines)
    if body.count("\n") == len(lines) - 1:
        return now, len(lines), body, 0
    # a string field may legally hold a raw newline: JSON keeps each such line intact
    return now, len(lines), json.dumps(lines, ensure_ascii=False), 1


@dataclass
class _Pending:
    """A put waiting for its group commit."""

    n: int
    rows: list[tuple[float, int, str, int]]
    also: Companion = ()
    done: bool = False
    error: OutboxError | None = None


def _insert(db: sqlite3.Connection, rows: list[tuple[float, int, str, int]], also: list[Any]) -> None:
    db.executemany("INSERT INTO outbox (created, n, body, is_json) VALUES (?, ?, ?, ?)", rows)
    for sql, args in also:
        db.executemany(sql, args)

# What a damaged page can make of a chunk: text with NULs, a count that does not match the lines
_SALVAGE_REJECTS = (
    "DELETE FROM outbox WHERE n < 1 OR instr(body, char(0)) > 0 OR (is_json = 0 AND "
    "length(body) - length(replace(body, char(10), '')) + 1 != n) OR (is_json = 1 AND NOT json_valid(body))",
)

# Debian builds SQLite with SECURE_DELETE: every sent line would be overwritten with zeros, doubling the pages
# written per acknowledgement; the lines are in InfluxDB, there is nothing to hide
_PRAGMAS = ("secure_delete=OFF",)

# One row per committed chunk rather than per line: a put is one INSERT and one fsync whatever its size,
# and the drainer reads and deletes whole chunks. `n` keeps the bound and the depth in lines.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    n INTEGER NOT NULL,
    body TEXT NOT NULL,
    is_json INTEGER NOT NULL DEFAULT 0
);
"""


class Outbox:
    """A bounded, durable FIFO of line-protocol lines.

    Thread-safe: `put` may be called from any thread (each call is one transaction, fsynced with
    ``synchronous: full``); the drainer reads with `peek` over a second connection and deletes with `ack`
    over a third (so a delete runs while the next batch is read), neither fsynced — a delete lost to a
    power cut only re-sends lines InfluxDB already has, which overwrites the same points. `clock` returns
    Unix seconds and is injected for tests.
    """

    store_name = "outbox"
    """The store's label in metrics and health."""
    consumer = "InfluxDB"
    """Who empties this outbox (for messages); a subclass with another consumer names its own."""
    full_hint = ("InfluxDB has not accepted writes for a long time; fix the database connection or raise "
                 "outbox.max_rows")

    def __init__(self, path: str | Path, settings: OutboxSettings | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.settings = settings or OutboxSettings()
        self.health = StoreHealth(self.store_name)
        self._spec = StoreSpec(self.store_name, _SCHEMA, synchronous=Synchronous(self.settings.synchronous),
                               pragmas=_PRAGMAS, salvage_rejects=_SALVAGE_REJECTS)
        self._clock = clock
        self._lock = threading.Lock()  # guards the line count and the closed flag
        self._new = threading.Condition(self._lock)
        self._put_lock = threading.Lock()  # one commit at a time; waiters' puts join the next group
        self._pending: list[_Pending] = []
        self._drain_lock = threading.Lock()  # the reading connection (peek, age)
        self._delete_lock = threading.Lock()  # the deleting one: a delete runs while the next batch is read
        self._generation = 0  # counts repairs: a failure seen before the last repair needs none
        self._peeked = 0  # the newest chunk id handed out: ids after a repair start above it
        try:
            self._db = open_store(self.path, self._spec, self.health)
            self._rows = self._connect_others()
        except (sqlite3.Error, OSError, StoreVersionError) as exc:
            raise OutboxError(f"cannot open the outbox {self.path}: {exc} "
                              "(check state_dir and its permissions)") from exc
        self._warned = False
        self._closed = False
        self._faults: dict[str, str] = {}  # a WAL checkpoint that failed (a full disk: the WAL keeps growing)
        self._update_gauges()
        self._watch_age()
        if self._rows:
            log.info("outbox %s holds %d unsent lines from before; they will be sent first", self.path,
                     self._rows)

    def _connect_others(self) -> int:
        """The drainer's two connections (not fsynced) beside the producer's; returns the lines waiting.

        Checkpoints (copying the WAL into the database, two more fsyncs) run on the drainer's connection
        after its deletes, so a producer's commit usually costs one WAL fsync only; the producer
        checkpoints itself only when the WAL grows large (InfluxDB down for a long time).
        """
        self._db.execute("PRAGMA wal_autocheckpoint=10000")
        self._drain_db = connect(self.path, self._spec, Synchronous.NORMAL)
        self._delete_db = connect(self.path, self._spec, Synchronous.NORMAL)
        return int(self._db.execute("SELECT COALESCE(SUM(n), 0) FROM outbox").fetchone()[0])

    # -- producer side -------------------------------------------------------------------------------

    def put(self, lines: Iterable[str]) -> int:
        """Commit lines durably; returns how many. Raises `OutboxFull` (nothing committed) at the bound.

        Group commit: puts that arrive while another commit is under way are committed together in the
        next transaction, so concurrent sources share one fsync instead of queueing for one each.
        """
        return self.put_with(list(lines), ())

    def put_with(self, batch: list[str], also: Companion) -> int:
        """`put`, and run the statements of `also` (rows of tables kept beside the outbox, such as the index
        of stored readings) in the same transaction: both are committed, or neither."""
        if not batch:
            return 0
        generation = self._generation
        try:
            return self._put(batch, also)
        except OutboxDamaged as exc:
            self._repair(exc, generation)
        return self._put(batch, also)  # once more, into the repaired store

    def _put(self, batch: list[str], also: Companion) -> int:
        now, size = self._clock(), self.settings.batch_size
        rows = [_row(now, batch[i:i + size]) for i in range(0, len(batch), size)]
        mine = _Pending(len(batch), rows, also)
        with self._lock:
            if self._closed:
                raise OutboxError("the outbox is closed")
            self._pending.append(mine)
        with self._put_lock:  # the first waiter to get here commits everything pending, its own included
            if not mine.done:
                self._commit_pending()
        if mine.error is not None:
            raise mine.error
        return len(batch)

    def _commit_pending(self) -> None:
        with self._lock:
            group, self._pending = self._pending, []
            room = self.settings.max_rows - self._rows
            accepted = []
            for p in group:
                if p.n <= room:
                    accepted.append(p)
                    room -= p.n
                else:
                    self._refused(p.n)
                    p.error = OutboxFull(
                        f"outbox {self.path} is full ({self._rows} of {self.settings.max_rows} lines): "
                        f"{self.full_hint}")
        try:
            if accepted:
                rows = [row for p in accepted for row in p.rows]
                also = [stmt for p in accepted for stmt in p.also]
                self._transaction(self._db, "commit to", lambda db: _insert(db, rows, also))
        except OutboxError as exc:
            for p in accepted:
                p.error = exc
            accepted = []
        finally:
            for p in group:
                p.done = True
        with self._lock:
            self._rows += sum(p.n for p in accepted)
            self._check_bound()
            self._new.notify_all()

    # -- consumer side -------------------------------------------------------------------------------

    def peek(self, limit: int, after: int = 0) -> list[Chunk]:
        """The oldest chunks (after chunk id `after`), still in the outbox: as many as fit in `limit` lines,
        and at least one."""
        generation = self._generation
        try:
            return self._peek(limit, after)
        except OutboxDamaged as exc:
            self._repair(exc, generation)
        return self._peek(limit, after)

    def _peek(self, limit: int, after: int) -> list[Chunk]:
        out: list[Chunk] = []
        total = 0
        with self._drain_lock:
            try:
                for row_id, n, body, is_json in self._drain_db.execute(
                        "SELECT id, n, body, is_json FROM outbox WHERE id > ? ORDER BY id", (after,)):
                    if out and total + n > limit:
                        break
                    out.append(Chunk(row_id, n, body, bool(is_json)))
                    total += n
            except sqlite3.Error as exc:
                raise self._error("read from", exc) from exc
            if out:
                self._peeked = max(self._peeked, out[-1].id)
        return out

    def ack(self, chunks: Sequence[Chunk]) -> None:
        """Remove chunks whose every line InfluxDB acknowledged (or refused as invalid and was dropped)."""
        if not chunks:
            return
        generation = self._generation
        try:
            self._ack(chunks)
        except OutboxDamaged as exc:  # repaired: the chunks salvaged are deleted from the fresh store
            self._repair(exc, generation)
            self._ack(chunks)

    def _ack(self, chunks: Sequence[Chunk]) -> None:
        ids = [c.id for c in chunks]
        marks = ",".join("?" * len(ids))
        with self._delete_lock:
            # counted by what is deleted: a chunk acknowledged twice (sent again after a failed deletion)
            # leaves the depth alone the second time
            removed = self._transaction(self._delete_db, "delete from", lambda db: sum(
                n for (n,) in db.execute(f"DELETE FROM outbox WHERE id IN ({marks}) RETURNING n", ids).fetchall()))
            try:  # PASSIVE never blocks a producer; retried next ack
                self._delete_db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error as exc:  # e.g. a full disk: the WAL cannot be emptied and keeps growing
                self._faults["checkpoint"] = f"cannot checkpoint the outbox {self.path}: {exc}"
            else:
                self._faults.pop("checkpoint", None)
        with self._lock:
            self._rows = max(0, self._rows - removed)
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
        """Seconds since the oldest waiting line was committed (0 when empty or closed)."""
        with self._drain_lock:
            if self._closed:
                return 0.0
            try:
                row = self._drain_db.execute("SELECT created FROM outbox ORDER BY id LIMIT 1").fetchone()
            except sqlite3.Error as exc:  # read at scrape time: the drainer's next read repairs a damaged file
                self._error("read from", exc)
                return 0.0
        return max(0.0, self._clock() - row[0]) if row else 0.0

    @property
    def depth(self) -> int:
        return self._rows

    def close(self) -> None:
        with self._put_lock, self._drain_lock, self._delete_lock, self._lock:
            if not self._closed:
                self._closed = True
                self._new.notify_all()
                self._drain_db.close()
                self._delete_db.close()
                close_store(self.path, self._db)

    def problems(self) -> list[str]:
        """What is wrong with this store now (damage repaired since start, a failing write or checkpoint),
        for health."""
        return self.health.problems() + list(self._faults.values())

    # -- internals -----------------------------------------------------------------------------------

    def _transaction(self, db: sqlite3.Connection, verb: str, work: Callable[[sqlite3.Connection], T]) -> T:
        try:
            db.execute("BEGIN IMMEDIATE")
            result = work(db)
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise self._error(verb, exc) from exc
        if self.health.succeeded():
            log.info("outbox %s: writes succeed again", self.path)
        return result

    def _error(self, verb: str, exc: sqlite3.Error) -> OutboxError:
        """Count and list a failed read or write; a damaged file gives `OutboxDamaged` (the caller repairs)."""
        text = f"cannot {verb} the outbox {self.path}: {exc}"
        self.health.failed(text)
        return OutboxDamaged(text) if is_corrupt(exc) else OutboxError(text)

    def _repair(self, exc: OutboxDamaged, generation: int) -> None:
        """Met while running: move the damaged file aside, salvage its readable chunks into a fresh one and
        go on with it. Raises `OutboxError` when even that fails (the file stays where it was)."""
        with self._put_lock, self._drain_lock, self._delete_lock:
            if self._closed:
                raise OutboxError("the outbox is closed") from exc
            if generation != self._generation:
                return  # another caller repaired it meanwhile
            before = self._rows
            for db in (self._db, self._drain_db, self._delete_db):
                with contextlib.suppress(sqlite3.Error):
                    db.close()
            try:
                fixed = repair(self.path, self._spec, str(exc).rsplit(": ", 1)[-1])
                self._db = connect(self.path, self._spec)
                # new chunks must sort after every id the drainer has seen, salvaged or lost
                self._db.execute("UPDATE sqlite_sequence SET seq = MAX(seq, ?) WHERE name = 'outbox'",
                                 (self._peeked,))
                self._db.execute("INSERT INTO sqlite_sequence (name, seq) SELECT 'outbox', ? WHERE NOT EXISTS "
                                 "(SELECT 1 FROM sqlite_sequence WHERE name = 'outbox')", (self._peeked,))
                rows = self._connect_others()
            except (sqlite3.Error, OSError) as err:
                self.health.failed(f"cannot repair the damaged outbox {self.path}: {err}")
                raise OutboxError(f"the outbox {self.path} is damaged and cannot be repaired: {err}; free "
                                  "space under state_dir and restart") from err
            self._generation += 1
            self.health.succeeded()
            self.health.damaged(f"{self.path} was found damaged while running ({fixed.reason}); moved aside to "
                                f"{fixed.moved_to.name}: {rows} of {before} waiting lines salvaged into a fresh "
                                f"outbox, {max(0, before - rows)} lost")
            with self._lock:
                self._rows = rows
                self._check_bound()
                self._new.notify_all()

    def _check_bound(self) -> None:
        self._update_gauges()
        fill = self._rows / self.settings.max_rows
        if fill >= self.settings.warn_fraction and not self._warned:
            self._warned = True
            log.warning("outbox %s is %.0f%% full (%d of %d lines): %s is not keeping up or is down; "
                        "at 100%% new readings are refused", self.path, fill * 100, self._rows,
                        self.settings.max_rows, self.consumer)
        elif fill < self.settings.warn_fraction / 2 and self._warned:
            self._warned = False
            log.info("outbox %s is draining again (%d lines)", self.path, self._rows)

    def _refused(self, n: int) -> None:
        metrics.OUTBOX_REFUSED.inc(n)

    def _update_gauges(self) -> None:
        metrics.OUTBOX_DEPTH.set(self._rows)
        metrics.OUTBOX_FILL.set(self._rows / self.settings.max_rows)

    def _watch_age(self) -> None:
        """The age gauge is read at scrape time: it must be right while nothing drains (InfluxDB down)."""
        metrics.OUTBOX_OLDEST_AGE.set_function(self.oldest_age)
