"""The alert store (SQLite, `<state_dir>/alerts.sqlite`): every alert, its transitions, acknowledgement
and annotations, the incidents built from the alerts (with their alert links and changes), and the
maintenance windows declared through the API. The engine restores its open alerts and incidents from here
at start, so a restart neither re-notifies nor forgets; the service declares the stored maintenance
windows to it again.

The engine writes one evaluation's alert and incident transitions in one transaction (`record_evaluation`)
before its in-memory state moves: a failed write (disk full) raises `StoreError` and changes nothing.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from alerting.model import Alert, Incident, IncidentChange, IncidentKind, IncidentNotice, IncidentState
from collector.sqlite import StoreHealth, StoreSpec, StoreVersionError, close_store, open_store
from rules.compliance import YearLedger
from rules.settings import MaintenanceWindow

__all__ = ["Acknowledgement", "AlertStore", "Annotation", "DeclaredMaintenance", "Evaluation", "StoreError"]


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
CREATE TABLE IF NOT EXISTS incidents (
    id TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    district TEXT NOT NULL,
    kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    state TEXT NOT NULL,
    started_ts REAL NOT NULL,
    ended_ts REAL,
    updated_at TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS incidents_site ON incidents(site, started_ts);
CREATE INDEX IF NOT EXISTS incidents_state ON incidents(state);
CREATE TABLE IF NOT EXISTS incident_alerts (
    incident_id TEXT NOT NULL REFERENCES incidents(id),
    alert_id TEXT NOT NULL,
    PRIMARY KEY (incident_id, alert_id)
);
CREATE INDEX IF NOT EXISTS incident_alerts_alert ON incident_alerts(alert_id);
CREATE TABLE IF NOT EXISTS incident_changes (
    incident_id TEXT NOT NULL REFERENCES incidents(id),
    change TEXT NOT NULL,
    at TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS incident_changes_id ON incident_changes(incident_id);
CREATE TABLE IF NOT EXISTS year_ledger (
    site TEXT NOT NULL,
    year INTEGER NOT NULL,
    extracted_m3 REAL NOT NULL,
    since REAL,
    through REAL,
    unknown_s REAL NOT NULL,
    peak_rate_m3h REAL NOT NULL,
    peak_at REAL,
    PRIMARY KEY (site, year)
);
"""
_YEAR_LEDGER = """CREATE TABLE IF NOT EXISTS year_ledger (
    site TEXT NOT NULL, year INTEGER NOT NULL, extracted_m3 REAL NOT NULL, since REAL, through REAL,
    unknown_s REAL NOT NULL, peak_rate_m3h REAL NOT NULL, peak_at REAL, PRIMARY KEY (site, year)
);"""
_SPEC = StoreSpec("alerts", _SCHEMA, migrations=(_YEAR_LEDGER,))
"""Version 2 adds the year ledger (each site's extraction per calendar year, for the permit's quota)."""


@dataclass(frozen=True, slots=True)
class Annotation:
    at: str
    author: str
    text: str


