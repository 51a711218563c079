"""The durable notification queue in SQLite (``<state_dir>/notify.sqlite``, WAL, fsynced commits).

Tables:

- ``items``: one row per (incident notice key, receiver) — the idempotency key. A notice submitted twice
  (a rule engine replaying after a restart) finds its row and is ignored. (Columns ``alert_id`` and
  ``state`` hold the incident id and the change.)
- ``groups``: per (receiver, group) the grouping clock: first unsent item, last notification, repeats.
- ``messages``: notifications ready to send, per receiver in FIFO order, with attempts, next try,
  last error and status ``queued`` → ``sent`` | ``failed`` (retrying) | ``dead`` (retry budget spent).
  A message is inserted in the same transaction that marks its items notified, so a crash can neither
  lose nor duplicate one; it leaves ``queued`` only after the receiver acknowledged it.
- ``silences``: where earlier versions kept silences; they now live in the alert database (with the audit
  chain) and are moved there once at start.

The only window for a second delivery is a crash between a receiver's acknowledgement and the commit
that records it; receivers get the idempotency key (webhook header, e-mail Message-ID) to drop it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from alerting.model import IncidentNotice
from collector.sqlite import StoreHealth, StoreSpec, StoreVersionError, close_store, open_store
from rules.notify.errors import NotifyError
from rules.notify.grouping import Item, ItemStatus
from rules.notify.silences import Matcher, Silence

__all__ = ["Message", "MessageStatus", "NotifyQueue", "QueueFull", "ReceiverCounts"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    key TEXT PRIMARY KEY,
    receiver TEXT NOT NULL,
    group_key TEXT NOT NULL,
    alert_id TEXT NOT NULL,
    state TEXT NOT NULL,
    event TEXT NOT NULL,
    received REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    message TEXT
);
CREATE INDEX IF NOT EXISTS items_group ON items (receiver, group_key, status);
CREATE INDEX IF NOT EXISTS items_status ON items (status);
CREATE TABLE IF NOT EXISTS groups (
    receiver TEXT NOT NULL,
    group_key TEXT NOT NULL,
    first_pending REAL,
    last_flush REAL,
    repeats INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (receiver, group_key)
);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    receiver TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'queued',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    created REAL NOT NULL,
    sent REAL,
    error TEXT
);
CREATE INDEX IF NOT EXISTS messages_due ON messages (receiver, status, seq);
CREATE INDEX IF NOT EXISTS messages_status ON messages (status);
CREATE TABLE IF NOT EXISTS silences (
    id TEXT PRIMARY KEY,
    matchers TEXT NOT NULL,
    starts REAL NOT NULL,
    ends REAL NOT NULL,
    author TEXT NOT NULL,
    comment TEXT NOT NULL,
    created REAL NOT NULL
);
"""
_SPEC = StoreSpec("notify", _SCHEMA, busy_timeout=10.0)  # `gshp notify` commands share the file


class QueueFull(NotifyError):
    """The queue holds `max_queued` unsent notifications or `max_bytes` of them; new events are refused
    (loudly)."""


class MessageStatus(StrEnum):
    QUEUED = "queued"
    FAILED = "failed"
    DEAD = "dead"
    SENT = "sent"


@dataclass(frozen=True)
class Message:
    """A notification for one receiver: one notice (webhook, MQTT) or a group's digest (robots, e-mail)."""

    seq: int
    key: str  # the idempotency key
    receiver: str
    events: tuple[IncidentNotice, ...]
    item_keys: tuple[str, ...]
    repeat: int  # 0, or the n-th reminder of still-open incidents
    site_state: dict[str, Any] | None  # for MQTT: the site's open incidents after this message
    status: MessageStatus
    attempts: int
    next_at: float
    created: float
    error: str | None


@dataclass(frozen=True)
class ReceiverCounts:
    receiver: str
    queued: int = 0
    failed: int = 0
    dead: int = 0
    sent: int = 0
    pending: int = 0  # items waiting for their group's notification
    silenced: int = 0
    oldest_unsent: float | None = None  # `created` of the oldest queued/failed message
    last_error: str | None = None


def _item(row: sqlite3.Row) -> Item:
    return Item(row["key"], row["receiver"], row["group_key"], IncidentNotice.from_dict(json.loads(row["event"])),
                row["received"], ItemStatus(row["status"]))


def _message(row: sqlite3.Row) -> Message:
    body = json.loads(row["body"])
    return Message(row["seq"], row["key"], row["receiver"],
                   tuple(IncidentNotice.from_dict(e) for e in body["events"]), tuple(body["items"]),
                   int(body.get("repeat", 0)), body.get("site_state"), MessageStatus(row["status"]),
                   row["attempts"], row["next_at"], row["created"], row["error"])


