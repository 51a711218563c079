"""Forensic checks on the data itself: readings that repeat an earlier period, and rates too smooth for a
real flowmeter.

Replayed data: every reading that moved the totalizer becomes a token (the totalizer's step and the rate,
each to 0.001; not its time, so a copy re-stamped with jitter still matches); `shingle` consecutive distinct
tokens form a stretch, fingerprinted by its hash. A site remembers about one stretch in `sample` — those
whose last token's step + rate is divisible by it, so the same stretch is remembered whenever it recurs —
for `memory`, whichever meter showed it. An honest ultrasonic meter never shows the same stretch twice (its
noise makes every reading new), so a stretch seen before, on the same meter (replayed) or another one
(copied), is a match. Matches with one shift (to the minute) from one source, `min_matches` of them within
`window`, make the finding. Memory per site is bounded: at most `memory / interval / sample` fingerprints
per meter, and never more than `MAX_PRINTS`; packed in arrays sorted by fingerprint (48 bits of the hash, the
meter's index, the time), 15 bytes each: about 13 KB for a 4-meter site reporting every minute.

Synthetic data: an ultrasonic meter's rate jitters from one reading to the next (repeatability, turbulence),
so the rate's second difference `|r[i+1] − 2·r[i] + r[i−1]| / r[i]` is of the order of its noise. A computed
curve is smooth: its second differences are far smaller. A meter whose median over its last `smooth_readings`
running readings is below `smooth_floor_pct` is too smooth — judged only while the rate takes at least half
as many distinct values as readings and its resolution (the decimals it is shown with) is below the floor at
the median rate (a coarse meter, or a fine one at a trickle, holding its value is not smooth, it is
quantised).

Exact balance: independent meters each within their accuracy disagree from hour to hour by their noise and
by the water in transit; reinjection computed from extraction agrees exactly. `exact_hours` consecutive
judged hours (at least `exact_min_m3` extracted, every meter complete, and totalizers fine enough to show a
deficit of `VISIBLE_PCT`: a totalizer counting whole m³ makes two honest meters agree to the m³) whose
median deficit (in size) is below `exact_floor_pct` are implausibly exact (the median: one hour half forged,
half measured does not hide the rest); an hour not judged (stopped, incomplete, too coarse) restarts the
count.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left, bisect_right
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import compress
from typing import Final

from collector.duration import format_duration
from rules.balance import Condition
from rules.quality import Finding
from rules.settings import ForensicSettings

__all__ = ["MAX_PRINTS", "ForensicPlan", "Match", "SitePrints", "exact_finding", "note_hour", "observe_reading",
           "replay_finding", "smooth_finding"]

MAX_PRINTS = 50_000
"""Fingerprints one site keeps at most (the oldest go first, an eighth of them at once)."""

_KEEP_MATCHES: Final = 64  # matches one meter remembers (the newest)
_SCALE: Final = 1000  # tokens are quantised to 0.001 (m³, m³/h)
VISIBLE_PCT = 0.1
"""An hour is judged for exactness only when the site's totalizers can show a deficit of this share of its
extraction: honest meters' hourly deficits wander by tenths of a percent, whole-m³ totalizers round them away."""


@dataclass(frozen=True, slots=True)
class ForensicPlan:
    """`ForensicSettings` for the hot path: durations as seconds."""

    replay: bool
    memory_s: float
    window_s: float
    min_matches: int
    shingle: int
    sample: int
    smooth: bool
    smooth_readings: int
    smooth_floor: float  # a fraction, not %
    exact: bool
    exact_hours: int
    exact_floor_pct: float
    exact_min_m3: float

    @classmethod
    def of(cls, f: ForensicSettings) -> ForensicPlan:
        return cls(f.replay, f.replay_memory.total_seconds(), f.replay_window.total_seconds(), f.replay_matches,
                   f.replay_shingle, f.replay_sample, f.smooth, f.smooth_readings, f.smooth_floor_pct / 100.0,
                   f.exact, f.exact_hours, f.exact_floor_pct, f.exact_min_m3)

    @property
    def any(self) -> bool:
        return self.replay or self.smooth or self.exact


@dataclass(frozen=True, slots=True)
class Match:
    """A stretch of `meter` ending at `ts` that `source` showed before, ending at `earlier_ts`."""

    ts: float
    earlier_ts: float
    source: str


