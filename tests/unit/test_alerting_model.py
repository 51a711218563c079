from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from alerting.model import (
    Alert,
    AlertKind,
    AlertState,
    Incident,
    IncidentChange,
    IncidentKind,
    IncidentNotice,
    IncidentState,
    MaintenanceClaim,
    ModelError,
    Severity,
    VolumeEstimate,
)
from rules.store import AlertStore, Evaluation

TZ = ZoneInfo("Asia/Shanghai")
AT = datetime(2026, 5, 5, 8, 0, tzinfo=TZ)


def _incident(**kw: object) -> Incident:
    base: dict[str, object] = dict(
        id="i1", site="hehua", site_name="向阳荷花广场", district="宛城区", kind=IncidentKind.DISCHARGE,
        severity=Severity.HIGH, state=IncidentState.OPEN, started_at=AT - timedelta(minutes=40),
        first_firing_at=AT, ended_at=None, updated_at=AT, volume_m3=VolumeEstimate(120.0, 100.0, 140.0),
        peak_deficit_pct=40.0, mean_deficit_pct=38.5, rules={"balance_hour": {"deficit_m3": 80.0}},
        alert_ids=("a1", "a2"), meters=("E1", "R1"),
        maintenance_claims=(MaintenanceClaim(AT, AT + timedelta(hours=2), "回扬", 50.0, "运维", AT),),
        summary={"zh": "疑似外排", "en": "suspected discharge"})
    base.update(kw)
    return Incident(**base)  # type: ignore[arg-type]


def test_severity_ranks_info_below_warning_below_high_below_critical():
    assert [s.rank for s in (Severity.INFO, Severity.WARNING, Severity.HIGH, Severity.CRITICAL)] == [0, 1, 2, 3]
    assert Severity.highest(Severity.WARNING, Severity.CRITICAL, Severity.HIGH) is Severity.CRITICAL


def test_alert_round_trips_through_its_json_shape():
    a = Alert("a1", "hehua", "向阳荷花广场", "宛城区", "balance_hour", AlertKind.DISCHARGE, Severity.HIGH,
              AlertState.FIRING, AT, AT - timedelta(minutes=15), None, "s", {"deficit_m3": 1.5})
    assert Alert.from_dict(a.to_dict()) == a
    assert a.to_dict()["state"] == "firing" and a.to_dict()["at"] == "2026-05-05T08:00:00+08:00"


def test_incident_and_notice_round_trip_and_name_every_figure():
    inc = _incident()
    d = inc.to_dict()
    assert Incident.from_dict(d) == inc
    assert d["volume_m3"] == {"estimate": 120.0, "low": 100.0, "high": 140.0}
    assert {"id", "site", "district", "kind", "severity", "state", "started_at", "ended_at", "volume_m3",
            "peak_deficit_pct"} <= set(d)
    n = IncidentNotice(IncidentChange.ESCALATED, AT, inc, link="https://x/incidents/i1")
    assert IncidentNotice.from_dict(n.to_dict()) == n
    assert n.key == "i1:escalated:high"


def test_a_malformed_incident_is_refused_with_what_is_wrong():
    with pytest.raises(ModelError, match="not an incident"):
        Incident.from_dict({"id": "x"})


def test_incidents_are_stored_with_their_alert_links_and_filtered(tmp_path):
    store = AlertStore(tmp_path / "alerts.sqlite")
    store.record_incident(_incident(), [IncidentChange.OPENED])
    later = _incident(id="i2", site="other", kind=IncidentKind.METER_FAULT, alert_ids=("a3",),
                      started_at=AT + timedelta(days=1), first_firing_at=AT + timedelta(days=1),
                      updated_at=AT + timedelta(days=1))
    resolved = _incident(state=IncidentState.RESOLVED, ended_at=AT + timedelta(hours=3),
                         updated_at=AT + timedelta(hours=3), severity=Severity.CRITICAL)
    store.record_evaluation(Evaluation(incidents=[(later, [IncidentChange.OPENED]),
                                                  (resolved, [IncidentChange.ESCALATED, IncidentChange.RESOLVED])]))
    store.close()
    store = AlertStore(tmp_path / "alerts.sqlite")
    assert store.incident("i1") == resolved
    assert store.incident_of_alert("a3") == later
    assert [i.id for i in store.incidents(state="open")] == ["i2"]
    assert [i.id for i in store.incidents(kind=IncidentKind.DISCHARGE, district="宛城区")] == ["i1"]
    assert [i.id for i in store.incidents(since=AT + timedelta(hours=4))] == ["i2"]
    assert [i.id for i in store.incidents(until=AT + timedelta(hours=1))] == ["i1"]
    assert [c["change"] for c in store.incident_changes("i1")] == ["opened", "escalated", "resolved"]
    assert store.incidents(site="nowhere") == []