@dataclass(frozen=True, slots=True)
class Evaluation:
    """What one evaluation changed, written in one transaction: alert transitions (each with the lifecycle's
    `clear_since`), `clear_since` moves of alerts without a transition, and incidents with their changes."""

    alerts: Sequence[tuple[Alert, float | None]] = ()
    clear_since: Sequence[tuple[str, float | None]] = ()
    incidents: Sequence[tuple[Incident, Sequence[IncidentChange]]] = ()
    ledgers: Sequence[YearLedger] = ()  # year ledgers that moved

    def __bool__(self) -> bool:
        return bool(self.alerts or self.clear_since or self.incidents or self.ledgers)


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    by: str
    at: str


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
        self.health = StoreHealth(_SPEC.name)  # damage found at open, a failing write: for the health check
        self._lock = threading.RLock()
        try:
            self._db = open_store(self.path, _SPEC, self.health)  # checked, repaired, migrated, 0600
        except (OSError, sqlite3.Error, StoreVersionError) as exc:
            raise StoreError(f"cannot open the alert store {self.path}: {exc}; check that state_dir exists "
                             "and is writable by this user") from None

    def close(self) -> None:
        with self._lock:
            close_store(self.path, self._db)

    def problems(self) -> list[str]:
        """What is wrong with this store now (damage found at open, a failing write), for the health check."""
        return self.health.problems()


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
        """One transaction: committed whole, or rolled back whole (a failed COMMIT — disk full — included)."""
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
                self.health.succeeded()
            except sqlite3.Error as exc:
                self._rollback()
                self.health.failed(f"alert store {self.path}: {exc}")
                raise StoreError(f"alert store {self.path}: {exc}; check free disk space and permissions") \
                    from None
            except BaseException:
                self._rollback()
                raise

    def _rollback(self) -> None:
        if self._db.in_transaction:  # SQLite may have rolled back by itself (SQLITE_FULL at COMMIT)
            with suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")

    def record(self, alert: Alert, clear_since: float | None = None) -> None:
        """Store one alert transition and the alert's current state."""
        self.record_evaluation(Evaluation(alerts=[(alert, clear_since)]))

    def set_clear_since(self, alert_id: str, clear_since: float | None) -> None:
        self.record_evaluation(Evaluation(clear_since=[(alert_id, clear_since)]))

    def record_incident(self, incident: Incident, changes: Sequence[IncidentChange] = ()) -> None:
        """Store an incident's current figures, its alert links and the changes that brought it there."""
        self.record_evaluation(Evaluation(incidents=[(incident, changes)]))

    def record_evaluation(self, ev: Evaluation) -> None:
        """Everything one evaluation changed, in one transaction: all of it is stored, or nothing."""
        if not ev:
            return
        with self._tx() as db:
            for alert, clear_since in ev.alerts:
                _write_alert(db, alert, clear_since)
            for alert_id, clear_since in ev.clear_since:
                db.execute("UPDATE alerts SET clear_since=? WHERE id=?", (clear_since, alert_id))
            for incident, changes in ev.incidents:
                _write_incident(db, incident, changes)
            for y in ev.ledgers:
                db.execute("INSERT OR REPLACE INTO year_ledger VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           (y.site, y.year, y.extracted_m3, y.since, y.through, y.unknown_s, y.peak_rate_m3h,
                            y.peak_at))

    def year_ledgers(self, site: str | None = None, year: int | None = None) -> list[YearLedger]:
        """The stored year ledgers (of one site, of one year), oldest year first."""
        where: list[str] = []
        args: list[str | int] = []
        if site is not None:
            where.append("site=?")
            args.append(site)
        if year is not None:
            where.append("year=?")
            args.append(year)
        sql = "SELECT * FROM year_ledger" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY year, site"
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [YearLedger(str(r[0]), int(r[1]), float(r[2]), r[3], r[4], float(r[5]), float(r[6]), r[7])
                for r in rows]

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

    def acknowledgement(self, alert_id: str) -> Acknowledgement | None:
        with self._lock:
            row = self._db.execute("SELECT acked_by, acked_at FROM alerts WHERE id=?", (alert_id,)).fetchone()
        return None if row is None or row[0] is None else Acknowledgement(row[0], row[1])

    def _alerts(self, where: str, args: tuple[Any, ...]) -> list[Alert]:
        with self._lock:
            rows = self._db.execute(f"SELECT event FROM alerts WHERE {where} ORDER BY starts_ts, id",
                                    args).fetchall()
        return [Alert.from_dict(json.loads(r[0])) for r in rows]

    def open_alerts(self) -> list[Alert]:
        """Alerts pending or firing: what the engine restores at start."""
        return self._alerts("state IN ('pending', 'firing')", ())

    def clear_since(self, alert_id: str) -> float | None:
        """Since when a firing alert's condition has been clear (its lifecycle's hysteresis), if it is."""
        with self._lock:
            row = self._db.execute("SELECT clear_since FROM alerts WHERE id=?", (alert_id,)).fetchone()
        return None if row is None else row[0]

    def get(self, alert_id: str) -> Alert | None:
        found = self._alerts("id=?", (alert_id,))
        return found[0] if found else None

    def history(self, site: str | None = None) -> list[Alert]:
        if site is None:
            return self._alerts("1=1", ())
        return self._alerts("site=?", (site,))

    def transitions(self, alert_id: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT event FROM transitions WHERE alert_id=? ORDER BY rowid",
                                    (alert_id,)).fetchall()
        return [json.loads(r[0]) for r in rows]

    # -- incidents -----------------------------------------------------------------------------------

    def incident(self, incident_id: str) -> Incident | None:
        found = self._incidents("id=?", (incident_id,))
        return found[0] if found else None

    def incidents(self, *, state: IncidentState | str | None = None, kind: IncidentKind | str | None = None,
                  district: str | None = None, site: str | None = None, since: datetime | None = None,
                  until: datetime | None = None) -> list[Incident]:
        """Incidents matching every given filter, oldest onset first. `since`/`until` (the API's `from`/`to`)
        keep the incidents whose span [onset, end or still open] overlaps [since, until)."""
        where: list[str] = ["1=1"]
        args: list[Any] = []
        for col, value in (("state", state), ("kind", kind), ("district", district), ("site", site)):
            if value is not None:
                where.append(f"{col}=?")
                args.append(str(value))
        if since is not None:
            where.append("(ended_ts IS NULL OR ended_ts >= ?)")
            args.append(since.timestamp())
        if until is not None:
            where.append("started_ts < ?")
            args.append(until.timestamp())
        return self._incidents(" AND ".join(where), tuple(args))

    def latest_incidents(self) -> list[Incident]:
        """The newest incident of each (site, kind), open or not: what the engine restores at start (a
        recurrence within the quiet period reopens a resolved one)."""
        return self._incidents(
            "rowid IN (SELECT rowid FROM incidents i WHERE started_ts = (SELECT MAX(started_ts) FROM incidents j "
            "WHERE j.site = i.site AND j.kind = i.kind))", ())

    def incident_of_alert(self, alert_id: str) -> Incident | None:
        found = self._incidents("id IN (SELECT incident_id FROM incident_alerts WHERE alert_id=?)", (alert_id,))
        return found[0] if found else None

    def incident_changes(self, incident_id: str) -> list[dict[str, Any]]:
        """The incident's changes in order: `{change, at, incident}` with the figures at that change."""
        with self._lock:
            rows = self._db.execute("SELECT change, at, body FROM incident_changes WHERE incident_id=? "
                                    "ORDER BY rowid", (incident_id,)).fetchall()
        return [{"change": r[0], "at": r[1], "incident": json.loads(r[2])} for r in rows]

    def incident_notices(self, since: datetime) -> list[IncidentNotice]:
        """The stored incident changes at or after `since`, in order, as the notices they were: what the
        service offers the notifier again at start (a crash between this store and the notifier's queue
        loses none; the queue drops the ones it already has)."""
        with self._lock:
            rows = self._db.execute("SELECT c.change, c.body FROM incident_changes c JOIN incidents i "
                                    "ON i.id = c.incident_id WHERE i.ended_ts IS NULL OR i.ended_ts >= ? "
                                    "ORDER BY c.rowid", (since.timestamp(),)).fetchall()
        out = []
        for change, body in rows:
            incident = Incident.from_dict(json.loads(body))
            if incident.updated_at >= since:
                out.append(IncidentNotice(IncidentChange(change), incident.updated_at, incident))
        return out

    def _incidents(self, where: str, args: tuple[Any, ...]) -> list[Incident]:
        with self._lock:
            rows = self._db.execute(f"SELECT body FROM incidents WHERE {where} ORDER BY started_ts, id",
                                    args).fetchall()
        return [Incident.from_dict(json.loads(r[0])) for r in rows]

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