@dataclass(slots=True)
class _MeterPrints:
    """Packed: the rates and curvatures in float arrays (8 bytes a value, not an object in a deque's 64-slot
    block), each a ring once `smooth_readings` long (the newest value takes the oldest one's place: one
    write, where appending and deleting the first are two Python calls when compiled), the matches made at
    the first one — a city of 10 000 meters keeps them in a few MB. The tokens, a dozen, are a list: compiled,
    a list of ints is read and written natively, an array through Python calls."""

    index: int  # its place among the site's meters, as the fingerprints name it
    tokens: list[int] = field(default_factory=list)  # (step, flow) pairs, ≤ `shingle` of them, a ring
    token_at: int = 0  # where the oldest pair is once the ring is full
    rates: array[float] = field(default_factory=lambda: array("d"))  # the last running rates, a ring
    curvature: array[float] = field(default_factory=lambda: array("d"))  # their relative second differences
    rate_at: int = 0  # where the oldest rate is once the ring is full
    bend_at: int = 0  # where the oldest curvature is once that ring is full
    matches: deque[Match] | None = None
    run: int = 0  # running readings since the meter last stopped, the last two of them below
    smooth_count: int = 0  # how many of `curvature` are below the floor: the median is below it past half
    rate_1: float = 0.0
    rate_2: float = 0.0
    last_ts: float | None = None
    last_total: float | None = None
    quantum: int = 0  # the totalizer's resolution in thousandths of m³: the gcd of its steps (0: none seen)


@dataclass(slots=True)
class _Prints:
    """A site's remembered stretches in parallel arrays sorted by `high` (32 bits of the stretch's hash, `low`
    16 more), with the meter (its index in `names`) and time of the stretch's last reading: 15 bytes a print.
    A print older than `horizon` is forgotten: ignored if found, dropped at the next compaction."""

    high: array[int] = field(default_factory=lambda: array("I"))
    low: array[int] = field(default_factory=lambda: array("H"))
    meter: array[int] = field(default_factory=lambda: array("B"))  # "H" from the 257th meter of a site on
    ts: array[float] = field(default_factory=lambda: array("d"))
    names: list[str] = field(default_factory=list)
    horizon: float = -math.inf
    added: int = 0  # prints added since the last compaction

    def __len__(self) -> int:
        """Prints stored, the forgotten ones until the next compaction included."""
        return len(self.ts)


@dataclass(slots=True)
class SitePrints:
    """One site's remembered stretches (fingerprint → meter and time of its last reading) and each meter's
    state."""

    plan: ForensicPlan
    prints: _Prints = field(default_factory=_Prints)
    meters: dict[str, _MeterPrints] = field(default_factory=dict)
    next_hour: int | None = None  # the next whole hour (epoch hours) the exact-balance check takes
    hours: deque[tuple[float, float, float]] = field(default_factory=deque)  # judged run: (end, E m³, R m³)


def observe_reading(sp: SitePrints, meter: str, ts: float, rate: float | None, total: float | None) -> None:
    """Fold one reading (newer than the meter's last) into the site's fingerprints and smoothness."""
    plan = sp.plan
    mp = sp.meters.get(meter)
    if mp is None:
        mp = sp.meters[meter] = _MeterPrints(_name(sp.prints, meter))
    if plan.smooth:
        _observe_rate(mp, rate, plan.smooth_readings, plan.smooth_floor)
    if total is None or not (plan.replay or plan.exact):
        return
    prev_ts, prev_total = mp.last_ts, mp.last_total
    mp.last_ts, mp.last_total = ts, total
    if prev_ts is None or prev_total is None:
        return
    delta = total - prev_total
    if delta > 0 and mp.quantum != 1:
        units = int(delta * _SCALE + 0.5)
        if mp.quantum == 0 or units % mp.quantum:  # a multiple of the resolution already found leaves it
            mp.quantum = math.gcd(mp.quantum, units)
    if not plan.replay:
        return
    if delta <= 0 or rate is None or rate <= 0:
        if mp.tokens:
            del mp.tokens[:]  # a stopped or stepping-back meter shows nothing a copy could be told by
            mp.token_at = 0
        return
    # both are positive here: int(x + 0.5) rounds them (and is quicker than round on the hot path)
    step, flow = int(delta * _SCALE + 0.5), int(rate * _SCALE + 0.5)
    tokens, size = mp.tokens, 2 * plan.shingle
    if len(tokens) < size:
        tokens.append(step)
        tokens.append(flow)
    else:  # a ring once full: the newest pair takes the oldest one's place
        i = mp.token_at
        tokens[i], tokens[i + 1] = step, flow
        mp.token_at = (i + 2) % size
    # a stretch is remembered by its last reading (the same stretch always is, wherever it recurs)
    if (step + flow) % plan.sample or len(tokens) < size or len(
            set(zip(tokens[::2], tokens[1::2], strict=True))) < plan.shingle:
        return  # not remembered; or a steady flow repeating its own readings: too little to tell a copy by
    p = sp.prints
    p.horizon = max(p.horizon, ts - plan.memory_s)
    i = mp.token_at  # the oldest pair: the stretch in its order
    seen = _remember(p, hash(tuple(tokens[i:] + tokens[:i])), mp.index, ts)
    if seen is not None and (seen[0] != meter or seen[1] < ts):
        if mp.matches is None:
            mp.matches = deque(maxlen=_KEEP_MATCHES)
        mp.matches.append(Match(ts, seen[1], seen[0]))


