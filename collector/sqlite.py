"""One way to open every SQLite store (outbox, fan-out, dead letters, alerts, notifications).

`open_store` makes the directory 0700 and the files 0600, checks the file (`PRAGMA quick_check`), moves a
damaged one aside and salvages its readable rows into a fresh one (`repair`), brings the schema to the
current version (`PRAGMA user_version` and forward migrations) and compares the store with the small
high-water record kept beside it (``<file>.highwater.json``: rows and bytes at the last clean stop), so a
store that vanished, was emptied or shrank between two runs is reported loudly instead of starting empty
in silence. `connect` gives every connection the same settings: WAL, one busy timeout, the store's
synchronous mode. `StoreHealth` holds what a store reports to the health check and the
``gshp_store_errors_total{store}`` metric.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from collector import metrics

__all__ = [
    "HighWater",
    "Repair",
    "StoreHealth",
    "StoreSpec",
    "StoreVersionError",
    "Synchronous",
    "close_store",
    "connect",
    "is_corrupt",
    "open_store",
    "repair",
    "secure_dir",
]

log = logging.getLogger(__name__)

_CORRUPT = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}
_SIDE_FILES = ("-wal", "-shm")
_SKIP_LIMIT = 64  # probes past one damaged region before a table's salvage gives up


class Synchronous(StrEnum):
    FULL = "full"  # a commit survives a power cut
    NORMAL = "normal"  # a commit survives a process crash


class StoreVersionError(Exception):
    """The file was written by a newer release than this one (its schema version is higher)."""


@dataclass(frozen=True)
class StoreSpec:
    """How a store is opened.

    `schema` creates the current tables and indexes and must be idempotent (``IF NOT EXISTS``): it runs at
    every open, after the migrations, so new tables need no migration. `migrations[i]` changes existing
    tables from version ``i + 1`` to ``i + 2`` (version 1 is the first release, whose files carry
    ``user_version`` 0), e.g. ``ALTER TABLE … ADD COLUMN``.
    """

    name: str  # the metric label and the word used in messages: "outbox", "alerts", …
    schema: str
    migrations: tuple[str, ...] = ()
    synchronous: Synchronous = Synchronous.FULL
    busy_timeout: float = 30.0
    pragmas: tuple[str, ...] = ()  # extra per connection, e.g. "secure_delete=OFF"
    salvage_rejects: tuple[str, ...] = ()
    """DELETE statements run after a salvage: rows a damaged page produced that cannot be right (a NUL in
    a text, a count that does not match), so a repair never invents data."""

    @property
    def version(self) -> int:
        return 1 + len(self.migrations)


class StoreHealth:
    """The current problems of one store, for the health check; every error is counted in the metric.

    Damage (a file moved aside, rows lost, a store that shrank) stays listed for the life of the process;
    a failing write is listed until the next write succeeds.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._damage: list[str] = []
        self._failing: str | None = None

    def problems(self) -> list[str]:
        with self._lock:
            return [*self._damage, *([self._failing] if self._failing else [])]

    def damaged(self, text: str) -> None:
        """Something was lost or had to be repaired: logged as an error, listed until restart."""
        metrics.STORE_ERRORS.labels(self.name).inc()
        log.error("%s store: %s", self.name, text)
        with self._lock:
            self._damage.append(text)

    def failed(self, text: str) -> bool:
        """A read or write failed; True the first time (log it then), False while it keeps failing."""
        metrics.STORE_ERRORS.labels(self.name).inc()
        with self._lock:
            first, self._failing = self._failing is None, text
        return first

    def succeeded(self) -> bool:
        """A write went through; True when this ends a failure."""
        with self._lock:
            was, self._failing = self._failing is not None, None
        return was


