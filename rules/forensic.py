"""Forensic check on the data itself: readings that repeat an earlier period.

Replayed data: every reading that moved the totalizer becomes a token (seconds since the previous reading,
the totalizer's step and the rate, each quantised to the meter's resolution); `shingle` consecutive distinct
tokens form a stretch, fingerprinted by its hash. A site remembers one stretch in `sample` (those whose hash
is divisible by it, so the same stretch is remembered whenever it recurs) for `memory`, whichever meter
showed it. An honest ultrasonic meter never shows the same stretch twice — its noise makes every reading
new — so a stretch seen before, on the same meter (replayed) or another one (copied), is a match. Matches
with one shift (within a minute) from one source, `min_matches` of them within `window`, make the finding.
Memory per site is bounded: at most `memory / interval / sample` fingerprints per meter, and never more
than `MAX_PRINTS`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from collector.duration import format_duration
from rules.balance import Condition
from rules.quality import Finding
from rules.settings import ForensicSettings

__all__ = ["MAX_PRINTS", "Match", "ReplayPlan", "SitePrints", "observe_reading", "replay_finding"]

MAX_PRINTS = 50_000
"""Fingerprints one site keeps at most (the oldest go first)."""

_KEEP_MATCHES = 64  # matches one meter remembers (the newest)
_SCALE = 1000  # tokens are quantised to 0.001 (m³, m³/h)


@dataclass(frozen=True, slots=True)
class ReplayPlan:
    """`ForensicSettings` for the hot path: durations as seconds."""

    memory_s: float
    window_s: float
    min_matches: int
    shingle: int
    sample: int

    @classmethod
    def of(cls, f: ForensicSettings) -> ReplayPlan:
        return cls(f.replay_memory.total_seconds(), f.replay_window.total_seconds(), f.replay_matches,
                   f.replay_shingle, f.replay_sample)


@dataclass(frozen=True, slots=True)
class Match:
    """A stretch of `meter` ending at `ts` that `source` showed before, ending at `earlier_ts`."""

    ts: float
    earlier_ts: float
    source: str


@dataclass(slots=True)
class _MeterPrints:
    tokens: deque[tuple[int, int, int]]
    matches: deque[Match] = field(default_factory=lambda: deque(maxlen=_KEEP_MATCHES))
    last_ts: float | None = None
    last_total: float | None = None


@dataclass(slots=True)
class SitePrints:
    """One site's remembered stretches (hash → meter and time of its last reading) and each meter's state."""

    plan: ReplayPlan
    prints: dict[int, tuple[str, float]] = field(default_factory=dict)
    meters: dict[str, _MeterPrints] = field(default_factory=dict)


def observe_reading(sp: SitePrints, meter: str, ts: float, rate: float | None, total: float | None) -> None:
    """Fold one reading (newer than the meter's last) into the site's fingerprints."""
    mp = sp.meters.get(meter)
    if mp is None:
        mp = sp.meters[meter] = _MeterPrints(deque(maxlen=sp.plan.shingle))
    if total is None:
        return
    prev_ts, prev_total = mp.last_ts, mp.last_total
    mp.last_ts, mp.last_total = ts, total
    if prev_ts is None or prev_total is None:
        return
    delta = total - prev_total
    if delta <= 0 or rate is None or rate <= 0:
        mp.tokens.clear()  # a stopped or stepping-back meter shows nothing a copy could be told by
        return
    mp.tokens.append((round(ts - prev_ts), round(delta * _SCALE), round(rate * _SCALE)))
    plan = sp.plan
    if len(mp.tokens) < plan.shingle or len(set(mp.tokens)) < plan.shingle:
        return  # a steady flow repeating its own readings is not a copy: too little to tell
    h = hash(tuple(mp.tokens))
    if h % plan.sample:
        return
    _forget(sp, ts)
    seen = sp.prints.pop(h, None)
    if seen is not None and (seen[0] != meter or seen[1] < ts):
        mp.matches.append(Match(ts, seen[1], seen[0]))
    sp.prints[h] = (meter, ts)


def _forget(sp: SitePrints, now: float) -> None:
    """Drop fingerprints older than the memory, and the oldest beyond `MAX_PRINTS` (insertion order is
    data time, nearly: meters report in step)."""
    prints = sp.prints
    oldest = now - sp.plan.memory_s
    while prints:
        h = next(iter(prints))
        if prints[h][1] >= oldest and len(prints) < MAX_PRINTS:
            break
        del prints[h]


def replay_finding(sp: SitePrints, now: float) -> Finding:
    """ACTIVE when a meter's matches within the window (up to `now`) include `min_matches` with one source
    and one shift; evidence per meter: where the copy comes from, the shift, how many stretches matched,
    the first of them and the period it repeats."""
    plan = sp.plan
    hits: dict[str, dict[str, object]] = {}
    for meter, mp in sp.meters.items():
        groups: dict[tuple[str, int], list[Match]] = {}
        for m in mp.matches:
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

