"""The one typed model of alerts and incidents, shared by the engine, the stores, replay, the API, the board
and the notifiers.

An `Alert` is one rule's verdict over one episode of (site, rule), seen at one transition (pending, firing,
resolved); its `to_dict()` is the alert event JSON of `/api/alerts`, `gshp replay` and the board. An
`Incident` is what people work with: one per site, kind and episode, holding its alerts as evidence, the
estimated onset, the discharged volume with its uncertainty band and a severity that only rises while it is
open. An `IncidentNotice` is one message-worthy change of an incident (opened, escalated, resolved, case
closed): what the notifiers send.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

__all__ = [
    "Alert",
    "AlertKind",
    "AlertState",
    "Incident",
    "IncidentChange",
    "IncidentKind",
    "IncidentNotice",
    "IncidentState",
    "Language",
    "MaintenanceClaim",
    "ModelError",
    "Severity",
    "VolumeEstimate",
    "iso",
    "parse_time",
]


class ModelError(ValueError):
    """A stored or received object does not fit the model."""


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """Higher is more severe: info 0 < warning 1 < high 2 < critical 3."""
        return _RANK[self]

    @staticmethod
    def highest(*severities: Severity) -> Severity:
        return max(severities, key=lambda s: s.rank)


_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.HIGH: 2, Severity.CRITICAL: 3}


class Language(StrEnum):
    ZH = "zh"
    EN = "en"


class AlertKind(StrEnum):
    """What an alert's rule watches: the water balance, the data the balance rests on, or the permit."""

    DISCHARGE = "discharge"
    DATA_QUALITY = "data_quality"
    COMPLIANCE = "compliance"


class AlertState(StrEnum):
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


class IncidentKind(StrEnum):
    DISCHARGE = "discharge"  # balance windows, CUSUM, discharge-pipe flow
    EVASION = "evasion"  # reinjection silent while extracting, frozen, reversed, meter changed
    METER_FAULT = "meter_fault"  # offline, signal, error codes
    COMPLIANCE = "compliance"  # permit rules (quota, rate, sealed wells)
    CALIBRATION = "calibration"  # a meter's calibration certificate past due (a reminder)


