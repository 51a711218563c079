"""The API's typed answers (the OpenAPI schema of every route). Times carry the configured zone's offset."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["AlertDetail", "AlertList", "AlertOut", "AlertTransition", "AuditEntry", "AuditPage", "BalancePage",
           "BalancePoint", "ClockOut", "DistrictCount", "Drained", "FlowPoint", "Health", "LatestReading",
           "MaintenanceDeclared", "MaintenanceList", "MaintenanceOut", "MapPage", "MapSite", "MapTiles", "Me",
           "MeterSeries", "MeterStatus", "Note", "OutcomeOut", "ReadingPoint", "ReadingsPage", "SiteDetail",
           "SiteLocation", "SiteSummary", "SitesPage", "WindowBalance"]


class ConfigInUse(BaseModel):
    """The config file the service runs: its SHA-256 and when it was loaded (at start or by a reload)."""

    path: str
    sha256: str
    loaded_at: datetime


class ReloadResult(BaseModel):
    """The last config reload (SIGHUP): refused ones list every problem and keep the service degraded."""

    at: datetime
    ok: bool
    problems: list[str]
    duration_ms: float
    prepare_ms: float
    changes: str | None = None


class Health(BaseModel):
    model_config = ConfigDict(extra="allow")
    status: str
    uptime_s: float
    outbox_depth: int
    config: ConfigInUse | None = None
    reload: ReloadResult | None = None


class ClockOut(BaseModel):
    """The service's clock: `system` (wall time) or `data` (a simulated clock, as in the demo), its time now
    and how many seconds of it pass in a wall-clock second."""

    kind: str
    now: datetime
    speed: float


class Me(BaseModel):
    name: str
    role: str
    districts: list[str] | None
    timezone: str
    version: str
    clock: ClockOut


class WindowBalance(BaseModel):
    """A balance window's volumes; `as_of` (= `end`) is when its data ends, `age_s` how long before the
    service's now, `stale` when that is more than the site's `offline_after` (then never `complete`)."""

    extracted_m3: float
    reinjected_m3: float
    deficit_m3: float
    deficit_pct: float | None
    complete: bool
    end: datetime
    as_of: datetime
    age_s: float | None = None
    stale: bool = False


class ArrivalFigures(BaseModel):
    """Arrival rate (到报率): reports expected by the meters' intervals, those that arrived, the rate in %."""

    expected: int
    arrived: int
    rate_pct: float | None


class ArrivalGap(BaseModel):
    """Slots of a meter's interval in which nothing arrived, [from, to) in the configured zone."""

    model_config = ConfigDict(populate_by_name=True)
    from_: datetime = Field(alias="from")
    to: datetime


class MeterArrival(ArrivalFigures):
    id: str
    role: str
    interval_s: float
    missing: list[ArrivalGap]


class SiteArrival(ArrivalFigures):
    """A site's arrival rate on one local day, per meter and summed."""

    model_config = ConfigDict(populate_by_name=True)
    site: str
    date: str
    timezone: str
    from_: datetime = Field(alias="from")
    to: datetime
    meters: list[MeterArrival]


class Drained(BaseModel):
    """Water drained (extracted − reinjected) from `from` to `as_of`, the end of complete data, from the rule
    engine's ledgers; `complete` when every meter covered it and it is current."""

    model_config = ConfigDict(populate_by_name=True)
    from_: datetime = Field(alias="from")
    as_of: datetime
    extracted_m3: float
    reinjected_m3: float
    drained_m3: float
    drained_pct: float | None
    complete: bool
    age_s: float | None = None  # of `as_of`, at the service's now
    stale: bool = False  # `as_of` older than the site's `offline_after`: not current, never `complete`


class SiteSummary(BaseModel):
    id: str
    name: str
    district: str
    status: str
    last_seen: datetime | None
    age_s: float | None
    extraction_m3h: float | None  # meters offline (newest reading older than `offline_after`) not summed;
    reinjection_m3h: float | None  # None when no meter of that side is online
    flows_as_of: datetime | None = None  # the oldest reading summed into the flows
    flows_age_s: float | None = None  # its age
    flows_complete: bool = False  # every meter of the site summed
    balance: dict[str, WindowBalance | None]
    alerts_firing: int
    arrival: ArrivalFigures | None = None  # today's, its meters summed
    drained_today: Drained | None = None  # since midnight in the configured zone


