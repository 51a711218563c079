"""Routing: which receivers an alert event goes to, and which notification group it joins. Pure."""

from __future__ import annotations

from collections.abc import Iterable

from rules.notify.event import AlertEvent, AlertState
from rules.notify.settings import Match, ReceiverSettings

__all__ = ["group_key", "matches", "route"]


def matches(match: Match, event: AlertEvent) -> bool:
    """True when the event passes every non-empty condition of `match`."""
    if match.severity and event.severity not in match.severity:
        return False
    if match.min_severity is not None and event.severity.rank < match.min_severity.rank:
        return False
    if match.kind and event.kind not in match.kind:
        return False
    if match.district and event.district not in match.district:
        return False
    if match.site and event.site not in match.site:
        return False
    return not (match.rule and event.rule not in match.rule)


def route(receivers: Iterable[ReceiverSettings], event: AlertEvent) -> list[ReceiverSettings]:
    """The receivers that get this event. `pending` transitions are never notified.

    A `resolved` event is routed even to receivers with ``send_resolved: false``: it ends the alert's
    repeats there, and is recorded as skipped rather than sent.
    """
    if event.state is AlertState.PENDING:
        return []
    return [r for r in receivers if matches(r.match, event)]


def group_key(receiver: ReceiverSettings, event: AlertEvent) -> str:
    """Alerts with the same values of the receiver's `group_by` labels share notifications."""
    return "|".join(f"{label}={event.label(label) or ''}" for label in receiver.group_by)