@dataclass(frozen=True)
class HighWater:
    """The record kept beside a store: its rows and bytes, and whether the process that wrote it stopped
    cleanly (at open it is rewritten as not clean, with the opener's pid)."""

    rows: int
    bytes: int
    clean: bool
    pid: int
    at: str

    @staticmethod
    def path_for(store: Path) -> Path:
        return store.with_name(store.name + ".highwater.json")

    @classmethod
    def read(cls, store: Path) -> HighWater | None:
        try:
            data = json.loads(cls.path_for(store).read_text(encoding="utf-8"))
            return cls(int(data["rows"]), int(data["bytes"]), bool(data["clean"]), int(data["pid"]),
                       str(data["at"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring the unreadable high-water record of %s: %s", store, exc)
            return None

    def write(self, store: Path) -> None:
        target = self.path_for(store)
        tmp = target.with_name(target.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"rows": self.rows, "bytes": self.bytes, "clean": self.clean, "pid": self.pid,
                       "at": self.at}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)

    def held_by_other(self) -> bool:
        """Another live process opened the store and has not closed it (a CLI command beside the service)."""
        if self.clean or self.pid == os.getpid():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


@dataclass(frozen=True)
class Repair:
    """A damaged file moved aside and what could be read back from it."""

    moved_to: Path
    salvaged: int  # rows copied into the fresh store
    lost: int  # rows known to have been in the damaged file and not copied (a lower bound)
    reason: str

    def describe(self, spec: StoreSpec, path: Path) -> str:
        return (f"{path} was damaged ({self.reason}); moved aside to {self.moved_to.name}, {self.salvaged} "
                f"readable rows salvaged into a fresh {spec.name} store, at least {self.lost} lost")


def is_corrupt(exc: BaseException) -> bool:
    """A SQLite error that means the file is damaged (not busy, not full)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in _CORRUPT


def secure_dir(path: Path) -> None:
    """Create a state directory 0700, or tighten an existing one that others can read."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        with contextlib.suppress(PermissionError):
            os.chmod(path, 0o700)
            log.warning("%s was readable by other users (mode %o); set to 0700", path, mode)


def _private(path: Path) -> None:
    """The store and its side files 0600 (SQLite gives new side files the main file's mode)."""
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    for p in (path, *(path.with_name(path.name + s) for s in _SIDE_FILES)):
        with contextlib.suppress(FileNotFoundError, PermissionError):
            if p.stat().st_mode & 0o077:
                os.chmod(p, 0o600)


def connect(path: Path, spec: StoreSpec, synchronous: Synchronous | None = None) -> sqlite3.Connection:
    """A connection with the store's settings: autocommit (explicit BEGIN), WAL, busy timeout."""
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=spec.busy_timeout)
    db.execute(f"PRAGMA busy_timeout={int(spec.busy_timeout * 1000)}")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={(synchronous or spec.synchronous).value.upper()}")
    db.execute("PRAGMA journal_size_limit=67108864")  # a WAL grown by a burst shrinks back after a checkpoint
    for pragma in spec.pragmas:
        db.execute(f"PRAGMA {pragma}")
    return db


def _check(db: sqlite3.Connection) -> str | None:
    """None when the file is sound, else the first problem SQLite reports."""
    rows = [r[0] for r in db.execute("PRAGMA quick_check(5)").fetchall()]
    return None if rows == ["ok"] else "; ".join(str(r) for r in rows)


def _tables(db: sqlite3.Connection) -> list[str]:
    return [r[0] for r in db.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]


def _rows(db: sqlite3.Connection) -> int:
    return sum(int(db.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0]) for t in _tables(db))


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, *(path.with_name(path.name + s) for s in _SIDE_FILES))
               if p.exists())


