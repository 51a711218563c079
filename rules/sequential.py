"""Sequential test on the per-interval deficit ratio against the site's learned baseline (CUSUM).

Each valid interval gives d = 100·(E − R)/E. The baseline b is the site's own systematic meter bias,
learned from its history (median of the warm-up intervals, then an exponentially weighted mean with a long
half-life, updated only while the statistic is low so a discharge is not learned as normal). The
one-sided CUSUM S ← max(0, S + d − b − drift) accumulates excess deficit in percent-hours; S above the
threshold is the alarm. A physical change (meter reset or replacement, role swap) restarts the learning.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace

from rules.balance import Condition

__all__ = ["CusumParams", "CusumState", "cusum_condition", "cusum_update"]


@dataclass(frozen=True, slots=True)
class CusumParams:
    drift_pct: float
    threshold_pct_h: float
    warmup_n: int  # valid intervals to learn the baseline from
    learn_alpha: float  # weight of one interval in the baseline after warm-up
    interval_h: float

    @classmethod
    def of(cls, drift_pct: float, threshold_pct_h: float, warmup_h: float, half_life_h: float,
           interval_h: float) -> CusumParams:
        return cls(drift_pct, threshold_pct_h, max(1, math.ceil(warmup_h / interval_h)),
                   1.0 - 0.5 ** (interval_h / half_life_h), interval_h)


@dataclass(frozen=True, slots=True)
class CusumState:
    n: int = 0  # valid intervals seen since the last restart
    baseline_pct: float = 0.0
    warmup: tuple[float, ...] = ()  # deficit ratios of the warm-up intervals
    s: float = 0.0  # CUSUM statistic, percent-hours
    last_pct: float | None = None  # most recent interval's deficit ratio


def cusum_update(state: CusumState, deficit_pct: float, p: CusumParams) -> CusumState:
    """Fold one valid interval's deficit ratio into the state."""
    if state.n < p.warmup_n:
        values = (*state.warmup, deficit_pct)
        return CusumState(n=state.n + 1, baseline_pct=statistics.median(values), s=0.0, warmup=values,
                          last_pct=deficit_pct)
    s = max(0.0, state.s + (deficit_pct - state.baseline_pct - p.drift_pct) * p.interval_h)
    # cap so that the alarm can clear within about a day after the deficit stops
    s = min(s, 3.0 * p.threshold_pct_h)
    baseline = state.baseline_pct
    if s < p.threshold_pct_h / 2:
        baseline += p.learn_alpha * (deficit_pct - baseline)
    return replace(state, n=state.n + 1, baseline_pct=baseline, s=s, warmup=(), last_pct=deficit_pct)


def cusum_condition(state: CusumState, p: CusumParams) -> Condition:
    if state.n <= p.warmup_n:
        return Condition.UNKNOWN
    if state.s >= p.threshold_pct_h:
        return Condition.ACTIVE
    if state.s > p.threshold_pct_h / 2:
        return Condition.BAND
    return Condition.CLEAR
