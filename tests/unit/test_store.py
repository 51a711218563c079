from datetime import UTC, datetime, timedelta, timezone

import pytest

from alerting.model import Alert, AlertKind, AlertState
from rules.settings import MaintenanceWindow, Severity
from rules.store import AlertStore, StoreError

AT = datetime(2026, 5, 5, 8, 0, tzinfo=UTC)


def _event(state: str, ends: datetime | None = None) -> Alert:
    return Alert("a1", "hehua", "向阳荷花广场", "宛城区", "balance_gross", AlertKind.DISCHARGE,
                 Severity.CRITICAL, AlertState(state), AT, AT, ends, f"summary {state}", {"deficit_m3": 20.0})


def test_open_alerts_survive_reopening_the_store(tmp_path):
    path = tmp_path / "state" / "alerts.sqlite"
    store = AlertStore(path)
    store.record(_event("pending"))
    store.record(_event("firing"), clear_since=123.0)
    store.close()
    reopened = AlertStore(path)
    (alert,) = reopened.open_alerts()
    assert (alert.id, alert.state, reopened.clear_since("a1")) == ("a1", "firing", 123.0)
    assert alert == _event("firing")
    assert [t["state"] for t in reopened.transitions("a1")] == ["pending", "firing"]


def test_a_resolved_alert_is_history_not_open(tmp_path):
    store = AlertStore(tmp_path / "alerts.sqlite")
    store.record(_event("firing"))
    store.record(_event("resolved", AT))
    assert store.open_alerts() == []
    assert [a.state for a in store.history("hehua")] == ["resolved"]


def test_acknowledgement_and_annotations_are_kept_with_the_alert(tmp_path):
    path = tmp_path / "alerts.sqlite"
    store = AlertStore(path)
    store.record(_event("firing"))
    store.acknowledge("a1", "执法一队", "2026-05-05T09:00:00+08:00", note="已派员现场核查")
    store.annotate("a1", "张三", "2026-05-05T10:00:00+08:00", "现场发现雨水井有水流出")
    store.close()
    store = AlertStore(path)
    alert = store.get("a1")
    ack = store.acknowledgement("a1")
    assert alert is not None and ack is not None and ack.by == "执法一队"
    assert [n.text for n in store.annotations("a1")] == ["已派员现场核查", "现场发现雨水井有水流出"]
    assert alert.state == "firing"  # acknowledging changes the case, not the state


def test_unknown_alert_ids_are_refused_with_a_hint():
    store = AlertStore(":memory:")
    with pytest.raises(StoreError, match="list alerts"):
        store.acknowledge("nope", "x", "2026-05-05T09:00:00+08:00")
    with pytest.raises(StoreError, match="list alerts"):
        store.annotate("nope", "x", "2026-05-05T09:00:00+08:00", "t")


def test_an_unwritable_location_names_the_fix(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="state_dir"):
        AlertStore(blocker / "alerts.sqlite")


def test_declared_maintenance_survives_reopening_the_store_in_start_order(tmp_path):
    path = tmp_path / "alerts.sqlite"
    store = AlertStore(path)
    beijing = timezone(timedelta(hours=8))
    later = MaintenanceWindow.model_validate({"from": datetime(2026, 5, 6, 8, tzinfo=beijing),
                                              "to": datetime(2026, 5, 6, 10, tzinfo=beijing),
                                              "reason": "回扬 R1", "volume_cap_m3": 120.5})
    earlier = MaintenanceWindow.model_validate({"from": AT, "to": AT + timedelta(hours=1), "reason": "换表",
                                                "volume_cap_m3": 0})
    first = store.declare_maintenance("hehua", later, "宛城区执法大队", "2026-05-05T09:00:00+00:00")
    store.declare_maintenance("school", earlier, "ops", "2026-05-05T09:01:00+00:00")
    store.declare_maintenance("hehua", earlier, "ops", "2026-05-05T09:02:00+00:00")
    store.close()
    reopened = AlertStore(path)
    got = reopened.maintenance("hehua")
    assert [m.window for m in got] == [earlier, later]
    assert got[1].id == first.id and got[1].declared_by == "宛城区执法大队"
    assert got[1].declared_at == "2026-05-05T09:00:00+00:00"
    assert got[1].window.start.utcoffset() == timedelta(hours=8), "the declared offset is kept"
    assert [(m.site, m.declared_by) for m in reopened.maintenance()] == [("school", "ops"), ("hehua", "ops"),
                                                                         ("hehua", "宛城区执法大队")]