def _write_alert(db: sqlite3.Connection, alert: Alert, clear_since: float | None) -> None:
    body = alert.to_json()
    d = alert.to_dict()
    db.execute(
        """INSERT INTO alerts (id, site, rule, kind, severity, state, starts_at, starts_ts, ends_at,
                               updated_at, clear_since, summary, event)
           VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)
           ON CONFLICT(id) DO UPDATE SET state=excluded.state, ends_at=excluded.ends_at,
             updated_at=excluded.updated_at, clear_since=excluded.clear_since,
             summary=excluded.summary, event=excluded.event, severity=excluded.severity""",
        (alert.id, alert.site, alert.rule, d["kind"], d["severity"], d["state"], d["starts_at"],
         alert.starts_at.timestamp(), d["ends_at"], d["at"], clear_since, alert.summary, body))
    db.execute("INSERT INTO transitions (alert_id, state, at, event) VALUES (?,?,?,?)",
               (alert.id, d["state"], d["at"], body))


def _write_incident(db: sqlite3.Connection, incident: Incident, changes: Sequence[IncidentChange]) -> None:
    body = incident.to_json()
    db.execute(
        """INSERT INTO incidents (id, site, district, kind, severity, state, started_ts, ended_ts, updated_at, body)
           VALUES (?,?,?,?,?,?,?,?,?,?)
           ON CONFLICT(id) DO UPDATE SET severity=excluded.severity, state=excluded.state,
             started_ts=excluded.started_ts, ended_ts=excluded.ended_ts, updated_at=excluded.updated_at,
             body=excluded.body""",
        (incident.id, incident.site, incident.district, incident.kind.value, incident.severity.value,
         incident.state.value, incident.started_at.timestamp(),
         None if incident.ended_at is None else incident.ended_at.timestamp(),
         incident.updated_at.isoformat(timespec="seconds"), body))
    db.executemany("INSERT OR IGNORE INTO incident_alerts (incident_id, alert_id) VALUES (?,?)",
                   [(incident.id, a) for a in incident.alert_ids])
    db.executemany("INSERT INTO incident_changes (incident_id, change, at, body) VALUES (?,?,?,?)",
                   [(incident.id, c.value, incident.updated_at.isoformat(timespec="seconds"), body)
                    for c in changes])
