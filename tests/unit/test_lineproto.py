"""Every line we write is byte-identical to what influxdb_client.Point writes for the same data."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from influxdb_client import Point

from alerting.model import (
    Incident,
    IncidentChange,
    IncidentKind,
    IncidentNotice,
    IncidentState,
    Severity,
    VolumeEstimate,
)
from collector.influx.lineproto import FlowSchema, format_line, to_ms
from collector.influx.sitemeta import site_lines
from collector.model import Reading, Role
from gshp.evaluation import incident_line
from tests.helpers import make_site

HAZARDS = ["plain", "a b", "a,b", "a=b", 'q"uote', "back\\slash", "trail\\", "向阳荷花广场"]


def point_line(measurement: str, tags: dict[str, str], fields: dict[str, object], ts: datetime) -> str:
    p = Point(measurement).time(ts, write_precision="ms")  # type: ignore[arg-type]
    for k, v in tags.items():
        p = p.tag(k, v)
    for k, v in fields.items():
        p = p.field(k, v)
    return str(p.to_line_protocol())


@pytest.mark.parametrize("district", [h for h in HAZARDS if not h.endswith("\\")])  # the config refuses those
def test_flow_line_matches_influxdb_client_point(district: str) -> None:
    ts = datetime(2026, 7, 1, 12, 0, 0, 123000, tzinfo=UTC)
    site = make_site(district=district)
    r = Reading("s1", "E1", Role.EXTRACTION, ts, 12.5, 1234.0, signal_pct=77.0, error_code=8)
    expected = point_line("flow", {"site": "s1", "meter": "E1", "role": "extraction", "district": district},
                          {"rate_m3h": 12.5, "total_m3": 1234.0, "signal_pct": 77.0, "error_code": 8}, ts)
    assert FlowSchema([site]).line(r) == expected


@pytest.mark.parametrize("text", [*HAZARDS, "tab\there", "two\nlines", ""])
def test_string_fields_and_tags_match_point(text: str) -> None:
    ts = datetime(2026, 7, 1, tzinfo=UTC)
    fields: dict[str, object] = {"name": text, "n": 3, "ok": True, "x": 0.1}
    tags = {"site": "s1", "district": text}
    assert format_line("site", tags, fields, to_ms(ts)) == point_line("site", tags, fields, ts)  # type: ignore[arg-type]


def test_missing_fields_are_left_out_not_written_as_zero() -> None:
    r = Reading("s1", "R1", Role.REINJECTION, datetime(2026, 7, 1, tzinfo=UTC), None, 5.0)
    line = FlowSchema([make_site()]).line(r)
    assert " total_m3=5 " in line and "rate_m3h" not in line and "signal_pct" not in line


def test_site_metadata_carries_the_name_as_a_field() -> None:
    ts = datetime(2026, 7, 1, tzinfo=UTC)
    (line,) = site_lines([make_site(name='北区 "1号", A=B 二期\\')], ts)  # a name has no line break
    assert line.startswith("site,district=宛城区,site=s1 ")
    assert 'name="北区 \\"1号\\", A=B 二期\\\\"' in line


def test_a_point_needs_a_field() -> None:
    with pytest.raises(ValueError, match="at least one field"):
        format_line("m", {"a": "b"}, {"x": None}, 0)


@pytest.mark.parametrize("text", [h for h in HAZARDS if not h.endswith("\\")])
def test_incident_line_matches_point_with_the_summaries_as_fields(text: str) -> None:
    at = datetime(2026, 7, 1, 8, 30, tzinfo=UTC)
    incident = Incident(
        id="i1", site="s1", site_name=text, district=text, kind=IncidentKind.DISCHARGE, severity=Severity.HIGH,
        state=IncidentState.OPEN, started_at=at, first_firing_at=at, ended_at=None, updated_at=at,
        volume_m3=VolumeEstimate(120.5, 100.0, 141.0), peak_deficit_pct=40.0, mean_deficit_pct=38.5,
        summary={"zh": f"疑似外排 {text}", "en": f"suspected discharge {text}"})
    line = incident_line(IncidentNotice(IncidentChange.ESCALATED, at, incident))
    tags = {"site": "s1", "kind": "discharge", "severity": "high", "district": text, "change": "escalated"}
    fields: dict[str, object] = {"id": "i1", "state": "open", "summary": f"疑似外排 {text}",
                                 "summary_en": f"suspected discharge {text}", "episodes": 1, "volume_m3": 120.5,
                                 "volume_low_m3": 100.0, "volume_high_m3": 141.0, "peak_deficit_pct": 40.0}
    assert line == point_line("incident", tags, fields, at)
    bare = incident_line(IncidentNotice(IncidentChange.OPENED, at, replace(incident, volume_m3=None)))
    assert "volume" not in bare and ",change=opened," in bare
