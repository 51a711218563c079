"""What notifiers send: `alerting.model.IncidentNotice` — one message per incident change (opened,
reopened, escalated, resolved, case closed), never one per window alert."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from alerting.model import (
    Incident,
    IncidentChange,
    IncidentKind,
    IncidentNotice,
    IncidentState,
    ModelError,
    Severity,
    VolumeEstimate,
)
from rules.notify.errors import NotifyError

__all__ = ["IncidentNotice", "parse_event", "sample_event"]


def parse_event(data: Mapping[str, Any] | IncidentNotice) -> IncidentNotice:
    """A notice from its JSON object (or itself); raise `NotifyError` naming what is wrong."""
    if isinstance(data, IncidentNotice):
        return data
    try:
        return IncidentNotice.from_dict(data)
    except ModelError as exc:
        raise NotifyError(str(exc)) from None


def sample_event(site: str = "hehua-plaza", site_name: str = "向阳荷花广场", district: str = "宛城区",
                 at: datetime | None = None) -> dict[str, Any]:
    """A realistic notice of an opened discharge incident, for `gshp notify test` and the docs."""
    from datetime import UTC

    at = (at or datetime.now(UTC)).replace(microsecond=0)
    started = at - timedelta(minutes=40)
    incident = Incident(
        id=f"sample-{site}", site=site, site_name=site_name, district=district, kind=IncidentKind.DISCHARGE,
        severity=Severity.HIGH, state=IncidentState.OPEN, started_at=started,
        first_firing_at=at - timedelta(minutes=10), ended_at=None, updated_at=at,
        volume_m3=VolumeEstimate(26.7, 22.1, 31.3), peak_deficit_pct=39.8, mean_deficit_pct=38.9,
        rules={"balance_gross": {"window": "15m", "extracted_m3": 30.0, "reinjected_m3": 18.1, "deficit_m3": 11.9,
                                 "deficit_pct": 39.8, "threshold_pct": 12.0}},
        alert_ids=("sample-alert",), meters=("E1", "R1"),
        summary={"zh": f"{site_name} 疑似外排，估计外排约27 m³（22–31 m³），平均差额38.9%",
                 "en": f"{site_name}: suspected discharge, about 27 m³ (22–31 m³), mean deficit 38.9%"})
    return IncidentNotice(IncidentChange.OPENED, at, incident).to_dict()