class IncidentState(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class IncidentChange(StrEnum):
    """The changes of an incident that are worth one message each."""

    OPENED = "opened"
    REOPENED = "reopened"  # recurrence within the quiet period
    ESCALATED = "escalated"  # severity went up
    RESOLVED = "resolved"
    CASE_CLOSED = "case_closed"


def iso(t: datetime) -> str:
    """ISO-8601 with an explicit offset, seconds precision."""
    return t.isoformat(timespec="seconds")


def parse_time(text: str) -> datetime:
    t = datetime.fromisoformat(text)
    if t.tzinfo is None:
        raise ModelError(f"time {text!r} has no UTC offset")
    return t


def _opt_time(text: Any) -> datetime | None:
    return None if text is None else parse_time(str(text))


def _dumps(data: Mapping[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), sort_keys=False)


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert transition. `id` is stable for one episode of (site, rule); `at` is when it happened."""

    id: str
    site: str
    site_name: str
    district: str
    rule: str
    kind: AlertKind
    severity: Severity
    state: AlertState
    at: datetime
    starts_at: datetime
    ends_at: datetime | None
    summary: str
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "site": self.site, "site_name": self.site_name, "district": self.district,
            "rule": self.rule, "kind": self.kind.value, "severity": self.severity.value, "state": self.state.value,
            "at": iso(self.at), "starts_at": iso(self.starts_at),
            "ends_at": iso(self.ends_at) if self.ends_at is not None else None,
            "summary": self.summary, "evidence": dict(self.evidence),
        }

    def to_json(self) -> str:
        return _dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Alert:
        """The inverse of `to_dict` (extra keys ignored); raises `ModelError` naming what is wrong."""
        try:
            return cls(id=str(d["id"]), site=str(d["site"]), site_name=str(d.get("site_name", "")),
                       district=str(d.get("district", "")), rule=str(d["rule"]), kind=AlertKind(d["kind"]),
                       severity=Severity(d["severity"]), state=AlertState(d["state"]), at=parse_time(d["at"]),
                       starts_at=parse_time(d["starts_at"]), ends_at=_opt_time(d.get("ends_at")),
                       summary=str(d.get("summary", "")), evidence=dict(d.get("evidence") or {}))
        except (KeyError, ValueError, TypeError) as exc:
            raise ModelError(f"not an alert: {type(exc).__name__} {exc}") from None


@dataclass(frozen=True, slots=True)
class VolumeEstimate:
    """Discharged volume in m³: the estimate and the band the meters' accuracy allows (low ≤ est ≤ high)."""

    estimate: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        return {"estimate": round(self.estimate, 3), "low": round(self.low, 3), "high": round(self.high, 3)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> VolumeEstimate:
        return cls(float(d["estimate"]), float(d["low"]), float(d["high"]))


@dataclass(frozen=True, slots=True)
class MaintenanceClaim:
    """A maintenance window declared while the incident was open: recorded for the officer to judge; it
    never resolves or shrinks the incident."""

    starts_at: datetime
    ends_at: datetime
    reason: str
    volume_cap_m3: float
    declared_by: str
    declared_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"from": iso(self.starts_at), "to": iso(self.ends_at), "reason": self.reason,
                "volume_cap_m3": self.volume_cap_m3, "declared_by": self.declared_by,
                "declared_at": iso(self.declared_at)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MaintenanceClaim:
        return cls(parse_time(d["from"]), parse_time(d["to"]), str(d["reason"]), float(d["volume_cap_m3"]),
                   str(d["declared_by"]), parse_time(d["declared_at"]))


@dataclass(frozen=True, slots=True)
class Incident:
    """One episode of one kind at one site, with its alerts as evidence.

    `started_at` is the estimated onset (back-dated from the windows/CUSUM that fired), `first_firing_at`
    when its first alert fired, `ended_at` when its last alert resolved (None while open). `rules` holds,
    per rule, the latest figures that rule reported; `summary` the one-line text per language;
    `volume_basis` the figures the volume estimate rests on (volumes, baseline, accuracy, span).
    """

    id: str
    site: str
    site_name: str
    district: str
    kind: IncidentKind
    severity: Severity
    state: IncidentState
    started_at: datetime
    first_firing_at: datetime
    ended_at: datetime | None
    updated_at: datetime
    volume_m3: VolumeEstimate | None
    peak_deficit_pct: float | None
    mean_deficit_pct: float | None
    rules: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    alert_ids: tuple[str, ...] = ()
    meters: tuple[str, ...] = ()
    maintenance_claims: tuple[MaintenanceClaim, ...] = ()
    summary: Mapping[str, str] = field(default_factory=dict)
    episodes: int = 1  # 1 + how often a recurrence within the quiet period reopened it
    volume_basis: Mapping[str, Any] = field(default_factory=dict)  # how `volume_m3` was computed

    @property
    def open(self) -> bool:
        return self.state is IncidentState.OPEN

    def text(self, language: Language | str) -> str:
        """The summary in one language (the other one when it is missing)."""
        return self.summary.get(str(language)) or next(iter(self.summary.values()), "")

    def with_(self, **changes: Any) -> Incident:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "site": self.site, "site_name": self.site_name, "district": self.district,
            "kind": self.kind.value, "severity": self.severity.value, "state": self.state.value,
            "started_at": iso(self.started_at), "first_firing_at": iso(self.first_firing_at),
            "ended_at": iso(self.ended_at) if self.ended_at is not None else None,
            "updated_at": iso(self.updated_at),
            "volume_m3": None if self.volume_m3 is None else self.volume_m3.to_dict(),
            "peak_deficit_pct": self.peak_deficit_pct, "mean_deficit_pct": self.mean_deficit_pct,
            "rules": {k: dict(v) for k, v in self.rules.items()}, "alert_ids": list(self.alert_ids),
            "meters": list(self.meters), "maintenance_claims": [c.to_dict() for c in self.maintenance_claims],
            "summary": dict(self.summary), "episodes": self.episodes, "volume_basis": dict(self.volume_basis),
        }

    def to_json(self) -> str:
        return _dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Incident:
        try:
            vol = d.get("volume_m3")
            return cls(
                id=str(d["id"]), site=str(d["site"]), site_name=str(d.get("site_name", "")),
                district=str(d.get("district", "")), kind=IncidentKind(d["kind"]),
                severity=Severity(d["severity"]), state=IncidentState(d["state"]),
                started_at=parse_time(d["started_at"]), first_firing_at=parse_time(d["first_firing_at"]),
                ended_at=_opt_time(d.get("ended_at")), updated_at=parse_time(d["updated_at"]),
                volume_m3=None if vol is None else VolumeEstimate.from_dict(vol),
                peak_deficit_pct=d.get("peak_deficit_pct"), mean_deficit_pct=d.get("mean_deficit_pct"),
                rules={str(k): dict(v) for k, v in (d.get("rules") or {}).items()},
                alert_ids=tuple(d.get("alert_ids") or ()), meters=tuple(d.get("meters") or ()),
                maintenance_claims=tuple(MaintenanceClaim.from_dict(c) for c in d.get("maintenance_claims") or ()),
                summary={str(k): str(v) for k, v in (d.get("summary") or {}).items()},
                episodes=int(d.get("episodes", 1)), volume_basis=dict(d.get("volume_basis") or {}))
        except (KeyError, ValueError, TypeError) as exc:
            raise ModelError(f"not an incident: {type(exc).__name__} {exc}") from None


_LABELS = frozenset({"id", "site", "site_name", "district", "kind", "severity", "state"})


@dataclass(frozen=True, slots=True)
class IncidentNotice:
    """One message-worthy change of an incident, as the notifiers send it. `key` is its idempotency key:
    the same change of the same incident is notified once, whatever re-submits it."""

    change: IncidentChange
    at: datetime
    incident: Incident
    outcome: str | None = None  # how the case was closed (CASE_CLOSED only)
    link: str | None = None  # the incident page (`api.public_url` + `/incidents/{id}`)

    @property
    def id(self) -> str:
        return self.incident.id

    @property
    def site(self) -> str:
        return self.incident.site

    @property
    def site_name(self) -> str:
        return self.incident.site_name

    @property
    def district(self) -> str:
        return self.incident.district

    @property
    def kind(self) -> IncidentKind:
        return self.incident.kind

    @property
    def severity(self) -> Severity:
        return self.incident.severity

    @property
    def state(self) -> IncidentState:
        return self.incident.state

    def label(self, name: str) -> str | None:
        """A field as text for routing, grouping and silence matchers: id, site, site_name, district, kind,
        severity, state, change, rule (any rule of the incident: the first), outcome; None when absent."""
        if name == "change":
            return self.change.value
        if name == "outcome":
            return self.outcome
        if name == "rule":
            return next(iter(self.incident.rules), None)
        value = getattr(self.incident, name, None) if name in _LABELS else None
        if value is None:
            return None
        return value.value if isinstance(value, StrEnum) else str(value)

    @property
    def key(self) -> str:
        if self.change is IncidentChange.ESCALATED:
            return f"{self.incident.id}:{self.change.value}:{self.incident.severity.value}"
        return f"{self.incident.id}:{self.change.value}:{int(self.at.timestamp())}"

    def to_dict(self) -> dict[str, Any]:
        return {"change": self.change.value, "at": iso(self.at), "incident": self.incident.to_dict(),
                "outcome": self.outcome, "link": self.link}

    def to_json(self) -> str:
        return _dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> IncidentNotice:
        try:
            return cls(IncidentChange(d["change"]), parse_time(d["at"]), Incident.from_dict(d["incident"]),
                       d.get("outcome"), d.get("link"))
        except (KeyError, ValueError, TypeError) as exc:
            raise ModelError(f"not an incident notice: {type(exc).__name__} {exc}") from None