def _observe_rate(mp: _MeterPrints, rate: float | None, keep: int, floor: float) -> None:
    if rate is None or rate <= 0:
        if mp.run:  # stopped: a start-up's ramp is not judged against the run before (nothing kept at 0)
            del mp.rates[:]
            del mp.curvature[:]
            mp.run = mp.smooth_count = mp.rate_at = mp.bend_at = 0
        return
    r = mp.rates
    if len(r) < keep:
        r.append(rate)
    else:  # full: the newest takes the oldest one's place
        r[mp.rate_at] = rate
        mp.rate_at = (mp.rate_at + 1) % keep
    # the two rates before this one kept as numbers too: compiled, reading them back from the array is slower
    before, earlier = mp.rate_1, mp.rate_2
    mp.rate_1, mp.rate_2 = rate, before
    mp.run += 1
    if mp.run >= 3 and before > 0:
        c = mp.curvature
        bend = abs(rate - 2.0 * before + earlier) / before
        if bend < floor:
            mp.smooth_count += 1
        if len(c) < keep:
            c.append(bend)
        else:
            j = mp.bend_at
            if c[j] < floor:
                mp.smooth_count -= 1
            c[j] = bend
            mp.bend_at = (j + 1) % keep


def _remember(p: _Prints, h: int, index: int, ts: float) -> tuple[str, float] | None:
    """Remember the stretch hashed `h` as the `index`th meter's, ending at `ts`; the meter and time it was
    last seen, unless never or forgotten."""
    high, low = (h >> 16) & 0xFFFF_FFFF, h & 0xFFFF
    i = bisect_left(p.high, high)
    n = len(p.high)
    while i < n and p.high[i] == high:
        if p.low[i] == low:
            seen_ts = p.ts[i]
            seen = (p.names[p.meter[i]], seen_ts) if seen_ts >= p.horizon else None
            p.meter[i], p.ts[i] = index, ts
            return seen
        i += 1
    if p.added * 8 > n + 256 or n >= MAX_PRINTS:
        _compact(p)
        i = bisect_right(p.high, high)  # after any others sharing its high bits, as above
    p.high.insert(i, high)
    p.low.insert(i, low)
    p.meter.insert(i, index)
    p.ts.insert(i, ts)
    p.added += 1
    return None


def _name(p: _Prints, meter: str) -> int:
    """The index the site's fingerprints give a new `meter`."""
    p.names.append(meter)
    if len(p.names) == 257:
        p.meter = array("H", p.meter)  # more meters than a byte tells apart
    return len(p.names) - 1


def _compact(p: _Prints) -> None:
    """Drop the forgotten prints, and the oldest beyond seven eighths of `MAX_PRINTS` (amortised: called after
    an eighth of the prints were added, or when full)."""
    ts = p.ts
    keep = [t >= p.horizon for t in ts]
    count = keep.count(True)
    limit = MAX_PRINTS - MAX_PRINTS // 8
    if count > limit:
        newest = sorted(compress(range(len(ts)), keep), key=ts.__getitem__)[count - limit:]
        keep = [False] * len(ts)
        for i in newest:
            keep[i] = True
    p.high, p.low, p.meter = (array(a.typecode, list(compress(a, keep))) for a in (p.high, p.low, p.meter))
    p.ts = array("d", list(compress(ts, keep)))
    p.added = 0


def replay_finding(sp: SitePrints, now: float) -> Finding:
    """ACTIVE when a meter's matches within the window (up to `now`) include `min_matches` with one source
    and one shift; evidence per meter: where the copy comes from, the shift, how many stretches matched,
    the first of them and the period it repeats."""
    plan = sp.plan
    hits: dict[str, dict[str, object]] = {}
    for meter, mp in sp.meters.items():
        groups: dict[tuple[str, int], list[Match]] = {}
        for m in mp.matches or ():
            if now - plan.window_s < m.ts <= now:
                groups.setdefault((m.source, round((m.ts - m.earlier_ts) / 60.0)), []).append(m)
        if not groups:
            continue
        (source, _), best = max(groups.items(), key=lambda kv: len(kv[1]))
        if len(best) < plan.min_matches:
            continue
        shift = best[-1].ts - best[-1].earlier_ts
        hits[meter] = {"copied_from": source, "shift": format_duration(timedelta(seconds=round(shift))),
                       "matching_stretches": len(best), "stretch_readings": plan.shingle,
                       "first_match": datetime.fromtimestamp(best[0].ts, UTC),
                       "repeats_period_of": datetime.fromtimestamp(best[0].earlier_ts, UTC)}
    if not hits:
        return Finding(Condition.CLEAR)
    return Finding(Condition.ACTIVE, tuple(hits), {"replays": hits})



