"""Through the running service's API: acknowledging creates no silence and keeps the first `acked_by`; every
write lands in the audit chain that `/api/audit` serves; a write whose audit record fails changes nothing."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from alerting.model import Alert, AlertKind, AlertState, Severity
from gshp.clock import DataClock
from gshp.config import parse_config
from gshp.devstack import Influxd, free_port
from tests.api.conftest import Running, city_yaml, serving
from tests.helpers import wait_until

pytestmark = pytest.mark.integration

AT = datetime(2026, 5, 5, 8, tzinfo=UTC)


def _alert(alert_id: str) -> Alert:
    return Alert(alert_id, "hospital", "宛城区人民医院", "宛城区", "balance_24h", AlertKind.DISCHARGE,
                 Severity.CRITICAL, AlertState.FIRING, AT, AT, None, "外排", {"deficit_m3": 1014.0})


@pytest.fixture(scope="module")
def fed(influxd: Influxd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    root = tmp_path_factory.mktemp("audit_api")
    config = parse_config(city_yaml(root / "state", influxd.url, "api_audit", free_port()))
    with serving(config, clock=DataClock()) as running:
        for alert_id in ("a1", "a2"):
            running.service.store.record(_alert(alert_id))
        yield running


def test_acknowledging_creates_no_silence_and_a_later_ack_keeps_the_first(fed: Running) -> None:
    r = fed.post("/api/alerts/a1/ack", {"comment": "已派人核查"})
    assert r.status_code == 200 and r.json()["acked_by"] == "宛城区执法大队"
    assert fed.service.silences.silences(include_expired=True) == []
    assert list(fed.service.notifier.silences()) == []
    r = fed.post("/api/alerts/a1/ack", {"comment": "复核"}, token="admin")
    assert r.status_code == 200 and r.json()["acked_by"] == "宛城区执法大队"
    entries = [e for e in fed.get("/api/audit", "admin").json()["entries"] if e["target"] == "a1"]
    assert [(e["action"], e["who"], e["role"]) for e in entries] == [
        ("ack", "宛城区执法大队", "enforcement"), ("ack", "ops", "admin")]
    assert entries[0]["detail"] == {"comment": "已派人核查"} and len(entries[0]["hash"]) == 64
    assert fed.service.audit.verify() == (len(fed.service.audit.records()), None)


def test_the_running_service_anchors_the_chain_head_in_influxdb(fed: Running, influxd: Influxd) -> None:
    fed.post("/api/alerts/a1/notes", {"text": "现场取样 WS-01"})
    head = fed.service.audit.head()
    assert head is not None and fed.service.anchors.tick(datetime.now(UTC)) == head
    assert fed.service.anchors.tick(datetime.now(UTC)) is None, "an unchanged head is anchored once a day"

    def anchored() -> list[list[object]]:
        (result,) = influxd.query('SELECT seq, hash, "chain" FROM audit_anchor', db="api_audit")
        return [row[1:] for s in result.get("series", []) for row in s["values"]]  # type: ignore[attr-defined]

    wait_until(lambda: bool(anchored()), timeout=30)
    assert anchored() == [[head.seq, head.hash, "all-0"]]


def test_a_close_whose_audit_record_cannot_be_written_changes_nothing(fed: Running) -> None:
    db = sqlite3.connect(fed.config.state_dir / "alerts.sqlite")
    db.execute("CREATE TRIGGER audit_refused BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'read-only'); END")
    db.commit()
    try:
        r = fed.post("/api/alerts/a2/close", {"outcome": "confirmed_discharge", "text": "x"})
        assert r.status_code == 500
    finally:
        db.execute("DROP TRIGGER audit_refused")
        db.commit()
        db.close()
    assert fed.get("/api/alerts/a2").json()["outcome"] is None
    assert not any(e["target"] == "a2" for e in fed.get("/api/audit", "admin").json()["entries"])
    r = fed.post("/api/alerts/a2/close", {"outcome": "confirmed_discharge", "text": "x"})
    assert r.status_code == 200 and r.json()["outcome"]["outcome"] == "confirmed_discharge"
