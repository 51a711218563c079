"""Maintenance windows declared through the API: who may, what is refused (a back-dated start, a cap beyond what
the site can extract), that the live engine honours them, that the site's history and the daily report list
them, and that a restart keeps them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from collector.model import Reading, Role
from gshp.clock import DataClock
from gshp.config import Config, parse_config
from gshp.devstack import Influxd, free_port
from tests.api.conftest import Running, city_yaml, serving
from tests.helpers import wait_until

pytestmark = pytest.mark.integration

T0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=8)
BACKWASH = {"start": T0.isoformat(), "end": (T0 + timedelta(hours=3)).isoformat(), "reason": "回扬 R1",
            "volume_cap_m3": 200}


def rated_city(state_dir: Path, influx_url: str, db: str) -> Config:
    """The test city; the extraction meters of hehua and hospital are rated 150 m³/h, school's are not."""
    text = city_yaml(state_dir, influx_url, db, free_port())
    return parse_config(text.replace("{id: E1, role: extraction", "{id: E1, role: extraction, max_flow_m3h: 150", 2))


def data_time(running: Running, t: datetime) -> None:
    """Move the service's data clock on to `t`, as a reading of that time would."""
    clock = running.service.clock
    assert isinstance(clock, DataClock)
    clock.advance(t)


@pytest.fixture(scope="module")
def config(influxd: Influxd, tmp_path_factory: pytest.TempPathFactory) -> Config:
    return rated_city(tmp_path_factory.mktemp("maintenance") / "state", influxd.url, "api_maintenance")


@pytest.fixture(scope="module")
def fed(config: Config) -> Iterator[Running]:
    with serving(config, clock=DataClock()) as running:
        data_time(running, T0 - timedelta(minutes=1))
        yield running


def declared(running: Running, site: str) -> list[dict[str, object]]:
    return list(running.get(f"/api/sites/{site}/maintenance").json()["maintenance"])


def audited(running: Running, site: str) -> list[dict[str, object]]:
    return [e for e in running.get("/api/audit", "admin").json()["entries"]
            if e["action"] == "maintenance" and e["target"] == site]


def test_enforcement_of_the_district_and_admin_may_declare_viewers_and_other_districts_may_not(fed: Running) -> None:
    assert fed.post("/api/sites/hehua/maintenance", BACKWASH, token=None).status_code == 401
    refused = fed.post("/api/sites/hehua/maintenance", BACKWASH, token="viewer")
    assert refused.status_code == 403 and "viewer" in refused.json()["detail"]
    assert fed.post("/api/sites/school/maintenance", BACKWASH, token="wancheng").status_code == 404
    assert declared(fed, "hehua") == [] and declared(fed, "school") == [] and audited(fed, "hehua") == []

    r = fed.post("/api/sites/hehua/maintenance", BACKWASH, token="wancheng")
    assert r.status_code == 201, r.text
    tz = fed.config.tz  # every time the API answers is in the configured zone
    window = {"start": T0.astimezone(tz).isoformat(), "end": (T0 + timedelta(hours=3)).astimezone(tz).isoformat(),
              "reason": "回扬 R1",
              "volume_cap_m3": 200.0, "source": "api", "declared_by": "宛城区执法大队"}
    (got,) = r.json()["maintenance"]
    assert {k: got[k] for k in window} == window and got["declared_at"]
    assert declared(fed, "hehua") == [got]
    assert fed.get("/api/sites/hehua").json()["maintenance"] == [got], "listed in the site's history"
    assert fed.get("/api/sites/hehua/maintenance", "wancheng").json()["maintenance"] == [got]
    assert fed.get("/api/sites/school/maintenance", "wancheng").status_code == 404
    (entry,) = audited(fed, "hehua")
    assert entry["who"] == "宛城区执法大队" and entry["role"] == "enforcement" and entry["at"]
    assert entry["detail"] == {"start": T0.isoformat(), "end": (T0 + timedelta(hours=3)).isoformat(),
                               "reason": "回扬 R1", "volume_cap_m3": 200.0}

    # school's meters are not rated and have no history yet: its capacity is unknown, nothing can be excused
    refused = fed.post("/api/sites/school/maintenance", BACKWASH, token="admin")
    assert refused.status_code == 422 and "capacity is unknown" in refused.json()["detail"], refused.text
    assert declared(fed, "school") == []
    assert [m.reason for m in fed.service.engine.maintenance("hehua")] == ["回扬 R1"]
    assert fed.service.engine.maintenance("school") == ()


@pytest.mark.parametrize(("change", "says"), [
    ({"end": T0.isoformat()}, "end must be after start"),
    ({"end": (T0 - timedelta(hours=1)).isoformat()}, "end must be after start"),
    ({"end": (T0 + timedelta(days=8)).isoformat()}, "at most 7 days"),
    ({"volume_cap_m3": -1}, "greater than or equal to 0"),
    ({"volume_cap_m3": 2e6}, "less than or equal to"),
    ({"reason": ""}, "at least 1 character"),
    ({"reason": "   "}, "reason"),
    ({"reason": "回扬" * 101}, "at most 200 characters"),
    ({"start": "2026-05-05T08:00:00"}, "timezone"),
    ({"start": "yesterday"}, "datetime"),
    ({"volume_cap_m3": None}, "number"),
])
def test_a_declaration_is_checked_before_anything_is_kept(fed: Running, change: dict[str, object], says: str) -> None:
    before = declared(fed, "hospital")
    r = fed.post("/api/sites/hospital/maintenance", {**BACKWASH, **change}, token="wancheng")
    assert r.status_code == 422 and says in r.text, r.text
    assert declared(fed, "hospital") == before and audited(fed, "hospital") == []


