"""The alert event as notifiers see it: the rule engine's JSON object, validated, extra keys kept."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from alerting.model import AlertKind as Kind
from alerting.model import AlertState, Severity
from rules.notify.errors import NotifyError

__all__ = ["AlertEvent", "AlertState", "Kind", "Severity", "parse_event", "sample_event"]


class Evidence(BaseModel):
    """What the alert rests on. Balance rules fill the volumes; data-quality rules may leave them out."""

    model_config = ConfigDict(frozen=True, extra="allow")

    window: str | None = None
    extracted_m3: float | None = None
    reinjected_m3: float | None = None
    deficit_m3: float | None = None
    deficit_pct: float | None = None
    threshold_pct: float | None = None


class AlertEvent(BaseModel):
    """One alert transition. `id` is stable for one episode of (site, rule); `at` is when it happened."""

    model_config = ConfigDict(frozen=True, extra="allow")

    id: str = Field(min_length=1, max_length=200)
    site: str = Field(min_length=1)
    site_name: str = ""
    district: str = ""
    rule: str = Field(min_length=1)
    kind: Kind
    severity: Severity
    state: AlertState
    at: AwareDatetime
    starts_at: AwareDatetime
    ends_at: AwareDatetime | None = None
    summary: str = ""
    evidence: Evidence = Evidence()

    @property
    def key_for(self) -> str:
        """The part of the idempotency key that names this transition: ``<id>:<state>``."""
        return f"{self.id}:{self.state.value}"

    def label(self, name: str) -> str | None:
        """A top-level field as text, for routing and silence matchers (``None`` when absent)."""
        value = getattr(self, name, None) if name in type(self).model_fields else (self.model_extra or {}).get(name)
        if value is None:
            return None
        return value.value if isinstance(value, StrEnum) else str(value)

    def to_json(self) -> dict[str, Any]:
        """The event as the rule engine sent it (times back in ISO-8601, extra keys included)."""
        return self.model_dump(mode="json", exclude_none=False)


def parse_event(data: dict[str, Any] | AlertEvent) -> AlertEvent:
    """Validate an event dict; raise `NotifyError` naming every bad field."""
    if isinstance(data, AlertEvent):
        return data
    try:
        return AlertEvent.model_validate(data)
    except ValidationError as err:
        fields = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors())
        raise NotifyError(f"not an alert event ({fields})") from None


def sample_event(site: str = "hehua-plaza", site_name: str = "向阳荷花广场", district: str = "宛城区",
                 at: datetime | None = None) -> dict[str, Any]:
    """A realistic firing discharge event in the full shape, for `gshp notify test` and the docs."""
    from datetime import UTC, timedelta

    at = (at or datetime.now(UTC)).replace(microsecond=0)
    starts = at - timedelta(minutes=40)
    return {
        "id": f"{site}:balance_1h:{int(starts.timestamp())}",
        "site": site,
        "site_name": site_name,
        "district": district,
        "rule": "balance_1h",
        "kind": "discharge",
        "severity": "critical",
        "state": "firing",
        "at": at.isoformat(),
        "starts_at": starts.isoformat(),
        "ends_at": None,
        "summary": f"{site_name} 近1小时抽水120.0 m³，回灌100.0 m³，差额20.0 m³ (16.7%)",
        "evidence": {"window": "1h", "extracted_m3": 120.0, "reinjected_m3": 100.0, "deficit_m3": 20.0,
                     "deficit_pct": 16.7, "threshold_pct": 5.0},
        "test": True,
    }
