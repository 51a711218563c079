"""The index of stored readings: a stored reading is never rewritten.

InfluxDB overwrites a point of the same series and time, so the service decides before it writes. For each
meter the index keeps the device times (ms, the write precision) of the readings it stored with a digest of
their values: a reading whose (site, meter, device time) is already there is a *duplicate* when its values
are identical (a redelivery: not written again) and a *conflict* otherwise (refused: the stored reading
stands). Readings at a new device time — live ones and late, gap-filling ones alike — are stored.

The index covers, per meter, device times from its *floor* on: `horizon` before the meter's newest reading
(never later than `horizon` before the clock, so a reading dated in the future cannot move it), raised when
the index outgrows `max_index_mb`, which drops each meter's oldest entries first. A reading older than its
meter's floor cannot be checked and is refused as *too old*.

It is persisted in the outbox's SQLite file, in the transaction that commits the lines (`Outbox.put_with`):
one row of packed arrays per commit (`seen_log`), folded into one row per meter (`seen_meter`) once the log
holds a quarter of the index (and at a start that found a long log). So the index holds exactly what was
committed, across restarts and crashes.

Memory: 12 bytes per entry (a device time, a CRC-32 of the line's field set); disk about 16 bytes.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import sys
import threading
import time
import zlib
from array import array
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from collector import metrics
from collector.duration import Duration
from collector.model import Reading
from collector.outbox import Companion

__all__ = ["SeenError", "SeenIndex", "SeenSettings", "Sorted"]

log = logging.getLogger(__name__)

PutWith = Callable[[list[str], Companion], object]

_ENTRY_BYTES = 12
_NONE = -(2**63)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen_meter (
    id INTEGER PRIMARY KEY,
    site TEXT NOT NULL,
    meter TEXT NOT NULL,
    floor INTEGER NOT NULL,
    ts BLOB NOT NULL,
    digest BLOB NOT NULL,
    UNIQUE (site, meter)
);
CREATE TABLE IF NOT EXISTS seen_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    meter BLOB NOT NULL,
    ts BLOB NOT NULL,
    digest BLOB NOT NULL
);
"""
_NEW_METER = "INSERT INTO seen_meter (id, site, meter, floor, ts, digest) VALUES (?, ?, ?, ?, x'', x'')"
_LOG = "INSERT INTO seen_log (meter, ts, digest) VALUES (?, ?, ?)"


