"""Arrival rate (到报率): of the reports a meter was expected to send, the share that arrived.

A local day is cut into slots of the meter's expected interval from local midnight (the last slot may be
shorter); a slot has arrived when at least one reading's *device* time falls in it, so a duplicate or a
late back-filled reading counts once and fills its own slot. A slot is expected once it has ended.

`arrival` is the pure count over a list of device times (reports, the API for past days); `Counted` the
same count from downsampled series, which keep how many readings each interval held; `ArrivalBook`
holds the same count live as one bitmap per kept day for every meter (a bit per slot, fixed size, set as
readings come), so both give the same figures for the same readings.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from collector.model import Reading

__all__ = ["NOTHING", "Arrival", "ArrivalBook", "Counted", "arrival", "day_span", "missing_ranges", "slot_range",
           "slots_of"]


@dataclass(frozen=True, slots=True)
class Arrival:
    """Expected and arrived reports; `pct` is None when nothing was expected yet."""

    expected: int
    arrived: int

    @property
    def pct(self) -> float | None:
        return 100.0 * self.arrived / self.expected if self.expected else None

    def __add__(self, other: Arrival) -> Arrival:
        return Arrival(self.expected + other.expected, self.arrived + other.arrived)


NOTHING = Arrival(0, 0)


def day_span(day: date, tz: tzinfo) -> tuple[float, float]:
    """The local day [00:00, 24:00) in `tz` as epoch seconds (23 or 25 hours across a DST change)."""
    start = datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
    return start.timestamp(), end.timestamp()


def slots_in(start: float, end: float, interval_s: float) -> int:
    """Slots of `interval_s` in the day [start, end) (the last one may be shorter)."""
    return math.ceil((end - start) / interval_s - 1e-9)


def slot_range(start: float, end: float, interval_s: float, a: float, b: float) -> tuple[int, int]:
    """Slots k (lo ≤ k < hi) of the day [start, end) that begin at or after `a` and have ended by `b`."""
    n = slots_in(start, end, interval_s)
    lo = max(0, math.ceil((a - start) / interval_s - 1e-9))
    hi = n if b >= end else max(0, min(n, math.floor((b - start) / interval_s + 1e-9)))
    return lo, max(lo, hi)


def arrival(times: Iterable[float], start: float, end: float, interval_s: float,
            until: float | None = None) -> Arrival:
    """Arrival over the day [start, end) up to `until` (default: the whole day) from device times (epoch
    seconds, any order, duplicates allowed; times outside the day are left out)."""
    lo, hi = slot_range(start, end, interval_s, start, end if until is None else until)
    seen = {int((t - start) // interval_s) for t in times if start <= t < end}
    return Arrival(hi - lo, sum(1 for k in seen if lo <= k < hi))


@dataclass(frozen=True, slots=True)
class Counted:
    """Readings counted per interval of a downsampled series: per (site, meter), (interval start, readings)
    pairs, for the arrival rate of reports that read no raw readings."""

    every_s: float
    counts: Mapping[tuple[str, str], Sequence[tuple[float, int]]]

    def arrival(self, site: str, meter: str, start: float, end: float, interval_s: float) -> Arrival:
        """`arrival` over [start, end) from the counts: an interval's readings fill the slots it overlaps, in
        order, one each, and an interval with a row held at least one. Equal to `arrival` over the raw
        readings when slots and intervals nest (10 s or 1 min readings, 1 min intervals; 10 min readings, 1 min
        intervals) and no slot got two readings — an interval cannot say which slots its readings fell in."""
        lo, hi = slot_range(start, end, interval_s, start, end)
        seen: set[int] = set()
        for at, n in self.counts.get((site, meter), ()):
            if not start <= at < end:
                continue
            k0 = int((at - start) // interval_s)
            k1 = max(k0 + 1, math.ceil((at + self.every_s - start) / interval_s - 1e-9))
            seen.update(range(k0, min(k1, k0 + max(n, 1))))
        return Arrival(hi - lo, sum(1 for k in seen if lo <= k < hi))


def missing_ranges(arrived: Sequence[bool] | Iterable[bool], start: float, end: float, interval_s: float,
                   lo: int, hi: int) -> list[tuple[float, float]]:
    """The runs of slots lo … hi−1 that did not arrive, as [from, to) epoch-second ranges."""
    flags = list(arrived)
    out: list[tuple[float, float]] = []
    k = lo
    while k < hi:
        if flags[k]:
            k += 1
            continue
        j = k
        while j < hi and not flags[j]:
            j += 1
        out.append((start + k * interval_s, min(end, start + j * interval_s)))
        k = j
    return out


def slots_of(times: Iterable[float], start: float, end: float, interval_s: float) -> list[bool]:
    """Per slot of the day, whether a device time fell in it."""
    flags = [False] * slots_in(start, end, interval_s)
    for t in times:
        if start <= t < end:
            flags[int((t - start) // interval_s)] = True
    return flags


@dataclass(slots=True)
class _Day:
    start: float
    end: float
    bits: bytearray  # every meter's slots, meter i from byte offset[i]


class ArrivalBook:
    """Which slots of each meter arrived, for the last `keep_days` local days (today included).

    One bytearray per day holds every meter's bitmap (a bit per slot, each meter at a fixed byte offset,
    sized for a 25-hour day), so the memory is fixed by the configuration: `bytes_per_day × keep_days`.
    Thread-safe. Device times older than the kept days are left out; a newer day rolls the oldest out.
    """

    def __init__(self, intervals: Mapping[tuple[str, str], timedelta], tz: tzinfo, keep_days: int = 3) -> None:
        if keep_days < 2:
            raise ValueError("keep_days: at least 2 (the trailing 24 hours span two days)")
        self.tz = tz
        self.keep_days = keep_days
        self._index: dict[tuple[str, str], int] = {}
        self._interval: list[float] = []
        self._offset: list[int] = []
        size = 0
        for key, every in intervals.items():
            s = every.total_seconds()
            if s <= 0:
                raise ValueError(f"{key[0]}/{key[1]}: the expected interval must be positive")
            self._index[key] = len(self._interval)
            self._interval.append(s)
            self._offset.append(size)
            size += (math.ceil(25 * 3600 / s) + 7) // 8
        self.bytes_per_day = size
        self._days: dict[date, _Day] = {}
        self._lock = threading.Lock()

    @property
    def meters(self) -> list[tuple[str, str]]:
        return list(self._index)

    def interval(self, site: str, meter: str) -> float:
        return self._interval[self._index[site, meter]]

    def _day(self, ts: float, create: bool) -> _Day | None:
        d = datetime.fromtimestamp(ts, self.tz).date()
        day = self._days.get(d)
        if day is not None or not create:
            return day
        newest = max(self._days, default=None)
        if newest is not None and (newest - d).days >= self.keep_days:
            return None  # older than what is kept
        start, end = day_span(d, self.tz)
        self._days[d] = _Day(start, end, bytearray(self.bytes_per_day))
        newest = max(self._days)
        for old in [k for k in self._days if (newest - k).days >= self.keep_days]:
            del self._days[old]
        return self._days.get(d)

    def note(self, site: str, meter: str, ts: float) -> None:
        """A reading of `site`/`meter` with device time `ts` (epoch seconds) arrived."""
        i = self._index.get((site, meter))
        if i is None:
            return
        with self._lock:
            day = self._day(ts, create=True)
            if day is None:
                return
            k = int((ts - day.start) // self._interval[i])
            day.bits[self._offset[i] + (k >> 3)] |= 1 << (k & 7)

    def on_readings(self, readings: Iterable[Reading]) -> None:
        """A batch of readings as the service hands them on after committing them (one lock, and the local
        day looked up again only when a reading falls outside the previous one's)."""
        index, interval, offset = self._index, self._interval, self._offset
        with self._lock:
            day: _Day | None = None
            for r in readings:
                i = index.get((r.site, r.meter))
                if i is None:
                    continue
                ts = r.ts.timestamp()
                if day is None or not day.start <= ts < day.end:
                    day = self._day(ts, create=True)
                    if day is None:
                        continue
                k = int((ts - day.start) // interval[i])
                day.bits[offset[i] + (k >> 3)] |= 1 << (k & 7)

    def _flags(self, day: _Day, i: int) -> list[bool]:
        n = slots_in(day.start, day.end, self._interval[i])
        raw = int.from_bytes(day.bits[self._offset[i]:self._offset[i] + (n + 7) // 8], "little")
        return [bool(raw >> k & 1) for k in range(n)]

    def _count(self, day: _Day, i: int, a: float, b: float) -> Arrival:
        every = self._interval[i]
        lo, hi = slot_range(day.start, day.end, every, a, b)
        if hi <= lo:
            return NOTHING
        raw = int.from_bytes(day.bits[self._offset[i] + (lo >> 3):self._offset[i] + ((hi + 7) >> 3)], "little")
        raw >>= lo & 7
        return Arrival(hi - lo, (raw & ((1 << (hi - lo)) - 1)).bit_count())

    def holds(self, d: date) -> bool:
        with self._lock:
            return d in self._days

    def day(self, site: str, meter: str, d: date, now: float) -> Arrival:
        """Arrival of one meter on local day `d`, counting the slots ended by `now`."""
        i = self._index[site, meter]
        start, end = day_span(d, self.tz)
        with self._lock:
            day = self._days.get(d)
            if day is None:
                lo, hi = slot_range(start, end, self._interval[i], start, now)
                return Arrival(hi - lo, 0)
            return self._count(day, i, day.start, now)

    def missing(self, site: str, meter: str, d: date, now: float) -> list[tuple[float, float]]:
        """The slot ranges of day `d`, ended by `now`, in which nothing arrived."""
        i = self._index[site, meter]
        start, end = day_span(d, self.tz)
        every = self._interval[i]
        lo, hi = slot_range(start, end, every, start, now)
        with self._lock:
            day = self._days.get(d)
            flags = self._flags(day, i) if day is not None else [False] * slots_in(start, end, every)
        return missing_ranges(flags, start, end, every, lo, hi)

    def trailing(self, site: str, meter: str, now: float, span: timedelta = timedelta(hours=24)) -> Arrival:
        """Arrival over the slots that began at or after `now − span` and ended by `now` (across days)."""
        i = self._index[site, meter]
        a = now - span.total_seconds()
        first = datetime.fromtimestamp(a, self.tz).date()
        last = datetime.fromtimestamp(now, self.tz).date()
        total = NOTHING
        with self._lock:
            d = first
            while d <= last:
                day = self._days.get(d)
                if day is None:
                    start, end = day_span(d, self.tz)
                    lo, hi = slot_range(start, end, self._interval[i], max(a, start), now)
                    total += Arrival(hi - lo, 0)
                else:
                    total += self._count(day, i, max(a, day.start), now)
                d += timedelta(days=1)
        return total