class DistrictCount(BaseModel):
    district: str
    sites: int
    online: int
    discharge: int
    fault: int
    offline: int
    arrival: ArrivalFigures | None = None  # today's, its sites' meters summed
    drained_today: Drained | None = None  # its sites' summed


class SitesPage(BaseModel):
    now: datetime
    timezone: str
    sites: list[SiteSummary]
    districts: list[DistrictCount]


class LatestReading(BaseModel):
    site: str
    meter: str
    role: str
    ts: datetime
    rate_m3h: float | None
    total_m3: float | None
    signal_pct: float | None
    error_code: int | None


class CalibrationOut(BaseModel):
    """A meter's calibration certificate (检定证书); `overdue` once `next_due` has passed."""

    number: str
    calibrated: date = Field(serialization_alias="date")
    next_due: date
    overdue: bool


class MeterRecordOut(BaseModel):
    """What the bureau keeps about a meter: serial number, model, install date, calibration."""

    serial: str | None
    model: str | None
    installed: date | None
    calibration: CalibrationOut | None


class MeterStatus(BaseModel):
    id: str
    role: str
    source: str | None
    status: str
    latest: LatestReading | None
    arrival_pct: float | None = None  # today's arrival rate (到报率)
    record: MeterRecordOut | None = None


class FlowPoint(BaseModel):
    ts: datetime
    extraction_m3h: float
    reinjection_m3h: float
    deficit_m3h: float


class Note(BaseModel):
    at: datetime
    who: str
    text: str


class OutcomeOut(BaseModel):
    at: datetime
    by: str
    outcome: str
    text: str


class AlertTransition(BaseModel):
    """One alert transition, in the alert event shape."""

    id: str
    site: str
    site_name: str
    district: str
    rule: str
    kind: str
    severity: str
    state: str
    at: datetime
    starts_at: datetime
    ends_at: datetime | None
    summary: str
    summaries: dict[str, str] = Field(description="the summary in every language (zh, en), from the evidence")
    evidence: dict[str, Any]


class AlertOut(AlertTransition):
    acknowledged: bool
    acked_by: str | None
    acked_at: datetime | None
    notes: list[Note]
    outcome: OutcomeOut | None


class AlertDetail(AlertOut):
    transitions: list[AlertTransition]


class AlertList(BaseModel):
    alerts: list[AlertOut]


class MaintenanceOut(BaseModel):
    start: datetime
    end: datetime
    reason: str
    volume_cap_m3: float
    source: str
    declared_by: str | None
    declared_at: datetime | None


class MaintenanceList(BaseModel):
    site: str
    maintenance: list[MaintenanceOut]


class MaintenanceDeclared(MaintenanceList):
    id: int
    claim: bool = Field(description="declared while an incident of the site was open: recorded on it as a "
                                    "claim, it excuses nothing")


class SiteLocation(BaseModel):
    """WGS-84 / CGCS2000 degrees and the street address."""

    lat: float
    lon: float
    address: str | None


class SiteDetail(SiteSummary):
    operator: str | None
    location: SiteLocation | None
    meters: list[MeterStatus]
    history: list[FlowPoint]
    alerts: list[AlertOut]
    maintenance: list[MaintenanceOut]


class ReadingPoint(BaseModel):
    ts: datetime
    rate_m3h: float | None
    total_m3: float | None


class MeterSeries(BaseModel):
    meter: str
    role: str | None
    points: list[ReadingPoint]


class ReadingsPage(BaseModel):
    site: str
    model_config = ConfigDict(populate_by_name=True)
    from_: datetime = Field(alias="from")
    to: datetime
    step_s: int
    meters: list[MeterSeries]


class BalancePoint(BaseModel):
    ts: datetime
    extracted_m3: float | None
    reinjected_m3: float | None
    deficit_m3: float | None
    deficit_pct: float | None
    complete: bool | None


class BalancePage(BaseModel):
    site: str
    model_config = ConfigDict(populate_by_name=True)
    window: str
    from_: datetime = Field(alias="from")
    to: datetime
    step_s: int
    points: list[BalancePoint]


class AuditEntry(BaseModel):
    model_config = ConfigDict(extra="allow")
    at: datetime
    who: str
    role: str | None
    action: str
    target: str
    detail: dict[str, Any] | None = None


class AuditPage(BaseModel):
    entries: list[AuditEntry]


class Volume(BaseModel):
    """Discharged m³: the estimate and the band the meters' accuracy allows."""

    estimate: float
    low: float
    high: float


