"""An incident's evidence package: everything behind the incident gathered from the stores, InfluxDB and the
config, rendered and signed (`gshp.evidence.package`).

- `incident.json`: the incident, its case with history, its timeline, the alerts with their transitions and
  window figures, the site and its meters (as configured: roles, accuracy, ratings, sources and profiles),
  the span of the readings and the SHA-256 of the configuration in force;
- `readings.csv`: every raw reading of the site's meters from 24 h before onset to 24 h after the end (or to
  now while open), as stored in InfluxDB (times in UTC);
- `audit.jsonl`: the audit chain's records of the incident, its alerts and the site's maintenance, whole
  (seq, prev_hash, hash): each can be re-hashed by a third party;
- `report.html`: self-contained (no script, no link), Chinese with English.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from importlib import resources
from pathlib import Path
from typing import IO, Any

import jinja2
import pandas as pd

from alerting.case import Case
from alerting.model import Incident
from collector.influx.reader import InfluxReader
from collector.model import Site
from gshp import __version__
from gshp.config import Config
from gshp.evidence.chart import ChartPoint, FlowBuckets, RateSample, flow_chart_svg
from gshp.evidence.errors import EvidenceError
from gshp.evidence.keys import ServiceKey
from gshp.evidence.package import write_package
from rules.audit import AuditChain, AuditRecord
from rules.cases import CaseStore
from rules.store import AlertStore

__all__ = ["READINGS_MARGIN", "Readings", "config_sha256", "export_incident", "gather_readings", "incident_files"]

READINGS_MARGIN = timedelta(hours=24)
"""Readings before the onset and after the end that the package holds."""

READINGS_CHUNK = timedelta(days=1)
"""The readings are read from InfluxDB and written out this much at a time."""

READING_COLUMNS = ("ts", "site", "meter", "role", "rate_m3h", "total_m3", "signal_pct", "error_code", "volume_m3",
                   "period_s")
"""The columns of readings.csv: every field of the `flow` measurement (`volume_m3`, `period_s` for meters whose
logger reports interval volumes)."""

KIND_WORDS = {"discharge": ("外排", "discharge"), "evasion": ("规避监测", "evasion"),
              "meter_fault": ("计量故障", "meter fault"), "compliance": ("许可合规", "compliance"),
              "calibration": ("检定到期", "calibration due")}
STATE_WORDS = {"open": ("进行中", "open"), "resolved": ("已恢复", "resolved")}
SEVERITY_WORDS = {"info": "提示", "warning": "警告", "high": "高", "critical": "严重"}
CHANGE_WORDS = {"opened": "事件开始 opened", "reopened": "复发 reopened", "escalated": "升级 escalated",
                "resolved": "恢复 resolved", "case_closed": "结案 case closed"}


def config_sha256(config: Config) -> str:
    """The configuration in force, as a hash: its canonical JSON with secrets masked."""
    text = json.dumps(config.model_dump(mode="json"), ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, pd.Timestamp | datetime):
        return v.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(v, float) and v.is_integer() and abs(v) < 2**53:
        return repr(v)
    return str(v)


@dataclass(frozen=True)
class Readings:
    """The readings of a package's span, written to `path` as CSV: how many, and the chart's points."""

    path: Path
    rows: int
    points: list[ChartPoint]


def gather_readings(reader: InfluxReader, site: str, span: tuple[datetime, datetime], path: Path) -> Readings:
    """Every raw reading of `site` in `span`, as stored, written to `path` one day of data at a time: memory
    holds a day's readings and the chart's buckets, never the whole span."""
    buckets, rows = FlowBuckets(*span), 0
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(READING_COLUMNS)
        start = span[0]
        while start < span[1]:
            stop = min(start + READINGS_CHUNK, span[1])
            df = reader.flow(start, stop, site)
            for row in df.itertuples(index=False):
                d = row._asdict()
                w.writerow([_cell(d.get(c)) for c in READING_COLUMNS])
            rows += len(df)
            buckets.add(RateSample(r.ts.to_pydatetime(), str(r.meter), str(r.role), float(r.rate_m3h))
                        for r in df.itertuples(index=False) if r.rate_m3h is not None and not pd.isna(r.rate_m3h))
            start = stop
    return Readings(path, rows, buckets.points())


def _meter(site: Site, meter_id: str) -> dict[str, Any]:
    m = next(x for x in site.meters if x.id == meter_id)
    return {**m.model_dump(mode="json", by_alias=True, exclude_none=True), "source": m.source}


def _timeline(changes: Sequence[Mapping[str, Any]], alerts: Sequence[Mapping[str, Any]],
              case: Case) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for c in changes:
        vol = c["incident"].get("volume_m3")
        rows.append({"at": c["at"], "what": CHANGE_WORDS.get(c["change"], c["change"]),
                     "detail": f"{c['incident']['severity']}" + (f", {vol['estimate']:.1f} m³" if vol else "")})
    for a in alerts:
        for t in a["transitions"]:
            rows.append({"at": t["at"], "what": f"告警 alert {t['rule']}: {t['state']}",
                         "detail": t.get("summary", "")})
    for h in case.history:
        said = "; ".join(f"{k}: {v}" for k, v in h.detail.items())
        rows.append({"at": h.at, "what": f"案件 case {h.action.value}", "detail": f"{h.actor}: {said}"})
    return sorted(rows, key=lambda r: datetime.fromisoformat(str(r["at"])).timestamp())


def _records(audit: AuditChain, subjects: Sequence[str]) -> list[AuditRecord]:
    found = {r.seq: r for s in subjects for r in audit.records(subject=s)}
    return [found[k] for k in sorted(found)]


def _render(context: Mapping[str, Any], tz: tzinfo) -> bytes:
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)

    def t(value: str | datetime | None) -> str:
        if value is None:
            return "—"
        v = datetime.fromisoformat(value) if isinstance(value, str) else value
        return v.astimezone(tz).isoformat(sep=" ", timespec="seconds")

    def pct(value: float | None) -> str:
        return "—" if value is None else f"{value:.1f} %"

    text = resources.files("gshp.evidence").joinpath("report.html.j2").read_text(encoding="utf-8")
    return env.from_string(text).render(**context, t=t, pct=pct).encode("utf-8")


def incident_files(incident: Incident, case: Case, *, site: Site, changes: Sequence[Mapping[str, Any]],
                   alerts: Sequence[Mapping[str, Any]], readings: Readings, span: tuple[datetime, datetime],
                   records: Sequence[AuditRecord], config_hash: str, timezone: str, tz: tzinfo, now: datetime,
                   fingerprint: str) -> dict[str, bytes | Path]:
    """The package's files from what was gathered: incident.json, readings.csv (the file gathered),
    audit.jsonl, report.html."""
    inc, cas = incident.to_dict(), case.to_dict()
    meters = [_meter(site, m.id) for m in site.meters]
    document = {
        "incident": inc, "case": cas, "timeline": list(changes), "alerts": list(alerts), "windows": inc["rules"],
        "site": {"id": site.id, "name": site.name, "district": site.district, "operator": site.operator,
                 "location": site.location.model_dump() if site.location else None},
        "meters": meters,
        "readings": {"from": span[0].isoformat(), "to": span[1].isoformat(), "rows": readings.rows,
                     "source": "InfluxDB measurement flow"},
        "config_sha256": config_hash, "timezone": timezone, "generated_at": now.isoformat(timespec="seconds"),
        "version": __version__,
    }
    end = incident.ended_at or now
    kind_zh, kind_en = KIND_WORDS.get(inc["kind"], (inc["kind"], inc["kind"]))
    state_zh, state_en = STATE_WORDS.get(inc["state"], (inc["state"], inc["state"]))
    report = _render({
        "inc": inc, "case": cas, "site": site, "kind_zh": kind_zh, "kind_en": kind_en, "state_zh": state_zh,
        "state_en": state_en, "severity_zh": SEVERITY_WORDS.get(inc["severity"], inc["severity"]),
        "generated_at": now.astimezone(tz).isoformat(sep=" ", timespec="seconds"), "timezone": timezone,
        "version": __version__, "config_sha256": config_hash, "fingerprint": fingerprint, "meters": meters,
        "chart": flow_chart_svg(readings.points, (incident.started_at, end), tz),
        "timeline": _timeline(changes, alerts, case), "readings_rows": readings.rows, "readings_from": span[0],
        "readings_to": span[1], "audit_rows": len(records)}, tz)
    audit_lines = "".join(json.dumps(r.to_dict(), ensure_ascii=False, sort_keys=True) + "\n" for r in records)
    return {"incident.json": json.dumps(document, ensure_ascii=False, indent=2).encode("utf-8"),
            "readings.csv": readings.path, "audit.jsonl": audit_lines.encode("utf-8"),
            "report.html": report}


def export_incident(incident_id: str, out: IO[bytes], *, config: Config, store: AlertStore, cases: CaseStore,
                    audit: AuditChain, reader: InfluxReader, key: ServiceKey, now: datetime) -> None:
    """Gather, render and sign one incident's package into `out` (seekable); `now` is the service's clock (the
    span of an open incident ends there). Raises `EvidenceError` for an unknown incident, `QueryError` when
    InfluxDB fails."""
    incident = store.incident(incident_id)
    if incident is None:
        raise EvidenceError(None, f"no incident {incident_id!r}: list them with GET /api/incidents")
    site = next((s for s in config.sites if s.id == incident.site), None)
    if site is None:
        raise EvidenceError(None, f"incident {incident_id!r} is of site {incident.site!r}, which the config no "
                                  "longer has: export with the config in force at the time")
    span = (incident.started_at - READINGS_MARGIN,
            incident.ended_at + READINGS_MARGIN if incident.ended_at is not None else max(now, incident.updated_at))
    alerts: list[dict[str, Any]] = [{"alert": a.to_dict(), "transitions": store.transitions(a.id)}
                                    for a in (store.get(x) for x in incident.alert_ids) if a is not None]
    records = _records(audit, [incident.id, *incident.alert_ids, site.id])
    with tempfile.TemporaryDirectory(prefix="gshp-evidence-") as tmp:
        readings = gather_readings(reader, site.id, span, Path(tmp) / "readings.csv")
        files = incident_files(incident, cases.get(incident.id), site=site,
                               changes=store.incident_changes(incident.id), alerts=alerts, readings=readings,
                               span=span, records=records, config_hash=config_sha256(config),
                               timezone=config.timezone, tz=config.tz, now=now, fingerprint=key.public.fingerprint)
        write_package(out, files, key, now, {"incident": incident.id, "site": site.id, "site_name": site.name,
                                             "district": site.district})