class SeenSettings(BaseModel):
    """`readings:` in the config file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    horizon: Duration = Field(default=timedelta(days=7),
                              description="device times checked per meter, back from its newest reading")
    max_index_mb: int = Field(default=256, ge=1, description="bound of the index in memory")


class SeenError(Exception):
    """The index cannot be opened or kept."""


@dataclass(slots=True, eq=False)
class _Meter:
    id: int
    site: str
    meter: str
    floor: int = _NONE  # ms: device times before it are not covered
    ts: array[int] = field(default_factory=lambda: array("q"))
    digest: array[int] = field(default_factory=lambda: array("I"))
    top: int = _NONE - 1  # the newest device time stored or in the batch being judged
    persisted: bool = False
    # device times and digests judged new in the batch being committed; None outside it (no two empty
    # arrays a meter: 1.6 MB at 10 000 meters)
    pend: tuple[array[int], array[int]] | None = None
    pend_sorted: bool = True


@dataclass(frozen=True)
class Sorted:
    """A batch judged against the index: what is stored, what is not, and why."""

    readings: list[Reading]  # new: stored
    lines: list[str]
    duplicates: list[Reading] = field(default_factory=list)  # identical to a stored reading
    conflicts: list[Reading] = field(default_factory=list)  # other values at a stored device time
    too_old: list[Reading] = field(default_factory=list)  # before the meter's floor: cannot be checked


class SeenIndex:
    """Thread-safe: `commit` judges, commits and records a batch under one lock."""

    def __init__(self, path: str | Path, settings: SeenSettings | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.settings = settings or SeenSettings()
        self._clock = clock
        self._horizon_ms = round(self.settings.horizon.total_seconds() * 1000)
        self._max_entries = self.settings.max_index_mb * 1024 * 1024 // _ENTRY_BYTES
        self._lock = threading.Lock()
        self._meters: dict[tuple[str, str], _Meter] = {}
        self._entries = 0
        self._logged = 0  # entries in seen_log, not yet folded into seen_meter
        self._pruned_at = 0.0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # a fold lost to power loss leaves the log: consistent
            # read once at start and written by the fold, a whole table at a time: a page cache of 256 KiB, not
            # SQLite's 2 MiB (the outbox's connection keeps the file's hot pages)
            self._db.execute("PRAGMA cache_size=-256")
            self._db.executescript(_SCHEMA)
            self._load()
        except (sqlite3.Error, OSError) as exc:
            raise SeenError(f"cannot open the index of stored readings in {self.path}: {exc}") from exc
        self._prune(self._clock())
        if self._logged > 50_000:  # read entry by entry at every start until folded
            self._fold()
        self._gauges()

    # -- the one entry point ---------------------------------------------------------------------------

    def commit(self, readings: Sequence[Reading], lines: Sequence[str], put_with: PutWith) -> Sorted:
        """Judge `readings` (with their `flow` lines), commit the new ones through `put_with` together with
        their index rows, then record them. Raises what `put_with` raises; then nothing is recorded."""
        with self._lock:
            judged, batch = self._judge(readings, lines)
            try:
                if judged.lines:
                    put_with(judged.lines, self._companion(batch))
            finally:
                committed = bool(judged.lines) and sys.exc_info()[0] is None
                for m in batch:
                    if committed and m.pend is not None:
                        m.persisted = True
                        self._logged += len(m.pend[0])
                        self._entries += self._take(m, *m.pend)
                    m.pend, m.pend_sorted = None, True
                    _reset_top(m)
            now = self._clock()
            if now - self._pruned_at >= 60 or self._entries > self._max_entries:
                self._prune(now)
            if self._logged > max(50_000, self._entries // 4):
                self._fold()
            self._gauges()
        return judged

    def __len__(self) -> int:
        return self._entries

    def floor(self, site: str, meter: str) -> datetime | None:
        """The oldest device time checked for a meter (None: every time is)."""
        m = self._meters.get((site, meter))
        return None if m is None or m.floor == _NONE else datetime.fromtimestamp(m.floor / 1000, UTC)

    def close(self) -> None:
        with self._lock, contextlib.suppress(sqlite3.Error):
            self._db.close()

    # -- judging ---------------------------------------------------------------------------------------

    def _judge(self, readings: Sequence[Reading], lines: Sequence[str]) -> tuple[Sorted, list[_Meter]]:
        """Sort a batch; its new device times wait in each meter's `pend` arrays until committed (the
        meters returned are those with some)."""
        out = Sorted([], [])
        meters, batch, crc = self._meters, [], zlib.crc32
        new_readings, new_lines = out.readings, out.lines
        for r, line in zip(readings, lines, strict=True):
            m = meters.get((r.site, r.meter))
            if m is None:
                m = meters[(r.site, r.meter)] = _Meter(len(meters) + 1, r.site, r.meter)
            sp = line.rfind(" ")
            fs = line.rfind(" ", 0, sp)  # field values of `flow` are numbers: no space in the field set
            ts, d = int(line[sp + 1:]), crc(line[fs + 1:sp].encode())
            if ts > m.top:  # the usual case: newer than anything stored or in this batch
                m.top = ts
            else:
                if ts < m.floor:
                    out.too_old.append(r)
                    continue
                stored = _find(m.ts, m.digest, ts)
                if stored is None and m.pend is not None and ts in m.pend[0]:
                    stored = m.pend[1][m.pend[0].index(ts)]
                if stored is not None:
                    (out.duplicates if stored == d else out.conflicts).append(r)
                    continue
                m.pend_sorted = False  # a late, gap-filling reading
            pend = m.pend
            if pend is None:
                pend = m.pend = (array("q"), array("I"))
                batch.append(m)
            pend[0].append(ts)
            pend[1].append(d)
            new_readings.append(r)
            new_lines.append(line)
        return out, batch

    def _companion(self, batch: list[_Meter]) -> list[tuple[str, list[Any]]]:
        """The rows that record a batch: new meters, and one log row of packed arrays."""
        ids, tss, dgs = array("I"), array("q"), array("I")
        for m in batch:
            if m.pend is not None:
                ids.extend(array("I", [m.id]) * len(m.pend[0]))
                tss.extend(m.pend[0])
                dgs.extend(m.pend[1])
        out: list[tuple[str, list[Any]]] = [(_LOG, [[ids.tobytes(), tss.tobytes(), dgs.tobytes()]])]
        new = [[m.id, m.site, m.meter, m.floor] for m in batch if not m.persisted]
        return [(_NEW_METER, new), *out] if new else out

    # -- recording -------------------------------------------------------------------------------------

    @staticmethod
    def _take(m: _Meter, pend: array[int], pend_digest: array[int]) -> int:
        """Move a meter's committed pending device times into its index; returns how many."""
        ts = m.ts
        if m.pend_sorted and (not ts or pend[0] > ts[-1]):
            ts.extend(pend)
            m.digest.extend(pend_digest)
            return len(pend)
        n = 0
        for t, g in zip(pend, pend_digest, strict=True):
            n += _insert(m, t, g)
        return n

    # -- bounds ----------------------------------------------------------------------------------------

    def _prune(self, now: float) -> None:
        """Raise each meter's floor to `horizon` before its newest reading (or the clock, if earlier), and
        drop the oldest entries of every meter in proportion while the index is over its bound."""
        self._pruned_at = now
        now_ms = round(now * 1000)
        over = self._entries > self._max_entries
        keep = (self._max_entries * 0.9) / self._entries if over else 1.0
        for m in self._meters.values():
            if not m.ts:
                continue
            floor = max(m.floor, min(now_ms, m.ts[-1]) - self._horizon_ms)
            cut = bisect_left(m.ts, floor)
            if over:
                cut = max(cut, len(m.ts) - int(len(m.ts) * keep))
                if cut:
                    floor = max(floor, m.ts[cut - 1] + 1)
            m.floor = floor
            if cut:
                del m.ts[:cut]
                del m.digest[:cut]
                self._entries -= cut
            _reset_top(m)
        if over:
            log.warning("the index of stored readings reached readings.max_index_mb (%d MB): the oldest device "
                        "times of every meter are no longer checked; older readings are refused as too old "
                        "(raise readings.max_index_mb or shorten readings.horizon)", self.settings.max_index_mb)

    def _fold(self) -> None:
        """Write the index as one row per meter and empty the log, in one transaction."""
        rows = [(m.floor, m.ts.tobytes(), m.digest.tobytes(), m.id) for m in self._meters.values() if m.persisted]
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("UPDATE seen_meter SET floor = ?, ts = ?, digest = ? WHERE id = ?", rows)
            self._db.execute("DELETE FROM seen_log")
            self._db.execute("COMMIT")
            self._logged = 0
        except sqlite3.Error as exc:  # the log still holds everything: retried at the next commit
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            log.warning("cannot fold the index of stored readings in %s: %s (retried later)", self.path, exc)

    def _load(self) -> None:
        for mid, site, meter, floor, ts, digest in self._db.execute(
                "SELECT id, site, meter, floor, ts, digest FROM seen_meter ORDER BY id"):
            m = _Meter(int(mid), site, meter, int(floor), persisted=True)
            m.ts.frombytes(ts)
            m.digest.frombytes(digest)
            _reset_top(m)
            self._meters[(site, meter)] = m
            self._entries += len(m.ts)
        by_id = {m.id: m for m in self._meters.values()}
        for packed in self._db.execute("SELECT meter, ts, digest FROM seen_log ORDER BY id"):
            ids, tss, dgs = _unpack(*packed)
            self._logged += len(tss)
            for i, t, g in zip(ids, tss, dgs, strict=True):
                owner = by_id.get(i)
                if owner is not None and t >= owner.floor:
                    self._entries += _insert(owner, t, g)
        for m in by_id.values():
            _reset_top(m)
        if self._entries:
            log.info("index of stored readings: %d device times of %d meters", self._entries, len(self._meters))

    def _gauges(self) -> None:
        metrics.READINGS_INDEXED.set(self._entries)
        metrics.READINGS_INDEX_BYTES.set(self._entries * _ENTRY_BYTES)


def _find(ts: array[int], digest: array[int], t: int) -> int | None:
    i = bisect_left(ts, t)
    return digest[i] if i < len(ts) and ts[i] == t else None


def _insert(m: _Meter, t: int, g: int) -> int:
    """Add one device time in order; 0 when it is there already."""
    if not m.ts or t > m.ts[-1]:
        m.ts.append(t)
        m.digest.append(g)
        return 1
    k = bisect_left(m.ts, t)
    if k < len(m.ts) and m.ts[k] == t:
        return 0
    m.ts.insert(k, t)
    m.digest.insert(k, g)
    return 1


def _reset_top(m: _Meter) -> None:
    """Device times above `top` are new without a look-up: the newest stored, or just below the floor."""
    m.top = m.ts[-1] if m.ts else m.floor - 1


def _unpack(ids_b: bytes, ts_b: bytes, dg_b: bytes) -> tuple[array[int], array[int], array[int]]:
    ids, tss, dgs = array("I"), array("q"), array("I")
    ids.frombytes(ids_b)
    tss.frombytes(ts_b)
    dgs.frombytes(dg_b)
    return ids, tss, dgs
