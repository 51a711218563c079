"""Volume balance of one window: extracted E, reinjected R, deficit D = E − R, and its verdict.

Allowances are subtracted from the deficit before it is compared with the threshold, and shown in the
evidence: the *transit* allowance is the water that is legitimately on its way (reinjection lags
extraction through tanks and pipes, so after a start-up or a load rise the deficit is the extra water in
transit, bounded by what extraction passed in the last `transit_lag`); the *maintenance* allowance is the
volume cap of declared maintenance (backwashing) overlapping the window.

Pipes and tanks between the two sides drain into the wells while the pumps stand still and fill again at the
next start-up before any water reaches reinjection: the *refill credit* gives back, after a stop, the water
that drained (reinjected with no water arriving) during it, less what the refilling already made up before
the window.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Balance", "Condition", "balance_threshold_pct", "judge_balance", "refill_credit", "stopped_interval",
           "transit_allowance"]


class Condition(StrEnum):
    """What a rule says about its condition at one evaluation."""

    ACTIVE = "active"  # above the threshold
    BAND = "band"  # between the clear level and the threshold: keep the current state (hysteresis)
    CLEAR = "clear"  # below the clear level
    UNKNOWN = "unknown"  # no verdict (incomplete data, too little flow): keep the current state


class Balance:
    """One window's volumes and verdict. A plain class with slots, not a named tuple: four are made per site
    and step, and compiled, such a class is made several times faster."""

    __slots__ = ("condition", "deficit_m3", "deficit_pct", "excess_pct", "extracted_m3", "maintenance_allowance_m3",
                 "reason", "reinjected_m3", "threshold_pct", "transit_allowance_m3")

    def __init__(self, condition: Condition, extracted_m3: float, reinjected_m3: float, deficit_m3: float,
                 deficit_pct: float | None, excess_pct: float | None, threshold_pct: float,
                 transit_allowance_m3: float, maintenance_allowance_m3: float, reason: str) -> None:
        self.condition = condition
        self.extracted_m3 = extracted_m3
        self.reinjected_m3 = reinjected_m3
        self.deficit_m3 = deficit_m3
        self.deficit_pct = deficit_pct
        self.excess_pct = excess_pct  # deficit after allowances, % of extraction: what is compared
        self.threshold_pct = threshold_pct
        self.transit_allowance_m3 = transit_allowance_m3
        self.maintenance_allowance_m3 = maintenance_allowance_m3
        self.reason = reason  # why the condition is UNKNOWN, else ""

    def __repr__(self) -> str:
        return f"Balance({self.condition!r}, excess_pct={self.excess_pct!r}, reason={self.reason!r})"


def balance_threshold_pct(threshold_pct: float, accuracy_factor: float, extraction_accuracy_pct: float,
                          reinjection_accuracy_pct: float) -> float:
    """A window's threshold: a fixed floor, or the meters' combined accuracy times a factor."""
    return max(threshold_pct, accuracy_factor * (extraction_accuracy_pct + reinjection_accuracy_pct))


def transit_allowance(extracted_before_end_m3: float, extracted_before_start_m3: float) -> float:
    """Water legitimately in transit: extraction in the last transit lag before the window's end, minus
    the same before its start (zero in steady state, the tank's fill after a start-up)."""
    return max(0.0, extracted_before_end_m3 - extracted_before_start_m3)


def refill_credit(arriving: list[float], reinjected: list[float]) -> float:
    """Water the pipes drained during the last stop before a window, not yet refilled at its start.

    `arriving` is extraction shifted by the site's transit lag (the water reaching the pipes' end) and
    `reinjected` the reinjection, per interval up to the window's start (oldest first). The last run of
    intervals where water was reinjected with (next to) none arriving is the stop: the pipes drained. From
    its start on, arriving less reinjected water is what the pipes gained back; as long as that is negative,
    the pipes are still refilling, and that much (at most what drained) is credited."""
    i = len(arriving) - 1
    while i >= 0 and not stopped_interval(arriving[i], reinjected[i]):
        i -= 1
    if i < 0:
        return 0.0
    drained = 0.0
    while i >= 0 and stopped_interval(arriving[i], reinjected[i]):
        drained += reinjected[i] - arriving[i]
        i -= 1
    gained = sum(arriving[i + 1:], 0.0) - sum(reinjected[i + 1:], 0.0)
    return min(drained, max(0.0, -gained))


def stopped_interval(arriving: float, reinjected: float) -> bool:
    """An interval of a stop: next to no water arriving, or far more reinjected than arrived (the pipes
    draining as the pumps slow down)."""
    return arriving <= 0.05 * reinjected + 1e-3 or reinjected > 1.5 * arriving


def judge_balance(extracted_m3: float, reinjected_m3: float, *, complete: bool, threshold_pct: float,
                  clear_ratio: float, min_extracted_m3: float, transit_allowance_m3: float = 0.0,
                  maintenance_allowance_m3: float = 0.0, low_load_m3: float = 0.0) -> Balance:
    """Compare one window's deficit (after allowances) with its threshold.

    Below `min_extracted_m3` (but at least `low_load_m3`, when that is positive) the window is judged by
    volume: active when its deficit exceeds the threshold's share of `min_extracted_m3` — as many m³ as a
    window of the minimum volume would need — and otherwise no verdict (low load never clears an alert)."""
    deficit = extracted_m3 - reinjected_m3
    pct = 100.0 * deficit / extracted_m3 if extracted_m3 > 0 else None
    condition, excess, reason = _verdict(extracted_m3, deficit, complete, threshold_pct, clear_ratio,
                                         min_extracted_m3, transit_allowance_m3, maintenance_allowance_m3,
                                         low_load_m3)
    return Balance(condition, extracted_m3, reinjected_m3, deficit, pct, excess, threshold_pct,
                   transit_allowance_m3, maintenance_allowance_m3, reason)


def _verdict(extracted_m3: float, deficit: float, complete: bool, threshold_pct: float, clear_ratio: float,
             min_extracted_m3: float, transit_m3: float, maintenance_m3: float,
             low_load_m3: float) -> tuple[Condition, float | None, str]:
    """`judge_balance`'s condition, excess and reason."""
    if not complete:
        return Condition.UNKNOWN, None, "incomplete"
    if extracted_m3 < max(min_extracted_m3, 1e-9):
        if 0.0 < low_load_m3 <= extracted_m3:
            excess_m3 = deficit - transit_m3 - maintenance_m3
            if 100.0 * excess_m3 / min_extracted_m3 > threshold_pct:
                return Condition.ACTIVE, 100.0 * excess_m3 / extracted_m3, ""
        return Condition.UNKNOWN, None, "low_flow"
    excess = 100.0 * (deficit - transit_m3 - maintenance_m3) / extracted_m3
    if excess > threshold_pct:
        return Condition.ACTIVE, excess, ""
    if excess > threshold_pct * clear_ratio:
        return Condition.BAND, excess, ""
    return Condition.CLEAR, excess, ""
