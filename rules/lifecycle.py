"""Alert lifecycle per (site, rule): inactive → pending → firing → resolved, like Prometheus alerts.

`advance` is a pure function of the current `AlertTrack`, the rule's condition at one evaluation and the
data time of that evaluation. `hold` (the rule's `for:`) keeps a new condition pending until it has lasted;
`clear_for` keeps a firing alert until the condition has been clear that long, and the BAND condition
(between the clear level and the threshold) changes nothing — together they stop flapping. UNKNOWN (no
data) never resolves an alert: unplugging a meter must not end a discharge alert.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from enum import StrEnum

from rules.balance import Condition

__all__ = ["AlertState", "AlertTrack", "Transition", "advance", "alert_id"]


class AlertState(StrEnum):
    INACTIVE = "inactive"
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"  # only in transitions: a resolved alert's track is INACTIVE


@dataclass(frozen=True, slots=True)
class AlertTrack:
    state: AlertState = AlertState.INACTIVE
    alert_id: str | None = None
    starts_at: float | None = None
    clear_since: float | None = None


@dataclass(frozen=True, slots=True)
class Transition:
    alert_id: str
    state: AlertState
    at: float
    starts_at: float
    ends_at: float | None


def alert_id(site: str, rule: str, starts_at: float) -> str:
    """Stable id of one alert (the same in every run over the same data)."""
    return hashlib.sha1(f"{site}\x1f{rule}\x1f{starts_at:.3f}".encode()).hexdigest()[:16]


def advance(track: AlertTrack, condition: Condition, at: float, hold_s: float, clear_for_s: float,
            site: str, rule: str) -> tuple[AlertTrack, Transition | None]:
    """The next track and the transition (if any) after one evaluation at data time `at`."""
    s = track.state
    if s is AlertState.INACTIVE:
        if condition is not Condition.ACTIVE:
            return track, None
        aid = alert_id(site, rule, at)
        if hold_s <= 0:
            return (AlertTrack(AlertState.FIRING, aid, at, None),
                    Transition(aid, AlertState.FIRING, at, at, None))
        return (AlertTrack(AlertState.PENDING, aid, at, None),
                Transition(aid, AlertState.PENDING, at, at, None))
    assert track.alert_id is not None and track.starts_at is not None
    aid, starts = track.alert_id, track.starts_at
    if s is AlertState.PENDING:
        if condition is Condition.ACTIVE and at - starts >= hold_s:
            return (replace(track, state=AlertState.FIRING),
                    Transition(aid, AlertState.FIRING, at, starts, None))
        if condition is Condition.CLEAR:
            return AlertTrack(), Transition(aid, AlertState.RESOLVED, at, starts, at)
        return track, None
    # FIRING
    if condition in (Condition.ACTIVE, Condition.BAND):
        return (replace(track, clear_since=None) if track.clear_since is not None else track), None
    if condition is Condition.UNKNOWN:
        return track, None
    clear_since = track.clear_since if track.clear_since is not None else at
    if at - clear_since >= clear_for_s:
        return AlertTrack(), Transition(aid, AlertState.RESOLVED, at, starts, at)
    return replace(track, clear_since=clear_since), None
