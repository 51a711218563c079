"""Sequential test on the deficit ratio of successive blocks against the site's learned baseline (CUSUM).

Each judged block (one hour or more, see `rules.engine`) gives d = 100·(E − R)/E over its `hours`. The
baseline b is the site's own systematic meter bias, learned from its history (median of the warm-up hours,
then an exponentially weighted mean with a long half-life, updated only while the statistic is low so a
discharge is not learned as normal). The one-sided CUSUM S ← max(0, S + (d − b − drift)·hours) accumulates
excess deficit in percent-hours; S above the threshold is the alarm.

The baseline is bounded, because meters are: it stays within the meters' combined accuracy (a site whose
first days already show more is flagged, not learned), moves by at most `max_drift_pct_day` per day (meters
age slowly; a discharge that grows slowly still outruns it), and after a meter replacement, reset or role
change it is learned again only within what the new instrument's accuracy and share of the flow allow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from rules.balance import Condition

__all__ = ["CusumParams", "CusumState", "cusum_condition", "cusum_learned", "cusum_relearn", "cusum_start",
           "cusum_update", "weighted_median"]


@dataclass(frozen=True, slots=True)
class CusumParams:
    drift_pct: float
    threshold_pct_h: float
    warmup_h: float  # hours of judged blocks to learn the baseline from
    half_life_h: float  # of the baseline's exponentially weighted mean after warm-up
    max_drift_pct_day: float  # fastest the baseline may move after warm-up

    def alpha(self, hours: float) -> float:
        """Weight of a block of `hours` in the baseline after warm-up."""
        return 1.0 - float(0.5 ** (hours / self.half_life_h))


@dataclass(frozen=True, slots=True)
class CusumState:
    n: int = 0  # blocks judged since the last (re)start
    hours: float = 0.0  # their hours
    baseline_pct: float = 0.0
    warmup: tuple[tuple[float, float], ...] = ()  # deficit ratio and hours of each warm-up block
    s: float = 0.0  # CUSUM statistic, percent-hours
    last_pct: float | None = None  # most recent block's deficit ratio
    lo_pct: float = -math.inf  # the baseline stays within [lo_pct, hi_pct]
    hi_pct: float = math.inf
    warm: bool = False  # the baseline is learned: the statistic runs
    bounded: bool = False  # the warm-up's median lay beyond the bounds: the baseline was held at a bound


def cusum_start(bound_pct: float) -> CusumState:
    """A fresh state whose baseline may be learned within ±`bound_pct` (the meters' combined accuracy)."""
    return CusumState(lo_pct=-bound_pct, hi_pct=bound_pct)


def cusum_relearn(state: CusumState, move_pct: float) -> CusumState:
    """After a meter replacement, reset or role change: learn the baseline again, within `move_pct` of the
    one learned before (what the new instrument's accuracy and share of the flow can shift); the statistic
    keeps what it has accumulated. Before the first warm-up ends, the learning simply starts over."""
    if not state.warm:
        return CusumState(lo_pct=state.lo_pct, hi_pct=state.hi_pct)
    b = state.baseline_pct
    return CusumState(baseline_pct=b, s=state.s, lo_pct=max(state.lo_pct, b - move_pct),
                      hi_pct=min(state.hi_pct, b + move_pct), bounded=state.bounded)


def _clamp(x: float, lo: float, hi: float) -> float:
    return min(max(x, lo), hi)


def weighted_median(values: tuple[tuple[float, float], ...]) -> float:
    """The median of (value, weight) pairs: half the weight lies at or below it."""
    ordered = sorted(values)
    half = sum(w for _, w in ordered) / 2.0
    acc = 0.0
    for v, w in ordered:
        acc += w
        if acc >= half:
            return v
    return ordered[-1][0]


def cusum_learned(state: CusumState, warmup: tuple[tuple[float, float], ...]) -> CusumState:
    """The baseline learned from `warmup` (deficit ratio, hours) instead: the engine re-judges its warm-up
    blocks once it knows the site's transit lag better than when they came."""
    median = weighted_median(warmup)
    return replace(state, baseline_pct=_clamp(median, state.lo_pct, state.hi_pct),
                   bounded=not state.lo_pct <= median <= state.hi_pct)


def cusum_update(state: CusumState, deficit_pct: float, hours: float, p: CusumParams) -> CusumState:
    """Fold one judged block (its deficit ratio over `hours`) into the state."""
    if not state.warm:
        values = (*state.warmup, (deficit_pct, hours))
        median = weighted_median(values)
        learned = state.hours + hours >= p.warmup_h
        return replace(state, n=state.n + 1, hours=state.hours + hours,
                       baseline_pct=_clamp(median, state.lo_pct, state.hi_pct), warmup=() if learned else values,
                       last_pct=deficit_pct, warm=learned,
                       bounded=state.bounded or (learned and not state.lo_pct <= median <= state.hi_pct))
    s = max(0.0, state.s + (deficit_pct - state.baseline_pct - p.drift_pct) * hours)
    # cap so that the alarm can clear within about a day after the deficit stops
    s = min(s, 3.0 * p.threshold_pct_h)
    baseline = state.baseline_pct
    if s < p.threshold_pct_h / 2:
        most = p.max_drift_pct_day * hours / 24.0
        baseline += _clamp(p.alpha(hours) * (deficit_pct - baseline), -most, most)
        baseline = _clamp(baseline, state.lo_pct, state.hi_pct)
    return replace(state, n=state.n + 1, hours=state.hours + hours, baseline_pct=baseline, s=s, warmup=(),
                   last_pct=deficit_pct)


def cusum_condition(state: CusumState, p: CusumParams) -> Condition:
    if not state.warm:
        return Condition.UNKNOWN
    if state.s >= p.threshold_pct_h:
        return Condition.ACTIVE
    if state.s > p.threshold_pct_h / 2:
        return Condition.BAND
    return Condition.CLEAR
