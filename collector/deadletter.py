"""The dead-letter store: inputs that could not be turned into readings, kept for inspection.

Each entry has the raw bytes (up to a bound), where it came from (source, and where in it: the MQTT topic,
or ``site/meter`` for a decoded reading that was refused), the reason label, a human detail and the receive
time. Reasons are the source's (e.g. MQTT's `RejectReason`) or, for any source, a `ReadingRefusal`.
The store is bounded by rows: beyond `max_rows` the oldest entries
go first (counted in `gshp_deadletters_evicted_total`). Entries are committed before the source is
acknowledged, so a crash never loses one; a redelivered message may appear twice.
"""

from __future__ import annotations

import contextlib
import json
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
                 clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.max_rows = max_rows
        self.max_payload = max_payload
        self._clock = clock
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # survives a process crash, which is what acks need
            self._db.executescript(_SCHEMA)
            self._rows = int(self._db.execute("SELECT COUNT(*) FROM deadletter").fetchone()[0])
        except (sqlite3.Error, OSError) as exc:
            raise DeadLetterError(f"cannot open the dead-letter store {self.path}: {exc}") from exc

    def put(self, letters: Sequence[NewDeadLetter]) -> None:
        if not letters:
            return
        rows = [(d.received, d.source, d.topic[:1024], d.reason, d.detail[:2000], len(d.payload),
                 d.payload[:self.max_payload]) for d in letters]
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany("INSERT INTO deadletter (received, source, topic, reason, detail, size, "
                                     "payload) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
                evicted = 0
                if self._rows + len(rows) > self.max_rows:
                    cur = self._db.execute(
                        "DELETE FROM deadletter WHERE id <= (SELECT MAX(id) FROM deadletter) - ?",
                        (self.max_rows,))
                    evicted = max(0, cur.rowcount)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise DeadLetterError(f"cannot write to the dead-letter store {self.path}: {exc}") from exc
            self._rows += len(rows) - evicted
        for d in letters:
            metrics.DEADLETTERS.labels(d.source).inc()
        if evicted:
            metrics.DEADLETTERS_EVICTED.inc(evicted)

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
            self._rows = int(self._db.execute("SELECT COUNT(*) FROM deadletter").fetchone()[0])
        return n

    def close(self) -> None:
        with self._lock:
            self._db.close()
