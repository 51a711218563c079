"""Alertmanager-style grouping as pure functions of the recorded items and the time ``now``.

- A group whose alerts are all new waits ``group_wait`` after its first unsent item, so alerts raised
  together go out together.
- A group already notified (some incident in it was sent as open and has not been sent as resolved) sends
  news — new incidents, escalations, resolutions — at most every ``group_interval``.
- With no news, a group with open incidents repeats them every ``repeat_interval`` (0 = never).

Items are incident notices (`alerting.model.IncidentNotice`). Silences drop items from a notification
without changing the incident; a `resolved` notice goes out only to receivers that were told about the
incident while it was open (and have ``send_resolved``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from alerting.model import IncidentChange, IncidentNotice, IncidentState
from rules.notify.silences import Silence, silenced_by

__all__ = ["FlushPlan", "GroupState", "Item", "ItemStatus", "Reason", "Timings", "due", "latest_by_alert",
           "plan_flush", "plan_repeat"]


class ItemStatus(StrEnum):
    PENDING = "pending"  # recorded, waiting for its group's next notification
    NOTIFIED = "notified"  # put into a queued notification
    SILENCED = "silenced"  # a silence matched when its group was notified
    SKIPPED = "skipped"  # a resolution nobody needs (firing never sent, or send_resolved off)


class Reason(StrEnum):
    NEW = "new"
    UPDATE = "update"
    REPEAT = "repeat"


@dataclass(frozen=True)
class Item:
    """One (incident change, receiver): the unit that is notified at most once."""

    key: str
    receiver: str
    group_key: str
    event: IncidentNotice
    received: float
    status: ItemStatus

    @property
    def order(self) -> tuple[float, int]:
        return self.event.at.timestamp(), _RANK[self.event.change]


@dataclass(frozen=True)
class Timings:
    group_wait: float
    group_interval: float
    repeat_interval: float  # 0: never


@dataclass(frozen=True)
class GroupState:
    first_pending: float | None  # when the oldest unsent item was recorded
    last_flush: float | None  # when the group last produced a notification
    active: bool  # some incident of the group was notified while open and is still open


def due(state: GroupState, t: Timings) -> tuple[float, Reason] | None:
    """When the group should next notify, and why; None when it has nothing to say."""
    if state.first_pending is not None:
        if not state.active or state.last_flush is None:
            return state.first_pending + t.group_wait, Reason.NEW
        return max(state.first_pending, state.last_flush + t.group_interval), Reason.UPDATE
    if state.active and t.repeat_interval > 0 and state.last_flush is not None:
        return state.last_flush + t.repeat_interval, Reason.REPEAT
    return None


def latest_by_alert(items: Iterable[Item]) -> dict[str, Item]:
    """The newest item of each incident (a resolution wins over an opening at the same instant)."""
    out: dict[str, Item] = {}
    for it in items:
        cur = out.get(it.event.id)
        if cur is None or it.order > cur.order:
            out[it.event.id] = it
    return out


def is_active(history: Iterable[Item]) -> bool:
    """Whether some incident's newest settled item is an open one that was notified."""
    settled = latest_by_alert(i for i in history if i.status is not ItemStatus.PENDING)
    return any(_open(i) and i.status is ItemStatus.NOTIFIED for i in settled.values())


@dataclass(frozen=True)
class FlushPlan:
    send: tuple[Item, ...]  # in event time order
    statuses: dict[str, ItemStatus] = field(default_factory=dict)  # new status of every pending item


def plan_flush(pending: Sequence[Item], history: Sequence[Item], send_resolved: bool,
               silences: Sequence[Silence], now: float) -> FlushPlan:
    """Decide, for a group's pending items, which are sent, silenced or skipped."""
    told_firing = {i.event.id for i in history if _open(i) and i.status is ItemStatus.NOTIFIED}
    send: list[Item] = []
    statuses: dict[str, ItemStatus] = {}
    for it in sorted(pending, key=lambda i: i.order):
        if silenced_by(silences, it.event, it.receiver, now) is not None:
            statuses[it.key] = ItemStatus.SILENCED
        elif it.event.change is IncidentChange.RESOLVED and (not send_resolved or it.event.id not in told_firing):
            statuses[it.key] = ItemStatus.SKIPPED
        else:
            statuses[it.key] = ItemStatus.NOTIFIED
            send.append(it)
            if _open(it):
                told_firing.add(it.event.id)
    return FlushPlan(tuple(send), statuses)


def plan_repeat(history: Sequence[Item], silences: Sequence[Silence], now: float) -> tuple[Item, ...]:
    """The still-open, notified, unsilenced incidents of a group, to remind the receiver of."""
    latest = latest_by_alert(i for i in history if i.status is not ItemStatus.PENDING)
    return tuple(sorted((i for i in latest.values()
                         if _open(i) and i.status is ItemStatus.NOTIFIED
                         and silenced_by(silences, i.event, i.receiver, now) is None), key=lambda i: i.order))


_RANK = {IncidentChange.OPENED: 0, IncidentChange.REOPENED: 0, IncidentChange.ESCALATED: 1,
         IncidentChange.RESOLVED: 2, IncidentChange.CASE_CLOSED: 3}


def _open(item: Item) -> bool:
    return item.event.state is IncidentState.OPEN and item.event.change is not IncidentChange.RESOLVED
