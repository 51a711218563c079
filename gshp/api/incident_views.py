"""Incidents and their cases as the API answers them: every time in the configured zone."""

from __future__ import annotations

from typing import Any

from alerting.case import Case
from alerting.model import Incident, IncidentKind
from gshp.api.deps import Times
from gshp.api.models import (
    AlertOut,
    AttachmentOut,
    CaseEntryOut,
    CaseOut,
    Claim,
    IncidentDetail,
    IncidentOut,
    TimelineEntry,
    Volume,
)
from gshp.api.views import drained_out
from rules.engine import Engine

__all__ = ["case_out", "drained_since_start", "incident_detail", "incident_out"]


def case_out(case: Case, times: Times) -> CaseOut:
    d = case.to_dict()
    return CaseOut(
        status=d["status"], outcome=d["outcome"], acked_by=d["acked_by"], acked_at=times.maybe(d["acked_at"]),
        closed_by=d["closed_by"], closed_at=times.maybe(d["closed_at"]),
        history=[CaseEntryOut.model_validate({**e, "at": times.at(e["at"])}) for e in d["history"]],
        attachments=[AttachmentOut.model_validate({**a, "at": times.at(a["at"])}) for a in d["attachments"]])


def drained_since_start(engine: Engine, incident: Incident) -> dict[str, Any] | None:
    """While a discharge incident is open, the water its site drained since it began (from the engine's
    ledgers). Other kinds get none: a reminder or a meter fault says nothing about drained water."""
    if not incident.open or incident.kind is not IncidentKind.DISCHARGE:
        return None
    return engine.volumes_since(incident.site, incident.started_at)


def incident_out(incident: Incident, case: Case, times: Times, drained: dict[str, Any] | None = None) -> IncidentOut:
    d = incident.to_dict()
    return IncidentOut.model_validate({
        **d, **{k: times.maybe(d[k]) for k in ("started_at", "first_firing_at", "ended_at", "updated_at")},
        "maintenance_claims": [Claim.model_validate({**c, "from": times.at(c["from"]), "to": times.at(c["to"]),
                                                     "declared_at": times.at(c["declared_at"])})
                               for c in d["maintenance_claims"]],
        "case": case_out(case, times), "drained": drained_out(drained, times)})


def incident_detail(incident: Incident, case: Case, changes: list[dict[str, Any]], alerts: list[AlertOut],
                    times: Times, drained: dict[str, Any] | None = None) -> IncidentDetail:
    timeline = [TimelineEntry(change=c["change"], at=times.at(c["at"]), severity=c["incident"]["severity"],
                              volume_m3=None if c["incident"].get("volume_m3") is None else
                              Volume.model_validate(c["incident"]["volume_m3"]),
                              peak_deficit_pct=c["incident"].get("peak_deficit_pct")) for c in changes]
    return IncidentDetail(**incident_out(incident, case, times, drained).model_dump(by_alias=True), timeline=timeline,
                          alerts=alerts)
