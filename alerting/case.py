"""The case an incident carries for enforcement: status, outcome, append-only history, attachments.

Frozen values with their enums and the three errors of the case layer. Outcomes are exact strings: a value
that only looks like one (a zero-width space, full-width letters, another Unicode form) is refused with a
message that says what it resembles, never silently mapped.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = ["Attachment", "Case", "CaseAction", "CaseConflict", "CaseEntry", "CaseError", "CaseInputError",
           "CaseStatus", "Outcome", "check_text"]


class CaseError(Exception):
    """A case operation failed (the base of the case layer's errors)."""


class CaseInputError(CaseError):
    """The input is not acceptable (an unknown outcome, a note too long, an attachment of the wrong type)."""


class CaseConflict(CaseError):
    """The case is not in a state that allows this (e.g. closing a closed case): the API answers 409."""


class CaseStatus(StrEnum):
    NEW = "new"  # 待处理
    ACKNOWLEDGED = "acknowledged"  # 已确认
    CLOSED = "closed"  # 已结案


class CaseAction(StrEnum):
    ACK = "ack"
    NOTE = "note"
    CLOSE = "close"
    REOPEN = "reopen"
    ATTACH = "attach"


class Outcome(StrEnum):
    CONFIRMED_DISCHARGE = "confirmed_discharge"  # 现场核查确认外排
    NO_DISCHARGE_FOUND = "no_discharge_found"  # 现场核查未发现外排
    METER_FAULT = "meter_fault"  # 仪表故障
    MAINTENANCE = "maintenance"  # 维护（回扬）
    OTHER = "other"  # 其他

    @classmethod
    def parse(cls, value: object) -> Outcome:
        """The outcome named exactly by `value`; anything else raises `CaseInputError` naming the choices."""
        choices = ", ".join(o.value for o in cls)
        if not isinstance(value, str):
            raise CaseInputError(f"outcome: give one of {choices}")
        for o in cls:
            if value == o.value:
                return o
        shown = ascii(value[:60])
        folded = "".join(c for c in unicodedata.normalize("NFKC", value)
                         if unicodedata.category(c) not in ("Cf", "Cc", "Zs")).strip().lower()
        for o in cls:
            if folded == o.value:
                raise CaseInputError(f"outcome {shown} only looks like {o.value!r} (it holds other characters: "
                                     f"hidden, full-width or another Unicode form); write exactly {o.value}")
        raise CaseInputError(f"outcome {shown} is not known: give one of {choices}")


MAX_TEXT = 4000
"""Longest note, comment or reopen reason, in characters."""

_ALLOWED_CONTROLS = frozenset("\n\r\t")
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")


def check_text(name: str, value: str, *, required: bool = False, limit: int = MAX_TEXT) -> str:
    """`value` if it is a plain text of at most `limit` characters: control characters (except new lines and
    tabs) and bidirectional overrides are refused, since they hide or reorder what a reader sees."""
    if len(value) > limit:
        raise CaseInputError(f"{name}: at most {limit} characters (got {len(value)})")
    for i, c in enumerate(value):
        if (unicodedata.category(c) == "Cc" and c not in _ALLOWED_CONTROLS) or c in _BIDI:
            raise CaseInputError(f"{name}: control character U+{ord(c):04X} at position {i} is not allowed")
    if required and not value.strip():
        raise CaseInputError(f"{name}: must not be empty")
    return value


@dataclass(frozen=True, slots=True)
class CaseEntry:
    """One append-only history entry: who did what when, the case before and after, and what was given."""

    seq: int
    incident_id: str
    at: str  # ISO-8601 UTC
    actor: str
    action: CaseAction
    before: dict[str, Any]
    after: dict[str, Any]
    detail: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "at": self.at, "by": self.actor, "action": self.action.value,
                "before": self.before, "after": self.after, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Attachment:
    """A stored attachment: its content is the file `stored_as` under the attachment directory, named by the
    service (never by the uploader), with its SHA-256."""

    id: int
    incident_id: str
    sha256: str
    size: int
    content_type: str
    label: str
    stored_as: str
    added_by: str
    added_at: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "sha256": self.sha256, "size": self.size, "content_type": self.content_type,
                "label": self.label, "by": self.added_by, "at": self.added_at}


@dataclass(frozen=True, slots=True)
class Case:
    incident_id: str
    status: CaseStatus
    outcome: Outcome | None
    acked_by: str | None
    acked_at: str | None
    closed_by: str | None
    closed_at: str | None
    history: tuple[CaseEntry, ...] = ()
    attachments: tuple[Attachment, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The `case` object of the incident JSON."""
        return {"status": self.status.value, "outcome": self.outcome.value if self.outcome else None,
                "acked_by": self.acked_by, "acked_at": self.acked_at, "closed_by": self.closed_by,
                "closed_at": self.closed_at, "history": [e.to_dict() for e in self.history],
                "attachments": [a.to_dict() for a in self.attachments]}