def smooth_finding(sp: SitePrints, now: float) -> Finding:
    """ACTIVE when a meter's last `smooth_readings` running rates are too smooth for a real meter (see the
    module); evidence per meter: the median second difference, the floor, and how many readings and distinct
    rates it rests on."""
    plan = sp.plan
    hits: dict[str, dict[str, object]] = {}
    for meter, mp in sp.meters.items():
        n = len(mp.curvature)
        if n < plan.smooth_readings or mp.smooth_count <= n // 2:
            continue  # the median is at or above the floor: jitters as a real meter does (most meters, at once)
        median = sorted(mp.curvature)[n // 2]
        shown = sorted(set(mp.rates))
        if len(shown) * 2 < len(mp.rates):
            continue
        resolution = _resolution(shown)
        if resolution > plan.smooth_floor * sorted(mp.rates)[len(mp.rates) // 2]:
            continue  # the meter's resolution is coarser than the floor at this rate: it cannot show such jitter
        hits[meter] = {"median_jitter_pct": round(100.0 * median, 5),
                       "floor_pct": round(100.0 * plan.smooth_floor, 5),
                       "readings": len(mp.curvature), "distinct_rates": len(shown),
                       "resolution_m3h": round(resolution, 6)}
    if not hits:
        return Finding(Condition.CLEAR)
    return Finding(Condition.ACTIVE, tuple(hits), {"smooth": hits})


def _resolution(rates: list[float]) -> float:
    """The display resolution the rates show: 10⁻ᵈ for the most decimals any of them needs (at most 6)."""
    for d in range(7):
        scale = 10.0 ** d
        if all(abs(r * scale - round(r * scale)) < 1e-6 for r in rates):
            return 1.0 / scale
    return 1e-6


def note_hour(sp: SitePrints, end: float, extracted_m3: float, reinjected_m3: float, complete: bool) -> None:
    """Take one whole hour ending at `end` (epoch seconds) into the exact-balance run: judged when complete
    with enough extracted, else the run restarts."""
    plan = sp.plan
    if not complete or extracted_m3 < max(plan.exact_min_m3, 1e-9) or (
            _resolution_m3(sp) > VISIBLE_PCT / 100.0 * extracted_m3):
        sp.hours.clear()
        return
    sp.hours.append((end, extracted_m3, reinjected_m3))
    while len(sp.hours) > plan.exact_hours:
        sp.hours.popleft()


def _resolution_m3(sp: SitePrints) -> float:
    """How finely an hour's deficit can be known from the site's totalizers: the sum of their resolutions."""
    return sum(mp.quantum for mp in sp.meters.values()) / _SCALE


def exact_finding(sp: SitePrints, now: float) -> Finding:
    """ACTIVE while the last `exact_hours` hours (the newest ended within two hours of `now`) balanced within
    `exact_floor_pct` (median absolute hourly deficit); evidence: the hours, the median and the largest hourly
    deficit, the floor, the volumes."""
    plan = sp.plan
    h = sp.hours
    if len(h) < plan.exact_hours or now - h[-1][0] > 7200:
        return Finding(Condition.CLEAR)
    deficits = sorted(abs(100.0 * (e - r) / e) for _, e, r in h)
    median = deficits[len(deficits) // 2]
    if median >= plan.exact_floor_pct:
        return Finding(Condition.CLEAR)
    e_sum, r_sum = sum((e for _, e, _ in h), 0.0), sum((r for _, _, r in h), 0.0)
    return Finding(Condition.ACTIVE, (), {
        "hours": len(h), "from": datetime.fromtimestamp(h[0][0] - 3600, UTC),
        "to": datetime.fromtimestamp(h[-1][0], UTC), "median_hourly_deficit_pct": round(median, 4),
        "largest_hourly_deficit_pct": round(max(deficits), 4),
        "floor_pct": plan.exact_floor_pct, "extracted_m3": round(e_sum, 3), "reinjected_m3": round(r_sum, 3)})
