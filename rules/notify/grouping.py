"""Alertmanager-style grouping as pure functions of the recorded items and the time ``now``.

- A group whose alerts are all new waits ``group_wait`` after its first unsent item, so alerts raised
  together go out together.
- A group already notified (some alert in it was sent as firing and has not been sent as resolved) sends
  news — new alerts, resolutions — at most every ``group_interval``.
- With no news, a group with firing alerts repeats them every ``repeat_interval`` (0 = never).

Silences drop items from a notification without changing the alert's state; a `resolved` item goes
out only to receivers that were told about the firing (and have ``send_resolved``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from rules.notify.event import AlertEvent, AlertState
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
    """One (alert id, state, receiver): the unit that is notified at most once."""

    key: str
    receiver: str
    group_key: str
    event: AlertEvent
    received: float
    status: ItemStatus

    @property
    def order(self) -> tuple[float, int]:
        return self.event.at.timestamp(), 1 if self.event.state is AlertState.RESOLVED else 0


@dataclass(frozen=True)
class Timings:
    group_wait: float
    group_interval: float
    repeat_interval: float  # 0: never


@dataclass(frozen=True)
class GroupState:
    first_pending: float | None  # when the oldest unsent item was recorded
    last_flush: float | None  # when the group last produced a notification
    active: bool  # some alert of the group was notified as firing and is still firing


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
    """The newest item of each alert id (a resolution wins over a firing at the same instant)."""
    out: dict[str, Item] = {}
    for it in items:
        cur = out.get(it.event.id)
        if cur is None or it.order > cur.order:
            out[it.event.id] = it
    return out


def is_active(history: Iterable[Item]) -> bool:
    """Whether some alert's newest settled item is a firing that was notified."""
    settled = latest_by_alert(i for i in history if i.status is not ItemStatus.PENDING)
    return any(i.event.state is AlertState.FIRING and i.status is ItemStatus.NOTIFIED for i in settled.values())


@dataclass(frozen=True)
class FlushPlan:
    send: tuple[Item, ...]  # in event time order
    statuses: dict[str, ItemStatus] = field(default_factory=dict)  # new status of every pending item


def plan_flush(pending: Sequence[Item], history: Sequence[Item], send_resolved: bool,
               silences: Sequence[Silence], now: float) -> FlushPlan:
    """Decide, for a group's pending items, which are sent, silenced or skipped."""
    told_firing = {i.event.id for i in history
                   if i.event.state is AlertState.FIRING and i.status is ItemStatus.NOTIFIED}
    send: list[Item] = []
    statuses: dict[str, ItemStatus] = {}
    for it in sorted(pending, key=lambda i: i.order):
        if silenced_by(silences, it.event, it.receiver, now) is not None:
            statuses[it.key] = ItemStatus.SILENCED
        elif it.event.state is AlertState.RESOLVED and (not send_resolved or it.event.id not in told_firing):
            statuses[it.key] = ItemStatus.SKIPPED
        else:
            statuses[it.key] = ItemStatus.NOTIFIED
            send.append(it)
            if it.event.state is AlertState.FIRING:
                told_firing.add(it.event.id)
    return FlushPlan(tuple(send), statuses)


def plan_repeat(history: Sequence[Item], silences: Sequence[Silence], now: float) -> tuple[Item, ...]:
    """The still-firing, notified, unsilenced alerts of a group, to remind the receiver of."""
    latest = latest_by_alert(i for i in history if i.status is not ItemStatus.PENDING)
    return tuple(sorted((i for i in latest.values()
                         if i.event.state is AlertState.FIRING and i.status is ItemStatus.NOTIFIED
                         and silenced_by(silences, i.event, i.receiver, now) is None), key=lambda i: i.order))
