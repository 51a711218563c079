"""Incidents and their cases: list with filters, detail with timeline and alerts, the case actions
(acknowledge, note, close, reopen, attach) and the signed evidence package. Same roles and district scoping
as alerts: reading is `viewer`, case actions are `enforcement` of the incident's district (or admin)."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask

from alerting.case import Case, CaseConflict, CaseError, CaseInputError, CaseStatus
from alerting.model import Incident, IncidentKind, IncidentState
from collector.influx.reader import QueryError
from gshp.api.deps import (
    Audit,
    CaseClosed,
    Cases,
    EnforcerScope,
    EvidenceKey,
    Live,
    Reader,
    Rules,
    Scope,
    ServiceClock,
    Settings,
    Store,
    Times,
    ViewerScope,
    Zone,
)
from gshp.api.errors import refused
from gshp.api.incident_views import drained_since_start, incident_detail, incident_out
from gshp.api.models import IncidentDetail, IncidentList, IncidentOut
from gshp.api.params import From, To, parse_time
from gshp.api.views import alert_out
from gshp.live import LiveState
from rules.store import AlertStore

router = APIRouter(tags=["incidents"])


class AckBody(BaseModel):
    comment: str | None = Field(default=None, description="optional, at most 4 000 characters")


class NoteBody(BaseModel):
    text: str = Field(description="at most 4 000 characters")


class CloseBody(BaseModel):
    outcome: str = Field(description="exactly one of confirmed_discharge, no_discharge_found, meter_fault, "
                                     "maintenance, other")
    comment: str = Field(default="", description="at most 4 000 characters")


class ReopenBody(BaseModel):
    reason: str = Field(description="why the verdict is reopened (required, at most 4 000 characters)")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _rank(incident: Incident) -> tuple[int, int, float, float]:
    """Open first, then the most severe, then the largest volume, then the newest."""
    volume = incident.volume_m3.estimate if incident.volume_m3 is not None else 0.0
    return (0 if incident.open else 1, -incident.severity.rank, -volume, -incident.started_at.timestamp())


@router.get("/api/incidents")
def list_incidents(scope: ViewerScope, times: Zone, store: Store, cases: Cases, engine: Rules,
                   state: IncidentState | None = None,
                   case: CaseStatus | None = None, kind: IncidentKind | None = None, district: str | None = None,
                   site: str | None = None, from_: From = None, to: To = None,
                   limit: Annotated[int, Query(ge=1, le=5000)] = 500) -> IncidentList:
    """Open first, then by severity and volume. `from`/`to` keep the incidents whose span overlaps them;
    an unknown value of any filter is 422."""
    shown = {s.id for s in scope.filter(district, site)}
    found = [i for i in store.incidents(state=state, kind=kind, site=site, since=parse_time(from_, "from"),
                                        until=parse_time(to, "to")) if i.site in shown]
    statuses = cases.statuses()
    if case is not None:
        found = [i for i in found if statuses.get(i.id, CaseStatus.NEW) is case]
    found.sort(key=_rank)
    return IncidentList(incidents=[incident_out(i, cases.get(i.id), times, drained_since_start(engine, i))
                                   for i in found[:limit]])


@router.get("/api/incidents/{incident_id}")
def get_incident(incident_id: str, scope: ViewerScope, times: Zone, store: Store, cases: Cases,
                 engine: Rules) -> IncidentDetail:
    """The incident, its case with the full history, its timeline of changes and the alerts behind it."""
    incident = scope.incident(store, incident_id)
    alerts = [alert_out(store, a, times) for a in (store.get(x) for x in incident.alert_ids) if a is not None]
    return incident_detail(incident, cases.get(incident.id), store.incident_changes(incident.id), alerts, times,
                           drained_since_start(engine, incident))


def _act(scope: Scope, times: Times, store: AlertStore, live: LiveState, incident_id: str, action: str,
         change: Callable[[str], Case]) -> IncidentOut:
    """Run one case action on a visible incident: 422 for bad input, 409 when the case's state forbids it."""
    incident = scope.incident(store, incident_id)
    try:
        case = change(incident.id)
    except CaseConflict as exc:
        raise refused(409, "案件状态不允许此操作", str(exc)) from None
    except CaseInputError as exc:
        raise refused(422, "输入不合规", str(exc)) from None
    except CaseError as exc:
        raise refused(500, "案件未能修改", f"the case could not be changed: {exc}") from None
    live.publish("case", {"incident": incident.id, "site": incident.site, "action": action,
                          "status": case.status.value, "by": scope.who.name}, incident.site)
    return incident_out(incident, case, times)


@router.post("/api/incidents/{incident_id}/ack")
def ack_incident(incident_id: str, body: AckBody, scope: EnforcerScope, times: Zone, store: Store, cases: Cases,
                 live: Live) -> IncidentOut:
    """`new → acknowledged` (the first acknowledgement stays; a later one is kept in the history). It silences
    nothing: silences are explicit (`gshp notify silence`)."""
    return _act(scope, times, store, live, incident_id, "ack",
                lambda i: cases.acknowledge(i, scope.actor, _now(), body.comment or None))


@router.post("/api/incidents/{incident_id}/notes")
def note_incident(incident_id: str, body: NoteBody, scope: EnforcerScope, times: Zone, store: Store, cases: Cases,
                  live: Live) -> IncidentOut:
    return _act(scope, times, store, live, incident_id, "note", lambda i: cases.note(i, scope.actor, _now(), body.text))


