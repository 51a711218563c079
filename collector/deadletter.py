"""The dead-letter store: inputs that could not be turned into readings, kept for inspection.

Each entry has the raw bytes (up to a bound), where it came from (source, and where in it: the MQTT topic,
or ``site/meter`` for a decoded reading that was refused), the reason label, a human detail and the receive
time. Reasons are the source's (e.g. MQTT's `RejectReason`) or, for any source, a `ReadingRefusal`.
The store is bounded in bytes (`max_bytes`, what the entries hold) and in rows (`max_rows`): beyond either
the oldest entries go first (counted in `gshp_deadletters_evicted_total`). A payload is kept up to
`max_payload` bytes (its full size is recorded). Entries are committed before the source is acknowledged,
so a crash never loses one; a redelivered message may appear twice. The file is opened, checked and
repaired by `collector.sqlite`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from collector import metrics
from collector.model import Reading
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

__all__ = ["DeadLetter", "DeadLetterError", "DeadLetterStore", "NewDeadLetter", "ReadingRefusal"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deadletter (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received REAL NOT NULL,
    source TEXT NOT NULL,
    topic TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    size INTEGER NOT NULL,
    payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS deadletter_received ON deadletter (received);
"""
_SPEC = StoreSpec("deadletter", _SCHEMA, synchronous=Synchronous.NORMAL)  # acks need crash safety only

ROW_OVERHEAD = 64
"""Bytes counted per entry beside its payload, topic and detail (the other columns, the row's header)."""
_SIZE = "length(payload) + length(CAST(topic AS BLOB)) + length(CAST(detail AS BLOB)) + 64"

log = logging.getLogger(__name__)


class DeadLetterError(Exception):
    """The dead-letter store cannot be opened or written."""


class ReadingRefusal(StrEnum):
    """Why a decoded reading, from any source, was not stored."""

    CONFLICT = "conflict"  # another value is stored at the same (site, meter, device time)
    TOO_OLD = "too_old"  # older than what the index of stored readings checks (`readings.horizon`)


@dataclass(frozen=True, slots=True)
class NewDeadLetter:
    received: float  # Unix seconds
    source: str
    topic: str  # where in the source: the MQTT topic, or site/meter for a refused reading
    reason: str
    detail: str
    payload: bytes
    size: int | None = None  # of the original payload, when `payload` is only its first bytes

    @classmethod
    def of_reading(cls, r: Reading, received: float, source: str, reason: ReadingRefusal,
                   detail: str) -> NewDeadLetter:
        """A refused reading, kept as JSON with its device time and values."""
        body = {"site": r.site, "meter": r.meter, "role": r.role.value, "ts": r.ts.isoformat(),
                "rate_m3h": r.rate_m3h, "total_m3": r.total_m3, "signal_pct": r.signal_pct,
                "error_code": r.error_code}
        return cls(received, source, f"{r.site}/{r.meter}", reason.value, detail,
                   json.dumps(body, ensure_ascii=False).encode())


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    received: datetime
    source: str
    topic: str
    reason: str
    detail: str
    size: int  # of the original payload; `payload` may be cut to the store's bound
    payload: bytes

    @property
    def truncated(self) -> bool:
        return len(self.payload) < self.size