def test_the_live_engine_lets_a_deficit_under_the_declared_cap_pass_and_alerts_elsewhere(fed: Running) -> None:
    # hehua (backwash declared, cap 200 m³) and school (nothing declared now) both lose half their water
    for i in range(100):
        ts = T0 + timedelta(minutes=i)
        fed.service.accept([Reading(site, "E1", Role.EXTRACTION, ts, 120.0, 1000.0 + 2.0 * i)
                            for site in ("hehua", "school")] +
                           [Reading(site, "R1", Role.REINJECTION, ts, 60.0, 3000.0 + 1.0 * i)
                            for site in ("hehua", "school")], "test")

    def firing(site: str) -> set[str]:
        return {a["rule"] for a in fed.get("/api/alerts", "admin", params={"site": site, "kind": "discharge"}
                                           ).json()["alerts"] if a["state"] == "firing"}

    wait_until(lambda: firing("school") == {"balance_gross", "balance_hour"}, timeout=30, interval=0.2)
    assert firing("hehua") == set()
    hour = fed.service.engine.balance("hehua", timedelta(hours=1))
    assert hour is not None and hour["deficit_pct"] == 50.0, "the deficit is there; the declaration covers it"


def test_a_declaration_may_not_start_more_than_15_minutes_before_data_time(fed: Running) -> None:
    now = fed.service.clock.now()
    before = declared(fed, "hehua")
    late = {**BACKWASH, "start": (now - timedelta(minutes=130)).isoformat(),
            "end": (now + timedelta(days=6)).isoformat()}
    r = fed.post("/api/sites/hehua/maintenance", late, token="wancheng")
    assert r.status_code == 422 and "at most 15 minutes in the past" in r.json()["detail"], r.text
    assert fed.post("/api/sites/hehua/maintenance", late, token="admin").status_code == 422, "admin neither"
    assert declared(fed, "hehua") == before and len(audited(fed, "hehua")) == len(before)
    recent = {**BACKWASH, "start": (now - timedelta(minutes=14)).isoformat(),
              "end": (now + timedelta(hours=1)).isoformat(), "reason": "回扬 R1 补充", "volume_cap_m3": 100}
    assert fed.post("/api/sites/hehua/maintenance", recent, token="wancheng").status_code == 201


def test_the_cap_may_not_exceed_what_the_rated_meters_can_extract(fed: Running) -> None:
    now = fed.service.clock.now()
    six_days = {"start": now.isoformat(), "end": (now + timedelta(days=6)).isoformat(), "reason": "回扬 R2",
                "volume_cap_m3": 1_000_000}
    before = declared(fed, "hospital")
    r = fed.post("/api/sites/hospital/maintenance", six_days, token="wancheng")
    assert r.status_code == 422 and "at most 21600.0 m³" in r.json()["detail"] and "150 m³/h" in r.json()["detail"]
    assert declared(fed, "hospital") == before
    hour = {**six_days, "end": (now + timedelta(hours=1)).isoformat(), "volume_cap_m3": 150.5}
    assert fed.post("/api/sites/hospital/maintenance", hour, token="wancheng").status_code == 422
    assert fed.post("/api/sites/hospital/maintenance", {**hour, "volume_cap_m3": 150},
                    token="wancheng").status_code == 201


def test_without_a_rating_the_cap_is_bounded_by_the_highest_rate_in_the_history(fed: Running) -> None:
    # school reported 120 m³/h on E1 (the test above): 2 h of it is 240 m³; admin may declare in any district
    def peak_stored() -> bool:
        return bool(fed.get("/api/sites/school/readings", params={"step": "1h"}).json()["meters"])

    wait_until(peak_stored, timeout=30, interval=0.2)
    start = fed.service.clock.now() + timedelta(days=2)
    window = {"start": start.isoformat(), "end": (start + timedelta(hours=2)).isoformat(), "reason": "更换回灌表"}
    r = fed.post("/api/sites/school/maintenance", {**window, "volume_cap_m3": 241}, token="admin")
    assert r.status_code == 422 and "at most 240.0 m³" in r.json()["detail"], r.text
    assert fed.post("/api/sites/school/maintenance", {**window, "volume_cap_m3": 240}, token="admin").status_code == 201
    assert [(m["reason"], m["declared_by"]) for m in declared(fed, "school")] == [("更换回灌表", "ops")]


def test_the_daily_report_lists_api_declared_windows(fed: Running) -> None:
    day = T0.astimezone(fed.config.tz).date().isoformat()
    text = fed.get("/api/reports/daily", params={"date": day, "format": "csv"}).content.decode("utf-8-sig")
    (hehua,) = [line for line in text.splitlines() if "向阳荷花广场" in line]
    local = T0.astimezone(fed.config.tz)
    start = local.strftime("%H:%M") if local.date().isoformat() == day else local.strftime("%m-%d %H:%M")
    assert f"{start}–" in hehua and "回扬 R1 (≤200 m³)" in hehua
    (school,) = [line for line in text.splitlines() if "卧龙区第一中学" in line]
    assert "更换回灌表" not in school, "a window on another day is not this day's"


def test_declared_windows_survive_a_restart(influxd: Influxd, tmp_path: Path) -> None:
    own = rated_city(tmp_path / "state", influxd.url, "api_maintenance_restart")
    with serving(own, clock=DataClock()) as first:
        data_time(first, T0)
        assert first.post("/api/sites/hospital/maintenance", {**BACKWASH, "reason": "回扬 R2"}).status_code == 201
        before = declared(first, "hospital")
    with serving(own, clock=DataClock()) as second:
        assert declared(second, "hospital") == before and [m["reason"] for m in before] == ["回扬 R2"]
        assert [(m.reason, m.volume_cap_m3, m.start) for m in second.service.engine.maintenance("hospital")] == \
            [("回扬 R2", 200.0, T0)]
