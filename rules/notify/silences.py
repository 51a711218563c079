"""Silences: time-boxed matchers that suppress sending (not state). Pure values and matching."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from alerting.model import IncidentNotice
from rules.notify.errors import NotifyError

__all__ = ["Matcher", "Op", "Silence", "silenced_by"]

_MATCHER = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$")


class Op(StrEnum):
    EQ = "="
    NE = "!="
    RE = "=~"
    NRE = "!~"


@dataclass(frozen=True)
class Matcher:
    """``name=value``, ``name!=value``, ``name=~regex`` or ``name!~regex`` on an event label.

    Labels are the notice's fields (site, district, kind, severity, state, change, id — the incident's —,
    rule) and ``receiver``. Regular expressions match the whole value.
    """

    name: str
    op: Op
    value: str

    def __post_init__(self) -> None:
        if self.op in (Op.RE, Op.NRE):
            try:
                re.compile(self.value)
            except re.error as exc:
                raise NotifyError(f"matcher {self}: bad regular expression ({exc})") from None

    @classmethod
    def parse(cls, text: str) -> Matcher:
        m = _MATCHER.match(text)
        if m is None:
            raise NotifyError(f"{text!r} is not a matcher: write e.g. site=hehua-plaza, district=宛城区, "
                              "rule=~balance_.*, severity!=info")
        return cls(m.group(1), Op(m.group(2)), m.group(3).strip("'\""))

    def matches(self, value: str | None) -> bool:
        v = value or ""
        if self.op is Op.EQ:
            return v == self.value
        if self.op is Op.NE:
            return v != self.value
        hit = re.fullmatch(self.value, v) is not None
        return hit if self.op is Op.RE else not hit

    def __str__(self) -> str:
        return f"{self.name}{self.op.value}{self.value}"


@dataclass(frozen=True)
class Silence:
    id: str
    matchers: tuple[Matcher, ...]
    starts_at: float  # Unix seconds
    ends_at: float
    author: str
    comment: str
    created_at: float

    def active(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at

    def matches(self, event: IncidentNotice, receiver: str) -> bool:
        return all(m.matches(receiver if m.name == "receiver" else event.label(m.name)) for m in self.matchers)


def silenced_by(silences: Iterable[Silence], event: IncidentNotice, receiver: str, now: float) -> Silence | None:
    """The first active silence matching the event for this receiver, if any."""
    for s in silences:
        if s.active(now) and s.matches(event, receiver):
            return s
    return None