class Claim(BaseModel):
    """A maintenance window declared while the incident was open, for the officer to judge."""

    model_config = ConfigDict(populate_by_name=True)
    from_: datetime = Field(alias="from")
    to: datetime
    reason: str
    volume_cap_m3: float
    declared_by: str
    declared_at: datetime


class CaseEntryOut(BaseModel):
    seq: int
    at: datetime
    by: str
    action: str
    before: dict[str, Any]
    after: dict[str, Any]
    detail: dict[str, Any]


class AttachmentOut(BaseModel):
    id: int
    sha256: str
    size: int
    content_type: str
    label: str
    by: str
    at: datetime


class CaseOut(BaseModel):
    status: str
    outcome: str | None
    acked_by: str | None
    acked_at: datetime | None
    closed_by: str | None
    closed_at: datetime | None
    history: list[CaseEntryOut]
    attachments: list[AttachmentOut]


class IncidentOut(BaseModel):
    id: str
    site: str
    site_name: str
    district: str
    kind: str
    severity: str
    state: str
    started_at: datetime
    first_firing_at: datetime
    ended_at: datetime | None
    updated_at: datetime
    volume_m3: Volume | None
    peak_deficit_pct: float | None
    mean_deficit_pct: float | None
    rules: dict[str, dict[str, Any]]
    alert_ids: list[str]
    meters: list[str]
    maintenance_claims: list[Claim]
    summary: dict[str, str]
    episodes: int
    case: CaseOut
    drained: Drained | None = Field(None, description="while open: water drained since it began")


class TimelineEntry(BaseModel):
    """One change of the incident (opened, escalated, resolved, …) with its figures at that moment."""

    change: str
    at: datetime
    severity: str
    volume_m3: Volume | None
    peak_deficit_pct: float | None


class IncidentDetail(IncidentOut):
    timeline: list[TimelineEntry]
    alerts: list[AlertOut]


class IncidentList(BaseModel):
    incidents: list[IncidentOut]


class PermitWellsOut(BaseModel):
    extraction: int
    reinjection: int


class PermitOut(BaseModel):
    """A site's water-withdrawal permit (取水许可) as configured."""

    number: str
    holder: str
    annual_quota_m3: float
    max_rate_m3h: float
    wells: PermitWellsOut
    valid_from: date
    valid_to: date
    status: str


class ComplianceYear(BaseModel):
    """This year's extraction against the quota: used so far and projected to the year's end at the pace of
    the monitored time (`since` … `through`; `unknown_h` of it without known extraction)."""

    year: int
    extracted_m3: float
    since: datetime | None
    through: datetime | None
    unknown_h: float
    annual_quota_m3: float | None
    used_pct: float | None
    projected_m3: float | None
    projected_pct: float | None


class ComplianceRates(BaseModel):
    """Extraction rates (m³/h, mean over one evaluation interval, from totalizer deltas): the newest, the
    highest of the last 24 h and of the year, against the permitted maximum and the limit the meters'
    accuracy allows."""

    max_rate_m3h: float | None
    limit_m3h: float | None
    current_m3h: float | None
    peak_24h_m3h: float | None
    peak_24h_at: datetime | None
    peak_year_m3h: float | None
    peak_year_at: datetime | None


class SiteCompliance(BaseModel):
    """A site's permit standing: the permit, quota used and projected, rate peaks, and the compliance rules
    (over_rate, quota_projection, sealed_pumping, permit_expired, calibration_due:<meter>) pending or
    firing."""

    site: str
    permit: PermitOut | None
    valid: bool | None
    year: ComplianceYear | None
    rates: ComplianceRates
    alerts: dict[str, str]


class MapSite(BaseModel):
    id: str
    name: str
    district: str
    status: str
    alerts_firing: int
    location: SiteLocation | None = Field(description="null: the config gives the site no location, so the map "
                                                       "lists it without a point")


class MapTiles(BaseModel):
    """A tile layer for Leaflet: `{key}` in `url` stands for `key`."""

    url: str
    key: str | None
    subdomains: str
    attribution: str
    max_zoom: int


class MapPage(BaseModel):
    sites: list[MapSite]
    districts: list[str] = Field(description="the caller's districts, for the filter")
    outlines: dict[str, Any] | None = Field(description="a GeoJSON FeatureCollection of the caller's districts' "
                                                        "outlines (properties.district), null without `map.districts`")
    tiles: MapTiles | None = Field(description="null: no tile layer, the points over the outlines only")