@router.post("/api/incidents/{incident_id}/close")
def close_incident(incident_id: str, body: CloseBody, scope: EnforcerScope, times: Zone, store: Store, cases: Cases,
                   live: Live, case_closed: CaseClosed) -> IncidentOut:
    """Close with an outcome (exact strings only). A closed case is 409: reopen it first. Once stored, the
    closing is notified (one message naming the outcome)."""
    def close(incident: str) -> Case:
        case = cases.close(incident, scope.actor, _now(), body.outcome, body.comment)
        case_closed(incident, case.outcome.value if case.outcome else body.outcome)
        return case

    return _act(scope, times, store, live, incident_id, "close", close)


@router.post("/api/incidents/{incident_id}/reopen")
def reopen_incident(incident_id: str, body: ReopenBody, scope: EnforcerScope, times: Zone, store: Store,
                    cases: Cases, live: Live) -> IncidentOut:
    """`closed → acknowledged` with a reason; the earlier verdict stays in the history."""
    return _act(scope, times, store, live, incident_id, "reopen",
                lambda i: cases.reopen(i, scope.actor, _now(), body.reason))


@router.post("/api/incidents/{incident_id}/attachments", openapi_extra={"requestBody": {"required": True, "content": {
    t: {"schema": {"type": "string", "format": "binary"}} for t in ("image/jpeg", "image/png", "application/pdf")}}})
async def attach_to_incident(incident_id: str, request: Request, scope: EnforcerScope, times: Zone, store: Store,
                             cases: Cases, live: Live, label: str = "") -> IncidentOut:
    """The request body is the file itself (a photo of the drain, a scanned sample form), its type in
    `Content-Type` (image/jpeg, image/png, application/pdf); `label` says what it shows. Stored in
    `state_dir/attachments` with its SHA-256; at most 10 MB a file."""
    limit = cases.limits.per_file_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise refused(413, f"附件：每个文件最多 {limit} 字节", f"attachment: at most {limit} bytes per file")
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise refused(413, f"附件：每个文件最多 {limit} 字节", f"attachment: at most {limit} bytes per file")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()

    def attach(incident: str) -> Case:
        cases.attach(incident, scope.actor, _now(), bytes(data), content_type, label)
        return cases.get(incident)

    return _act(scope, times, store, live, incident_id, "attach", attach)


@router.get("/api/incidents/{incident_id}/attachments/{attachment_id}", response_class=Response, responses={200: {
    "content": {t: {} for t in ("image/jpeg", "image/png", "application/pdf")}, "description": "the file as kept"}})
def get_attachment(incident_id: str, attachment_id: int, scope: ViewerScope, store: Store, cases: Cases) -> Response:
    """An attachment as it was uploaded (its SHA-256 in `X-Content-SHA256`, checked before it is served)."""
    incident = scope.incident(store, incident_id)
    found = next((a for a in cases.get(incident.id).attachments if a.id == attachment_id), None)
    if found is None:
        raise refused(404, f"事件 {incident_id!r} 没有附件 {attachment_id}",
                      f"no attachment {attachment_id} of incident {incident_id!r}")
    try:
        data = cases.attachment_path(found).read_bytes()
    except OSError as exc:
        raise refused(503, "附件文件无法读取", f"the attachment's file cannot be read: {exc.strerror}") from None
    if hashlib.sha256(data).hexdigest() != found.sha256:
        raise refused(500, "附件文件与登记的 SHA-256 不符",
                      "the attachment's file no longer matches its recorded SHA-256")
    return Response(data, media_type=found.content_type, headers={"X-Content-SHA256": found.sha256})


@router.get("/api/incidents/{incident_id}/evidence", response_class=Response, responses={200: {
    "content": {"application/zip": {}}, "description": "the signed evidence package (docs/evidence.md)"}})
def incident_evidence(incident_id: str, scope: ViewerScope, config: Settings, store: Store, cases: Cases,
                      audit: Audit, reader: Reader, key: EvidenceKey, clock: ServiceClock) -> FileResponse:
    """The evidence package: incident.json, readings.csv, audit.jsonl, report.html and the signed
    manifest.json; check it with `gshp evidence verify FILE.zip --key KEY.pem`. Built in a temporary file
    (a long incident's readings need not fit in memory), removed once sent."""
    from gshp.evidence.incident import export_incident  # imports pandas: only when a package is asked for

    incident = scope.incident(store, incident_id)
    with tempfile.NamedTemporaryFile(prefix="gshp-evidence-", suffix=".zip", delete=False) as f:
        path = Path(f.name)
        try:
            export_incident(incident.id, f, config=config, store=store, cases=cases, audit=audit, reader=reader,
                            key=key, now=clock.now())
        except QueryError as exc:
            path.unlink()
            raise refused(503, "读数暂不可用", f"the readings are unavailable: {exc}") from None
        except BaseException:
            path.unlink()
            raise
    name = f"gshp-evidence-{incident.id}.zip"
    return FileResponse(path, media_type="application/zip", background=BackgroundTask(path.unlink, missing_ok=True),
                        headers={"Content-Disposition": "attachment; filename=\"gshp-evidence.zip\"; "
                                                        f"filename*=UTF-8''{quote(name)}"})