def _migrate(db: sqlite3.Connection, path: Path, spec: StoreSpec) -> None:
    """Forward migrations from the file's version, then the current schema, in one transaction."""
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version > spec.version:
        raise StoreVersionError(f"{path} has schema version {version}, newer than this release's "
                                f"{spec.version}: run the release that wrote it, or restore a backup")
    if version == spec.version:
        db.executescript(spec.schema)  # idempotent: tables added to the schema since are created
        return
    fresh = not _tables(db)
    db.execute("BEGIN IMMEDIATE")
    try:
        if not fresh:
            for step in spec.migrations[max(version, 1) - 1:]:
                for statement in _statements(step):
                    db.execute(statement)
        for statement in _statements(spec.schema):
            db.execute(statement)
        db.execute(f"PRAGMA user_version={spec.version}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    if not fresh:
        log.info("%s: schema migrated from version %d to %d", path, max(version, 1), spec.version)


def _statements(script: str) -> Iterator[str]:
    """The statements of a script (executescript would commit the migration's transaction)."""
    buf = ""
    for piece in script.split(";"):
        buf += piece + ";"
        if sqlite3.complete_statement(buf):  # not a ";" inside a string or a trigger body
            if buf.strip(" \t\r\n;"):
                yield buf.strip()
            buf = ""


def _move_aside(path: Path) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    for suffix in ("", *_SIDE_FILES):
        src = path.with_name(path.name + suffix)
        if src.exists():
            os.replace(src, target.with_name(target.name + suffix))
    return target


def _copy_table(src: sqlite3.Connection, dst: sqlite3.Connection, table: str) -> tuple[int, int]:
    """Copy the rows of `table` that can be read, by rowid, stepping over damaged pages.
    Returns (copied, lost): lost counts read errors (at least one row each)."""
    try:
        theirs = [r[1] for r in src.execute(f'PRAGMA table_info("{table}")')]
    except sqlite3.DatabaseError:
        return 0, 1
    ours = {r[1] for r in dst.execute(f'PRAGMA table_info("{table}")')}
    cols = [c for c in theirs if c in ours]
    if not cols:
        return 0, 0
    names = ", ".join(f'"{c}"' for c in cols)
    insert = f'INSERT OR IGNORE INTO "{table}" ({names}) VALUES ({", ".join("?" * len(cols))})'
    copied = lost = 0
    last, step, skips = -(2 ** 63), 1, 0
    while skips < _SKIP_LIMIT and last < 2 ** 62:
        batch: list[tuple[Any, ...]] = []
        try:
            for row in src.execute(f'SELECT rowid, {names} FROM "{table}" WHERE rowid > ? ORDER BY rowid',
                                   (last,)):
                if batch and row[0] <= batch[-1][0]:
                    continue  # out of order: read from a page that is not what it claims
                batch.append(tuple(row))
                if len(batch) >= 500:
                    copied, last, batch = copied + _insert(dst, insert, batch), int(batch[-1][0]), []
            return copied + _insert(dst, insert, batch), lost
        except sqlite3.DatabaseError:
            if batch:
                copied, last = copied + _insert(dst, insert, batch), int(batch[-1][0])
                step = 1
            lost += 1
            skips += 1
            last, step = max(last, 0) + step, step * 2  # probe past the damaged page
    return copied, lost


def _create_like(src: sqlite3.Connection, dst: sqlite3.Connection, table: str) -> None:
    """Create `table` in `dst` as the damaged file declares it, if that declaration can still be read."""
    try:
        row = src.execute("SELECT sql FROM sqlite_master WHERE type='table' AND name=?", (table,)).fetchone()
        if row and row[0]:
            dst.execute(row[0])
    except sqlite3.DatabaseError as exc:
        log.warning("cannot recreate table %s from the damaged file: %s", table, exc)


def _insert(dst: sqlite3.Connection, insert: str, batch: list[tuple[Any, ...]]) -> int:
    """Insert rows read as (rowid, columns…), in rowid order (kept for tables ordered by rowid); returns how
    many went in (a row that breaks a constraint, e.g. NULLs read from a zeroed page, does not)."""
    before = dst.total_changes
    dst.executemany(insert, [row[1:] for row in batch])
    return dst.total_changes - before


def repair(path: Path, spec: StoreSpec, reason: str, expected_rows: int | None = None) -> Repair:
    """Move a damaged store (and its WAL) aside and copy its readable rows into a fresh one.

    No connection to `path` may be open. `expected_rows` (the high-water mark, or the count the caller
    held) makes the loss figure exact where the damaged file cannot say how many rows it had.
    """
    moved = _move_aside(path)
    _private(path)
    dst = connect(path, spec)
    copied = lost = 0
    try:
        _migrate(dst, path, spec)
        try:
            src = sqlite3.connect(moved, isolation_level=None)
            # a file shorter than its header says is refused as corrupt unless the schema is "writable";
            # nothing is written through this connection
            src.execute("PRAGMA writable_schema=ON")
            src.execute("PRAGMA query_only=1")
        except sqlite3.Error:
            src = None
        if src is not None:
            try:
                tables = _tables(src)
            except sqlite3.DatabaseError:
                tables, lost = [], 1
            dst.execute("BEGIN IMMEDIATE")
            for table in tables:
                if table not in _tables(dst):
                    _create_like(src, dst, table)  # a table another module keeps in this file (cases, audit)
                if table in _tables(dst):
                    c, miss = _copy_table(src, dst, table)
                    copied, lost = copied + c, lost + miss
            for statement in spec.salvage_rejects:
                rejected = dst.execute(statement).rowcount
                copied, lost = copied - rejected, lost + rejected
            dst.execute("COMMIT")
            src.close()
            with contextlib.suppress(FileNotFoundError):
                moved.with_name(moved.name + "-shm").unlink()  # an index of the WAL, rebuilt when opened
    finally:
        dst.close()
    if expected_rows is not None:
        lost = max(lost, expected_rows - copied)
    return Repair(moved, copied, lost, reason)


def open_store(path: Path | str, spec: StoreSpec, health: StoreHealth) -> sqlite3.Connection:
    """Check, repair if needed, migrate and connect; reports damage and shrinkage to `health`.

    Raises `sqlite3.Error` / `OSError` when the file cannot be opened at all (permissions, a full disk)
    and `StoreVersionError` for a file of a newer release. ``":memory:"`` gives a private in-memory store.
    """
    if str(path) == ":memory:":
        memory = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        memory.executescript(spec.schema)
        return memory
    path = Path(path)
    secure_dir(path.parent)
    mark = HighWater.read(path)
    guest = mark is not None and mark.held_by_other()
    lost = False  # reported already: the file is gone or empty
    if mark is not None and not guest:
        lost = not path.exists() or (path.stat().st_size == 0 and mark.bytes > 0)
        if not path.exists():
            health.damaged(f"{path} has vanished since the last run (it held {mark.rows} rows, "
                           f"{mark.bytes} bytes); starting with an empty store")
        elif path.stat().st_size == 0 and mark.bytes > 0:
            health.damaged(f"{path} is an empty file (it held {mark.rows} rows, {mark.bytes} bytes at "
                           f"{mark.at}); starting with an empty store")
    _private(path)
    db: sqlite3.Connection | None = None
    try:
        db = connect(path, spec)
        problem = _check(db)
    except sqlite3.DatabaseError as exc:
        if not is_corrupt(exc):
            if db is not None:
                db.close()
            raise
        problem = str(exc)
    repaired = None
    if problem is not None:
        if db is not None:
            db.close()
        if guest:  # never move a file another live process has open; its owner repairs it at its next start
            assert mark is not None
            raise sqlite3.DatabaseError(f"{path} is damaged ({problem}); process {mark.pid} has it open — "
                                        "restart that process to repair it")
        repaired = repair(path, spec, problem, mark.rows if mark is not None and mark.clean else None)
        health.damaged(repaired.describe(spec, path))
        db = connect(path, spec)
    assert db is not None
    _migrate(db, path, spec)
    _private(path)
    rows = _rows(db)
    if mark is not None and mark.clean and not guest and not lost and repaired is None and rows < mark.rows:
        health.damaged(f"{path} holds {rows} rows, {mark.rows} at the last clean stop ({mark.at}): rows were "
                       "removed while the service was stopped")
    if not guest:
        try:
            HighWater(rows, _size(path), False, os.getpid(), _now()).write(path)
        except OSError as exc:  # a full disk must not keep the service from starting
            log.warning("cannot write the high-water record of %s: %s", path, exc)
            with contextlib.suppress(OSError):
                HighWater.path_for(path).unlink()  # no stale clean-stop count to compare with next time
    return db


def close_store(path: Path | str, db: sqlite3.Connection) -> None:
    """Record the store's rows as of this clean stop (unless another live process holds it), then close."""
    if str(path) == ":memory:":
        db.close()
        return
    path = Path(path)
    try:
        mark = HighWater.read(path)
        if mark is None or not mark.held_by_other():
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            HighWater(_rows(db), _size(path), True, os.getpid(), _now()).write(path)
    except (sqlite3.Error, OSError) as exc:
        log.warning("could not record the state of %s at stop: %s", path, exc)
    finally:
        db.close()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
