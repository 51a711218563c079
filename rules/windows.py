"""Per-meter interval ledger: each reading step's volume spread over fixed intervals, summed into windows.

Time is cut into intervals of `step` seconds aligned to the epoch (interval k is [k·step, (k+1)·step)).
A step between two readings adds its volume to the intervals it overlaps in proportion to the overlap —
exactly the linear interpolation of the totalizer at interval edges — or, when its volume is unknown,
marks them unknown. A window is a run of whole intervals; its sum equals `counters.increase` over the
same span, at a cost independent of how many readings it holds.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass
from typing import Final

__all__ = ["IntervalSeries", "Ledger", "WindowSum", "interval_of", "spread"]


_NEVER: Final = -(1 << 62)
EXACT_SPAN: Final = 16
"""Windows of up to this many intervals are summed interval by interval (the short windows and each hour at
5-minute intervals); longer ones from running sums, which differ from that only in the last bits."""


def interval_of(t: float, step_s: float) -> int:
    """Index of the interval holding time `t` (epoch seconds)."""
    return math.floor(t / step_s)


def spread(t0: float, t1: float, volume: float, step_s: float) -> list[tuple[int, float]]:
    """Split `volume` passed over [t0, t1] across the intervals it overlaps, in proportion to time."""
    if t1 <= t0:
        return []
    k0 = interval_of(t0, step_s)
    k1 = interval_of(t1, step_s)
    if t1 == k1 * step_s:
        k1 -= 1  # an interval edge at t1 belongs to the next interval, which the step does not touch
    if k0 == k1:
        return [(k0, volume)]
    out = []
    span = t1 - t0
    for k in range(k0, k1 + 1):
        overlap = min(t1, (k + 1) * step_s) - max(t0, k * step_s)
        if overlap > 0:
            out.append((k, volume * overlap / span))
    return out


@dataclass(frozen=True, slots=True)
class WindowSum:
    volume_m3: float
    complete: bool


@dataclass(frozen=True, slots=True)
class IntervalSeries:
    """One meter's intervals k_start, k_start+1, …: each interval's volume and whether it is known
    (kept, not marked unknown, and inside the meter's reported span)."""

    k_start: int
    volumes: tuple[float, ...]
    known: tuple[bool, ...]


class Ledger:
    """Interval volumes of one meter, kept for `retention` intervals back from the newest.

    Packed: a float64 and a byte per interval (9 bytes, not ~40 for a list of float objects), trimmed once
    `slack` intervals beyond the retention accumulate. A window longer than `EXACT_SPAN` intervals is summed
    from running sums (one more float64 an interval, brought up to date when read), so an evaluation costs
    the same whatever its windows' lengths."""

    __slots__ = ("_base", "_cum", "_fresh", "_unknown", "_unknown_top", "_vol", "retention", "step_s")

    def __init__(self, step_s: float, retention: int) -> None:
        if step_s <= 0 or retention < 1:
            raise ValueError("a ledger needs a positive step and a retention of at least one interval")
        self.step_s = step_s
        self.retention = retention
        self._base: int | None = None  # interval index of _vol[0]
        self._vol = array("d")
        self._unknown = bytearray()  # 1: the interval's volume is unknown (lost, not zero)
        self._unknown_top = _NEVER  # no interval after this one was ever marked unknown: none to look for
        self._cum = array("d", [0.0])  # _cum[i]: the sum of _vol[:i], up to date for i ≤ _fresh
        self._fresh = 0

    @property
    def oldest(self) -> int | None:
        """The index of the oldest interval kept (None before the first volume)."""
        return self._base

    def _slot(self, k: int) -> int | None:
        if self._base is None:
            self._base = k
        if k < self._base:
            return None  # older than what is kept: ignore
        i = k - self._base
        if i >= len(self._vol):
            grow = i + 1 - len(self._vol)
            self._vol.frombytes(bytes(8 * grow))  # zeros
            self._unknown.extend(bytes(grow))
            if len(self._vol) > self.retention + max(8, self.retention // 8):
                drop = len(self._vol) - self.retention
                del self._vol[:drop]
                del self._unknown[:drop]
                del self._cum[len(self._vol) + 1:]
                self._fresh = 0
                self._base += drop
                i -= drop
        return i

    def add(self, t0: float, t1: float, volume: float | None) -> None:
        """Record the step from `t0` to `t1`: its volume, or None when unknown."""
        if volume is None:
            self.mark_unknown(t0, t1)
            return
        step = self.step_s
        k0, k1 = math.floor(t0 / step), math.floor(t1 / step)
        if t1 > t0 and (k1 == k0 or (k1 == k0 + 1 and t1 == k1 * step)):  # one interval, as `spread` splits it
            base = self._base
            i = -1 if base is None else k0 - base
            if 0 <= i < len(self._vol):  # already kept: no growing, no trimming
                self._vol[i] += volume
                if i < self._fresh:
                    self._fresh = i
                return
            slot = self._slot(k0)
            if slot is not None:
                self._put(slot, volume)
            return
        for k, v in spread(t0, t1, volume, step):
            slot = self._slot(k)
            if slot is not None:
                self._put(slot, v)

    def _put(self, i: int, volume: float) -> None:
        self._vol[i] += volume
        if i < self._fresh:
            self._fresh = i

    def mark_unknown(self, t0: float, t1: float) -> None:
        """Make every interval overlapping [t0, t1] unknown (volume lost, not zero)."""
        k0 = interval_of(t0, self.step_s)
        k1 = interval_of(t1, self.step_s)
        if t1 == k1 * self.step_s and k1 > k0:
            k1 -= 1
        for k in range(k0, k1 + 1):
            i = self._slot(k)
            if i is not None:
                self._unknown[i] = 1
        self._unknown_top = max(self._unknown_top, k1)

    def _known(self, k_start: int, i0: int, i1: int) -> bool:
        """No kept interval i0 … i1−1 (interval `k_start` on) is unknown: none is after the newest one marked."""
        return k_start > self._unknown_top or self._unknown.find(1, i0, i1) < 0

    def window(self, k_start: int, k_end: int) -> WindowSum:
        """Sum of intervals k_start … k_end−1; incomplete if any is unknown or not kept."""
        return WindowSum(*self.total(k_start, k_end))

    def total(self, k_start: int, k_end: int) -> tuple[float, bool]:
        """`window` as a pair: the volume of intervals k_start … k_end−1 and whether it is complete."""
        base = self._base
        if base is None or k_start < base or k_end <= k_start:
            return 0.0, False
        vol = self._vol
        i0 = k_start - base
        i1 = min(k_end - base, len(vol))
        complete = k_end - base == i1 and self._known(k_start, i0, i1)
        if i1 - i0 <= EXACT_SPAN:  # added up in order
            return sum(vol[i0:i1], 0.0), complete
        cum = self._cum  # else the difference of running sums
        if len(cum) <= i1:
            cum.frombytes(bytes(8 * (len(vol) + 1 - len(cum))))
        for j in range(self._fresh, i1):
            cum[j + 1] = cum[j] + vol[j]
        self._fresh = max(self._fresh, i1)
        return cum[i1] - cum[i0], complete

    def volume_at(self, k: int) -> float:
        """The volume of interval `k` (0.0 when it is not kept)."""
        i = -1 if self._base is None else k - self._base
        return self._vol[i] if 0 <= i < len(self._vol) else 0.0

    def volumes(self, k_start: int, k_end: int) -> tuple[list[float], bool]:
        """The volumes of intervals k_start … k_end−1 (0.0 for one not kept) and whether every one is known."""
        n = k_end - k_start
        if n <= 0:
            return [], True
        if self._base is None:
            return [0.0] * n, False
        i0, i1 = k_start - self._base, k_end - self._base
        size = len(self._vol)
        if i0 >= 0 and i1 <= size:
            return self._vol[i0:i1].tolist(), self._known(k_start, i0, i1)
        lo, hi = max(i0, 0), min(i1, size)
        if lo >= hi:
            return [0.0] * n, False
        return [0.0] * (lo - i0) + self._vol[lo:hi].tolist() + [0.0] * (i1 - hi), False

    def intervals(self, k_start: int, k_end: int) -> list[tuple[float, bool]]:
        """(volume, known) of each interval k_start … k_end−1; an interval not kept is (0.0, False)."""
        out: list[tuple[float, bool]] = []
        for k in range(k_start, k_end):
            i = -1 if self._base is None else k - self._base
            if 0 <= i < len(self._vol):
                out.append((self._vol[i], not self._unknown[i]))
            else:
                out.append((0.0, False))
        return out
