"""Routing: which receivers an incident notice goes to, and which notification group it joins. Pure."""

from __future__ import annotations

from collections.abc import Iterable

from alerting.model import IncidentKind, IncidentNotice
from rules.notify.settings import Match, ReceiverSettings

__all__ = ["group_key", "matches", "route"]


def matches(match: Match, event: IncidentNotice) -> bool:
    """True when the notice passes every non-empty condition of `match` (`kind: data_quality` stands for
    the evasion and meter-fault incidents; `rule` matches when any rule of the incident is listed)."""
    if match.severity and event.severity not in match.severity:
        return False
    if match.min_severity is not None and event.severity.rank < match.min_severity.rank:
        return False
    if match.kind and event.kind.value not in match.kind and not (
            "data_quality" in match.kind and event.kind in (IncidentKind.EVASION, IncidentKind.METER_FAULT)):
        return False
    if match.district and event.district not in match.district:
        return False
    if match.site and event.site not in match.site:
        return False
    return not (match.rule and not set(event.incident.rules) & set(match.rule))


def route(receivers: Iterable[ReceiverSettings], event: IncidentNotice) -> list[ReceiverSettings]:
    """The receivers that get this notice.

    A `resolved` notice is routed even to receivers with ``send_resolved: false``: it ends the incident's
    repeats there, and is recorded as skipped rather than sent.
    """
    return [r for r in receivers if matches(r.match, event)]


def group_key(receiver: ReceiverSettings, event: IncidentNotice) -> str:
    """Notices with the same values of the receiver's `group_by` labels share notifications."""
    return "|".join(f"{label}={event.label(label) or ''}" for label in receiver.group_by)
