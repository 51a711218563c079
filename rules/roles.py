"""Seasonal roles: which role a meter has on a given day (a well that reinjects in summer extracts in
winter). Periods are month-day ranges in the site's local time zone, inclusive at both ends."""

from __future__ import annotations

from datetime import date, datetime, timedelta, tzinfo

from collector.model import Meter, Role

__all__ = ["role_at", "role_on", "roles_constant"]


def _md(d: date) -> str:
    return f"{d.month:02d}-{d.day:02d}"


def role_on(meter: Meter, day: date) -> Role:
    """The meter's role on a local calendar day: the first `roles:` period holding it, else `role`."""
    md = _md(day)
    for p in meter.roles:
        inside = p.start <= md <= p.end if p.start <= p.end else (md >= p.start or md <= p.end)
        if inside:
            return p.role
    return meter.role


def role_at(meter: Meter, when: datetime, tz: tzinfo) -> Role:
    """The meter's role at an instant, judged by the local date in `tz`."""
    if not meter.roles:
        return meter.role
    return role_on(meter, when.astimezone(tz).date())


def roles_constant(meter: Meter, start: datetime, end: datetime, tz: tzinfo) -> bool:
    """True when the meter keeps one role over [start, end] (no seasonal swap inside)."""
    if not meter.roles:
        return True
    d, last = start.astimezone(tz).date(), end.astimezone(tz).date()
    first = role_on(meter, d)
    while d < last:
        d += timedelta(days=1)
        if role_on(meter, d) is not first:
            return False
    return True
