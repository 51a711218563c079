"""The alert store (SQLite, `<state_dir>/alerts.sqlite`): every alert, its transitions, acknowledgement
and annotations, and the maintenance windows declared through the API. The engine restores its open alerts
from here at start, so a restart neither re-notifies nor forgets; the service declares the stored
maintenance windows to it again.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from rules.events import AlertEvent
from rules.settings import MaintenanceWindow

__all__ = ["AlertStore", "Annotation", "DeclaredMaintenance", "StoreError", "StoredAlert"]


class StoreError(Exception):
    """The alert store cannot be opened or written."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    rule TEXT NOT NULL,
    kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    state TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    starts_ts REAL NOT NULL,
    ends_at TEXT,
    updated_at TEXT NOT NULL,
    clear_since REAL,
    summary TEXT NOT NULL,
    event TEXT NOT NULL,
    acked_by TEXT,
    acked_at TEXT
);
CREATE INDEX IF NOT EXISTS alerts_open ON alerts(state);
CREATE INDEX IF NOT EXISTS alerts_site ON alerts(site, starts_ts);
CREATE TABLE IF NOT EXISTS transitions (
    alert_id TEXT NOT NULL REFERENCES alerts(id),
    state TEXT NOT NULL,
    at TEXT NOT NULL,
    event TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outcomes (
    alert_id TEXT PRIMARY KEY REFERENCES alerts(id),
    at TEXT NOT NULL,
    author TEXT NOT NULL,
    outcome TEXT NOT NULL,
    text TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS annotations (
    alert_id TEXT NOT NULL REFERENCES alerts(id),
    at TEXT NOT NULL,
    author TEXT NOT NULL,
    text TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS maintenance (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    site TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    starts_ts REAL NOT NULL,
    ends_at TEXT NOT NULL,
    reason TEXT NOT NULL,
    volume_cap_m3 REAL NOT NULL,
    declared_by TEXT NOT NULL,
    declared_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS maintenance_site ON maintenance(site, starts_ts);
"""


@dataclass(frozen=True, slots=True)
class Annotation:
    at: str
    author: str
    text: str


@dataclass(frozen=True, slots=True)
class StoredAlert:
    id: str
    site: str
    rule: str
    kind: str
    severity: str
    state: str
    starts_at: str
    starts_ts: float
    ends_at: str | None
    clear_since: float | None
    summary: str
    event: dict[str, Any]
    acked_by: str | None
    acked_at: str | None


@dataclass(frozen=True, slots=True)
class DeclaredMaintenance:
    """A maintenance window declared at run time (not in the config): by whom and when."""

    id: int
    site: str
    window: MaintenanceWindow
    declared_by: str
    declared_at: str


class AlertStore:
    """Thread-safe; `path=":memory:"` keeps everything in memory (replay, tests)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._lock = threading.RLock()
        self._fault: str | None = None
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the alert store {self.path}: {exc}; check that state_dir exists "
                             "and is writable by this user") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def problems(self) -> list[str]:
        """The last write's failure while no write has succeeded since (health reports it)."""
        fault = self._fault
        return [fault] if fault is not None else []

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """One write transaction on the alert database, shared by the stores kept in it (cases, the audit
        chain, silences): writes made inside it by any of them commit or roll back together."""
        return self._tx()

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """The connection, for reads by the stores kept in this database."""
        with self._lock:
            yield self._db

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._db.in_transaction:  # nested in `transaction()` on this thread: the outer one commits
                yield self._db
                return
            try:
                # IMMEDIATE: another process (`gshp notify silence`) cannot append to the chain between our read
                # of its head and our write
                self._db.execute("BEGIN IMMEDIATE")
                yield self._db
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                with suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                self._fault = f"alert store {self.path}: {exc}; check free disk space and permissions"
                raise StoreError(self._fault) from None
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._fault = None

    def record(self, event: AlertEvent, starts_ts: float, clear_since: float | None = None) -> None:
        """Store one transition and the alert's current state."""
        body = event.to_json()
        with self._tx() as db:
            db.execute(
                """INSERT INTO alerts (id, site, rule, kind, severity, state, starts_at, starts_ts, ends_at,
                                       updated_at, clear_since, summary, event)
                   VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)
                   ON CONFLICT(id) DO UPDATE SET state=excluded.state, ends_at=excluded.ends_at,
                     updated_at=excluded.updated_at, clear_since=excluded.clear_since,
                     summary=excluded.summary, event=excluded.event, severity=excluded.severity""",
                (event.id, event.site, event.rule, event.kind.value, event.severity.value, event.state,
                 event.to_dict()["starts_at"], starts_ts, event.to_dict()["ends_at"],
                 event.to_dict()["at"], clear_since, event.summary, body))
            db.execute("INSERT INTO transitions (alert_id, state, at, event) VALUES (?,?,?,?)",
                       (event.id, event.state, event.to_dict()["at"], body))

    def set_clear_since(self, alert_id: str, clear_since: float | None) -> None:
        with self._tx() as db:
            db.execute("UPDATE alerts SET clear_since=? WHERE id=?", (clear_since, alert_id))

    def acknowledge(self, alert_id: str, by: str, at: str, note: str | None = None) -> None:
        """Mark an alert acknowledged (not its state); a note becomes an annotation. The first acknowledgement
        stays: a later one only adds its note."""
        with self._tx() as db:
            cur = db.execute("UPDATE alerts SET acked_by=COALESCE(acked_by, ?), acked_at=COALESCE(acked_at, ?) "
                             "WHERE id=?", (by, at, alert_id))
            if cur.rowcount == 0:
                raise StoreError(f"no alert with id {alert_id!r}: list alerts to find its id")
            if note:
                db.execute("INSERT INTO annotations (alert_id, at, author, text) VALUES (?,?,?,?)",
                           (alert_id, at, by, note))

    def annotate(self, alert_id: str, author: str, at: str, text: str) -> None:
        with self._tx() as db:
            if db.execute("SELECT 1 FROM alerts WHERE id=?", (alert_id,)).fetchone() is None:
                raise StoreError(f"no alert with id {alert_id!r}: list alerts to find its id")
            db.execute("INSERT INTO annotations (alert_id, at, author, text) VALUES (?,?,?,?)",
                       (alert_id, at, author, text))

    def close_case(self, alert_id: str, author: str, at: str, outcome: str, text: str = "") -> None:
        """Record how enforcement closed the case (e.g. the on-site check found discharge). Closing is case
        management: it does not change the alert's state, which follows the data."""
        with self._tx() as db:
            if db.execute("SELECT 1 FROM alerts WHERE id=?", (alert_id,)).fetchone() is None:
                raise StoreError(f"no alert with id {alert_id!r}: list alerts to find its id")
            db.execute("INSERT INTO outcomes (alert_id, at, author, outcome, text) VALUES (?,?,?,?,?) "
                       "ON CONFLICT(alert_id) DO UPDATE SET at=excluded.at, author=excluded.author, "
                       "outcome=excluded.outcome, text=excluded.text", (alert_id, at, author, outcome, text))

    def outcome(self, alert_id: str) -> dict[str, str] | None:
        with self._lock:
            row = self._db.execute("SELECT at, author, outcome, text FROM outcomes WHERE alert_id=?",
                                   (alert_id,)).fetchone()
        return None if row is None else {"at": row[0], "by": row[1], "outcome": row[2], "text": row[3]}

    def annotations(self, alert_id: str) -> list[Annotation]:
        with self._lock:
            rows = self._db.execute(
                "SELECT at, author, text FROM annotations WHERE alert_id=? ORDER BY rowid",
                (alert_id,)).fetchall()
        return [Annotation(*r) for r in rows]

    def _alerts(self, where: str, args: tuple[Any, ...]) -> list[StoredAlert]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, site, rule, kind, severity, state, starts_at, starts_ts, ends_at, clear_since, "
                f"summary, event, acked_by, acked_at FROM alerts WHERE {where} ORDER BY starts_ts, id",
                args).fetchall()
        return [StoredAlert(id=r[0], site=r[1], rule=r[2], kind=r[3], severity=r[4], state=r[5],
                            starts_at=r[6], starts_ts=r[7], ends_at=r[8], clear_since=r[9], summary=r[10],
                            event=json.loads(r[11]), acked_by=r[12], acked_at=r[13]) for r in rows]

    def open_alerts(self) -> list[StoredAlert]:
        """Alerts pending or firing: what the engine restores at start."""
        return self._alerts("state IN ('pending', 'firing')", ())

    def get(self, alert_id: str) -> StoredAlert | None:
        found = self._alerts("id=?", (alert_id,))
        return found[0] if found else None

    def history(self, site: str | None = None) -> list[StoredAlert]:
        if site is None:
            return self._alerts("1=1", ())
        return self._alerts("site=?", (site,))

    def transitions(self, alert_id: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT event FROM transitions WHERE alert_id=? ORDER BY rowid",
                                    (alert_id,)).fetchall()
        return [json.loads(r[0]) for r in rows]

    def declare_maintenance(self, site: str, window: MaintenanceWindow, by: str, at: str) -> DeclaredMaintenance:
        """Keep a declared maintenance window. Declarations are never withdrawn: a cover for discharge must stay
        visible in the site's history and reports."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO maintenance (site, starts_at, starts_ts, ends_at, reason, volume_cap_m3, declared_by, "
                "declared_at) VALUES (?,?,?,?,?,?,?,?)",
                (site, window.start.isoformat(), window.start.timestamp(), window.end.isoformat(), window.reason,
                 window.volume_cap_m3, by, at))
            row_id = cur.lastrowid
        assert row_id is not None
        return DeclaredMaintenance(row_id, site, window, by, at)

    def maintenance(self, site: str | None = None) -> list[DeclaredMaintenance]:
        """Declared maintenance windows (of one site, or all), in order of start."""
        where, args = ("site=?", (site,)) if site is not None else ("1=1", ())
        with self._lock:
            rows = self._db.execute(
                "SELECT id, site, starts_at, ends_at, reason, volume_cap_m3, declared_by, declared_at "
                f"FROM maintenance WHERE {where} ORDER BY starts_ts, id", args).fetchall()
        return [DeclaredMaintenance(r[0], r[1], MaintenanceWindow.model_validate(
                    {"from": datetime.fromisoformat(r[2]), "to": datetime.fromisoformat(r[3]), "reason": r[4],
                     "volume_cap_m3": r[5]}), r[6], r[7]) for r in rows]