class NotifyQueue:
    """Thread-safe access to notify.sqlite. `clock` returns Unix seconds (injected in tests)."""

    def __init__(self, path: str | os.PathLike[str], clock: Callable[[], float] = time.time,
                 max_queued: int = 100_000, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.path = Path(path)
        self.clock = clock
        self.max_queued = max_queued
        self.max_bytes = max_bytes
        self.health = StoreHealth(_SPEC.name)
        self._lock = threading.RLock()
        try:
            self._db = open_store(self.path, _SPEC, self.health)  # checked, repaired, migrated, 0600
            self._db.row_factory = sqlite3.Row
        except (sqlite3.Error, OSError, StoreVersionError) as exc:
            raise NotifyError(f"cannot open the notification queue {self.path}: {exc} "
                              "(check state_dir and its permissions)") from exc

    def close(self) -> None:
        with self._lock:
            close_store(self.path, self._db)

    def problems(self) -> list[str]:
        """What is wrong with this store now (damage found at open, a failing write), for the health check."""
        return self.health.problems()


    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:  # a failed COMMIT (disk full) may have rolled back already
                        with contextlib.suppress(sqlite3.Error):
                            self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                self.health.failed(f"notification queue {self.path}: {exc}")
                raise
            self.health.succeeded()

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return list(self._db.execute(sql, args).fetchall())

    # -- recording events ----------------------------------------------------------------------------

    def unsent(self) -> int:
        row = self._query("SELECT (SELECT COUNT(*) FROM items WHERE status='pending') + "
                          "(SELECT COUNT(*) FROM messages WHERE status IN ('queued','failed'))")
        return int(row[0][0])

    def unsent_bytes(self) -> int:
        """Bytes of the events and notifications waiting to be sent: what `max_bytes` bounds."""
        row = self._query("SELECT (SELECT COALESCE(SUM(length(CAST(event AS BLOB))), 0) FROM items WHERE "
                          "status='pending') + (SELECT COALESCE(SUM(length(CAST(body AS BLOB))), 0) FROM messages "
                          "WHERE status IN ('queued','failed'))")
        return int(row[0][0])

    def record(self, event: IncidentNotice, targets: Sequence[tuple[str, str]]) -> list[str]:
        """Record the notice for each (receiver, group key) in one transaction; returns receivers it was new to."""
        if not targets:
            return []
        now = self.clock()
        body = event.to_json()
        new: list[str] = []
        with self._tx() as db:
            if self.max_queued and self.unsent() >= self.max_queued:
                raise QueueFull(f"{self.max_queued} notifications wait unsent in {self.path}: "
                                "a receiver is down for long; see `gshp notify status`")
            if self.max_bytes and self.unsent_bytes() + len(body.encode()) * len(targets) > self.max_bytes:
                raise QueueFull(f"{self.max_bytes} bytes of notifications wait unsent in {self.path}: "
                                "a receiver is down for long; see `gshp notify status`")
            for receiver, group in targets:
                cur = db.execute("INSERT OR IGNORE INTO items (key, receiver, group_key, alert_id, state, event, "
                                 "received) VALUES (?,?,?,?,?,?,?)",
                                 (f"{event.key}:{receiver}", receiver, group, event.id, event.change.value,
                                  body, now))
                if cur.rowcount:
                    new.append(receiver)
                    db.execute("INSERT INTO groups (receiver, group_key, first_pending) VALUES (?,?,?) "
                               "ON CONFLICT (receiver, group_key) DO UPDATE SET "
                               "first_pending = COALESCE(first_pending, excluded.first_pending)",
                               (receiver, group, now))
        return new

    # -- grouping ------------------------------------------------------------------------------------

    def groups(self) -> list[sqlite3.Row]:
        return self._query("SELECT receiver, group_key, first_pending, last_flush, repeats FROM groups")

    def group_items(self, receiver: str, group: str) -> list[Item]:
        return [_item(r) for r in self._query(
            "SELECT * FROM items WHERE receiver=? AND group_key=? ORDER BY received, key", (receiver, group))]

    def site_items(self, receiver: str, site: str) -> list[Item]:
        return [i for i in (_item(r) for r in self._query(
            "SELECT * FROM items WHERE receiver=? AND status != 'pending'", (receiver,)))
            if i.event.site == site]

    def flush(self, receiver: str, group: str, statuses: dict[str, ItemStatus],
              messages: Sequence[tuple[str, dict[str, Any]]], repeat: bool) -> int:
        """Commit a group's notification: new item statuses, the messages, the group's clock. Atomic."""
        now = self.clock()
        added = 0
        with self._tx() as db:
            for key, body in messages:
                cur = db.execute("INSERT OR IGNORE INTO messages (key, receiver, body, next_at, created) "
                                 "VALUES (?,?,?,?,?)",
                                 (key, receiver, json.dumps(body, ensure_ascii=False), now, now))
                added += cur.rowcount
                for item_key in body["items"]:
                    db.execute("UPDATE items SET message=? WHERE key=? AND message IS NULL", (key, item_key))
            for key, status in statuses.items():
                db.execute("UPDATE items SET status=? WHERE key=? AND status='pending'", (status.value, key))
            if repeat:
                db.execute("UPDATE groups SET last_flush=?, repeats=repeats+1 WHERE receiver=? AND group_key=?",
                           (now, receiver, group))
            else:
                # an item recorded while this flush was planned stays pending, with its own clock
                flushed = now if messages else None
                db.execute("UPDATE groups SET first_pending=(SELECT MIN(received) FROM items WHERE receiver=? "
                           "AND group_key=? AND status='pending'), last_flush=COALESCE(?, last_flush), repeats=0 "
                           "WHERE receiver=? AND group_key=?", (receiver, group, flushed, receiver, group))
        return added

    # -- delivery ------------------------------------------------------------------------------------

    def head(self, receiver: str) -> Message | None:
        """The oldest unsent (queued or failed) message of a receiver: delivery is FIFO per receiver."""
        rows = self._query("SELECT * FROM messages WHERE receiver=? AND status IN ('queued','failed') "
                           "ORDER BY seq LIMIT 1", (receiver,))
        return _message(rows[0]) if rows else None

    def mark_sent(self, key: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE messages SET status='sent', sent=?, attempts=attempts+1, error=NULL WHERE key=?",
                       (self.clock(), key))

    def mark_failed(self, key: str, error: str, next_at: float) -> None:
        with self._tx() as db:
            db.execute("UPDATE messages SET status='failed', attempts=attempts+1, next_at=?, error=? WHERE key=?",
                       (next_at, error[:1000], key))

    def mark_dead(self, key: str, error: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE messages SET status='dead', attempts=attempts+1, error=? WHERE key=?",
                       (error[:1000], key))

    def requeue_dead(self, receiver: str | None = None) -> int:
        """Give dead letters a fresh retry budget (after fixing a receiver's configuration)."""
        with self._tx() as db:
            cur = db.execute("UPDATE messages SET status='queued', attempts=0, next_at=? WHERE status='dead' "
                             "AND (? IS NULL OR receiver=?)", (self.clock(), receiver, receiver))
            return int(cur.rowcount)

    # -- status --------------------------------------------------------------------------------------

    def counts(self) -> dict[str, ReceiverCounts]:
        out: dict[str, dict[str, Any]] = {}
        for r in self._query("SELECT receiver, status, COUNT(*) n, MIN(CASE WHEN status IN ('queued','failed') "
                             "THEN created END) oldest FROM messages GROUP BY receiver, status"):
            d = out.setdefault(r["receiver"], {})
            d[r["status"]] = r["n"]
            if r["oldest"] is not None:
                d["oldest_unsent"] = min(d.get("oldest_unsent", r["oldest"]), r["oldest"])
        for r in self._query("SELECT receiver, status, COUNT(*) n FROM items WHERE status IN ('pending','silenced') "
                             "GROUP BY receiver, status"):
            out.setdefault(r["receiver"], {})[r["status"]] = r["n"]
        for r in self._query("SELECT receiver, error FROM messages m WHERE error IS NOT NULL AND seq = "
                             "(SELECT MAX(seq) FROM messages WHERE receiver=m.receiver AND error IS NOT NULL)"):
            out.setdefault(r["receiver"], {})["last_error"] = r["error"]
        return {k: ReceiverCounts(k, **v) for k, v in out.items()}

    def messages(self, statuses: Sequence[MessageStatus], receiver: str | None = None,
                 limit: int = 100) -> list[Message]:
        marks = ",".join("?" * len(statuses))
        rows = self._query(f"SELECT * FROM messages WHERE status IN ({marks}) AND (? IS NULL OR receiver=?) "
                           "ORDER BY seq LIMIT ?", (*[s.value for s in statuses], receiver, receiver, limit))
        return [_message(r) for r in rows]

    def prune(self, keep_seconds: float = 90 * 86400) -> None:
        """Forget sent messages and settled items older than `keep_seconds`."""
        cutoff = self.clock() - keep_seconds
        with self._tx() as db:
            db.execute("DELETE FROM messages WHERE status='sent' AND sent < ?", (cutoff,))
            db.execute("DELETE FROM items WHERE status != 'pending' AND received < ?", (cutoff,))
            db.execute("DELETE FROM silences WHERE ends < ?", (cutoff,))

    # -- silences kept here by earlier versions -------------------------------------------------------

    def legacy_silences(self) -> list[Silence]:
        """Silences this queue held before they moved to the alert database; the service moves them once."""
        rows = self._query("SELECT * FROM silences ORDER BY starts, id")
        return [Silence(r["id"], tuple(Matcher.parse(m) for m in json.loads(r["matchers"])), r["starts"], r["ends"],
                        r["author"], r["comment"], r["created"]) for r in rows]

    def forget_legacy_silences(self, ids: Sequence[str]) -> None:
        """Drop silences once they are stored in the alert database."""
        with self._tx() as db:
            db.executemany("DELETE FROM silences WHERE id=?", [(i,) for i in ids])