class DeadLetterStore:
    """Thread-safe; one transaction per `put`."""

    def __init__(self, path: str | Path, max_rows: int = 100_000, max_payload: int = 64 * 1024,
                 max_bytes: int = 256 * 1024 * 1024, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.max_rows = max_rows
        self.max_payload = max_payload
        self.max_bytes = max_bytes
        self.health = StoreHealth(_SPEC.name)
        self._clock = clock
        self._lock = threading.Lock()
        try:
            self._db = open_store(self.path, _SPEC, self.health)
            self._rows, self._bytes = self._count()
        except (sqlite3.Error, OSError, StoreVersionError) as exc:
            raise DeadLetterError(f"cannot open the dead-letter store {self.path}: {exc}") from exc

    def _count(self) -> tuple[int, int]:
        rows, size = self._db.execute(f"SELECT COUNT(*), COALESCE(SUM({_SIZE}), 0) FROM deadletter").fetchone()
        return int(rows), int(size)

    @property
    def stored_bytes(self) -> int:
        """What the entries hold (payload, topic, detail and `ROW_OVERHEAD` each): what `max_bytes` bounds."""
        return self._bytes

    def problems(self) -> list[str]:
        """What is wrong with this store now, for the health check."""
        return self.health.problems()

    def put(self, letters: Sequence[NewDeadLetter]) -> None:
        """Commit entries, evicting the oldest beyond the bounds. A damaged file is repaired (moved aside, its
        readable entries salvaged) and the write retried once."""
        if not letters:
            return
        rows = [(d.received, d.source, d.topic[:1024], d.reason, d.detail[:2000],
                 len(d.payload) if d.size is None else d.size, d.payload[:self.max_payload]) for d in letters]
        with self._lock:
            try:
                evicted = self._put(rows)
            except sqlite3.Error as exc:
                if not is_corrupt(exc):
                    self.health.failed(f"cannot write to the dead-letter store {self.path}: {exc}")
                    raise DeadLetterError(f"cannot write to the dead-letter store {self.path}: {exc}") from exc
                self._repair(exc)
                try:
                    evicted = self._put(rows)
                except sqlite3.Error as again:
                    raise DeadLetterError(f"cannot write to the dead-letter store {self.path}: {again}") \
                        from again
            self.health.succeeded()
        for d in letters:
            metrics.DEADLETTERS.labels(d.source).inc()
        if evicted:
            metrics.DEADLETTERS_EVICTED.inc(evicted)

    def _put(self, rows: list[tuple[float, str, str, str, str, int, bytes]]) -> int:
        """Evict, then insert, in one transaction (the pages freed first take the new entries, so the file
        stays near `max_bytes`); returns how many entries were evicted."""
        added = sum(len(r[2].encode()) + len(r[4].encode()) + len(r[6]) + ROW_OVERHEAD for r in rows)
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            evicted, freed = self._evict(self._rows + len(rows) - self.max_rows,
                                         self._bytes + added - self.max_bytes)
            db.executemany("INSERT INTO deadletter (received, source, topic, reason, detail, size, payload) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            # a batch larger than the bound on its own: its oldest entries go too
            more, more_freed = self._evict(self._rows - evicted + len(rows) - self.max_rows,
                                           self._bytes - freed + added - self.max_bytes)
            db.execute("COMMIT")
        except sqlite3.Error:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        self._rows += len(rows) - evicted - more
        self._bytes += added - freed - more_freed
        return evicted + more

    def _evict(self, rows: int, size: int) -> tuple[int, int]:
        """Delete the oldest entries until `rows` entries and `size` bytes are gone; returns (entries, bytes)."""
        if rows <= 0 and size <= 0:
            return 0, 0
        evicted = freed = 0
        last = None
        for row_id, entry in self._db.execute(f"SELECT id, {_SIZE} FROM deadletter ORDER BY id"):
            if evicted >= rows and freed >= size:
                break
            last, evicted, freed = row_id, evicted + 1, freed + int(entry)
        if last is not None:
            self._db.execute("DELETE FROM deadletter WHERE id <= ?", (last,))
        return evicted, freed

    def _repair(self, exc: sqlite3.Error) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.close()
        try:
            fixed = repair(self.path, _SPEC, str(exc), expected_rows=self._rows)
            self._db = connect(self.path, _SPEC)
            self._rows, self._bytes = self._count()
        except (sqlite3.Error, OSError) as err:
            self.health.failed(f"cannot repair the damaged dead-letter store {self.path}: {err}")
            raise DeadLetterError(f"the dead-letter store {self.path} is damaged and cannot be repaired: {err}; "
                                  "free space under state_dir and restart") from err
        self.health.damaged(fixed.describe(_SPEC, self.path))

    def list(self, limit: int = 50, reason: str | None = None, topic: str | None = None,
             newest_first: bool = True) -> list[DeadLetter]:
        where, args = [], []
        if reason:
            where.append("reason = ?")
            args.append(reason)
        if topic:
            where.append("topic = ?")
            args.append(topic)
        sql = ("SELECT id, received, source, topic, reason, detail, size, payload FROM deadletter"
               + (" WHERE " + " AND ".join(where) if where else "")
               + f" ORDER BY id {'DESC' if newest_first else 'ASC'} LIMIT ?")
        with self._lock:
            rows = self._db.execute(sql, (*args, limit)).fetchall()
        return [DeadLetter(r[0], datetime.fromtimestamp(r[1], UTC), r[2], r[3], r[4], r[5], r[6], bytes(r[7]))
                for r in rows]

    def counts(self) -> dict[str, int]:
        """Entries per reason."""
        with self._lock:
            rows = self._db.execute("SELECT reason, COUNT(*) FROM deadletter GROUP BY reason ORDER BY 2 DESC")
            return {r[0]: int(r[1]) for r in rows}

    def __len__(self) -> int:
        return self._rows

    def purge(self, before: datetime | None = None) -> int:
        """Delete entries received before `before` (all when None); returns how many."""
        with self._lock:
            if before is None:
                cur = self._db.execute("DELETE FROM deadletter")
            else:
                cur = self._db.execute("DELETE FROM deadletter WHERE received < ?", (before.timestamp(),))
            n = max(0, cur.rowcount)
            self._rows, self._bytes = self._count()
        return n

    def close(self) -> None:
        with self._lock:
            close_store(self.path, self._db)
