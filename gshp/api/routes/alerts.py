"""Window alerts: list with filters, detail with transitions, and enforcement's acknowledge, notes and close.
The audit chain (admin) lists every write."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from alerting.model import AlertKind, AlertState, Severity
from gshp.api.deps import Admin, Audit, EnforcerScope, Live, Store, ViewerScope, Zone
from gshp.api.models import AlertDetail, AlertList, AlertOut, AuditEntry, AuditPage
from gshp.api.params import From, To, parse_time
from gshp.api.views import alert_out, transition_out
from rules import audited

router = APIRouter(tags=["api"])


class AckBody(BaseModel):
    comment: str | None = Field(default=None, max_length=2000)


class NoteBody(BaseModel):
    text: str = Field(min_length=1, max_length=2000)


class Outcome(StrEnum):
    CONFIRMED_DISCHARGE = "confirmed_discharge"  # 现场核查确认外排
    NO_DISCHARGE = "no_discharge"  # 现场核查未发现外排
    METER_FAULT = "meter_fault"  # 仪表故障
    MAINTENANCE = "maintenance"  # 维护（回扬）
    OTHER = "other"


class CloseBody(BaseModel):
    outcome: Outcome | str = Field(description="confirmed_discharge | no_discharge | meter_fault | maintenance | "
                                               "other, or free text")
    text: str = Field(default="", max_length=2000)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@router.get("/api/alerts")
def list_alerts(scope: ViewerScope, times: Zone, store: Store, state: AlertState | None = None,
                kind: AlertKind | None = None, severity: Severity | None = None, district: str | None = None,
                site: str | None = None, from_: From = None, to: To = None,
                limit: Annotated[int, Query(ge=1, le=5000)] = 200) -> AlertList:
    """Newest first. `from`/`to` bound the start time; an unknown value of any filter is 422."""
    start, stop = parse_time(from_, "from"), parse_time(to, "to")
    shown = {s.id for s in scope.filter(district, site)}
    out = []
    for a in reversed(store.history(site)):
        if a.site not in shown:
            continue
        if (state and a.state != state) or (kind and a.kind != kind) or (severity and a.severity != severity):
            continue
        if (start and a.starts_at < start) or (stop and a.starts_at >= stop):
            continue
        out.append(alert_out(store, a, times))
        if len(out) >= limit:
            break
    return AlertList(alerts=out)


@router.get("/api/alerts/{alert_id}")
def get_alert(alert_id: str, scope: ViewerScope, times: Zone, store: Store) -> AlertDetail:
    a = scope.alert(store, alert_id)
    return AlertDetail(**alert_out(store, a, times).model_dump(),
                       transitions=[transition_out(t, times) for t in store.transitions(a.id)])


@router.post("/api/alerts/{alert_id}/ack")
def ack_alert(alert_id: str, body: AckBody, scope: EnforcerScope, times: Zone, store: Store, audit: Audit,
              live: Live) -> AlertOut:
    """Acknowledge (the first acknowledgement stays); it silences nothing (silences are explicit)."""
    a, who = scope.alert(store, alert_id), scope.who
    audited.acknowledge_alert(store, audit, scope.actor, a.id, _now(), body.comment or None)
    live.publish("ack", {"id": a.id, "site": a.site, "by": who.name}, a.site)
    return alert_out(store, scope.alert(store, alert_id), times)


@router.post("/api/alerts/{alert_id}/notes")
def annotate_alert(alert_id: str, body: NoteBody, scope: EnforcerScope, times: Zone, store: Store,
                   audit: Audit) -> AlertOut:
    a = scope.alert(store, alert_id)
    audited.annotate_alert(store, audit, scope.actor, a.id, _now(), body.text)
    return alert_out(store, scope.alert(store, alert_id), times)


@router.post("/api/alerts/{alert_id}/close")
def close_alert(alert_id: str, body: CloseBody, scope: EnforcerScope, times: Zone, store: Store,
                audit: Audit) -> AlertOut:
    a = scope.alert(store, alert_id)
    outcome = body.outcome.value if isinstance(body.outcome, Outcome) else body.outcome
    audited.close_alert(store, audit, scope.actor, a.id, _now(), outcome, body.text)
    return alert_out(store, scope.alert(store, alert_id), times)


@router.get("/api/audit")
def audit_entries(who: Admin, times: Zone, audit: Audit,
                  limit: Annotated[int, Query(ge=1, le=5000)] = 200) -> AuditPage:
    return AuditPage(entries=[AuditEntry.model_validate({**e, "at": times.at(e["at"])})
                              for e in audit.entries(limit)])
