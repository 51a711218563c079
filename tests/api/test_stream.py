"""`/api/stream` carries each meter's newest reading and the rule engine's alert transitions, to whom may see
them. The service runs in data time (`DataClock`) and the test feeds its readings, so it knows every value
the stream must carry."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from collector.model import Reading, Role
from gshp.clock import DataClock
from gshp.config import parse_config
from gshp.devstack import Influxd, free_port
from tests.api.conftest import Running, SseClient, city_yaml, serving
from tests.helpers import wait_until

pytestmark = pytest.mark.integration

T0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=6)
E, R = Role.EXTRACTION, Role.REINJECTION


@pytest.fixture(scope="module")
def fed(influxd: Influxd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    root = tmp_path_factory.mktemp("stream")
    config = parse_config(city_yaml(root / "state", influxd.url, "api_stream", free_port()))
    with serving(config, clock=DataClock()) as running:
        yield running


TZ = ZoneInfo("Asia/Shanghai")  # the city's zone: every time of an event carries its offset


def reading_of(r: Reading) -> dict[str, object]:
    return {"site": r.site, "meter": r.meter, "role": r.role.value, "ts": r.ts.astimezone(TZ).isoformat(),
            "rate_m3h": r.rate_m3h,
            "total_m3": r.total_m3, "signal_pct": r.signal_pct, "error_code": r.error_code}


def test_stream_carries_each_meters_newest_reading_to_whom_may_see_it(fed: Running) -> None:
    everyone, wancheng, one_site = SseClient(fed, "viewer"), SseClient(fed, "wancheng"), SseClient(fed, "viewer",
                                                                                                   "?site=hehua")
    try:
        first = [Reading("hehua", "E1", E, T0, 120.0, 1000.0), Reading("hehua", "R1", R, T0, 118.5, 2000.0,
                                                                       signal_pct=87.0),
                 Reading("school", "E1", E, T0, 60.0, 500.0)]
        late = Reading("hehua", "E1", E, T0 - timedelta(minutes=1), 119.0, 998.0)  # older than E1's newest
        marker = Reading("hehua", "E1", E, T0 + timedelta(minutes=1), 121.0, 1002.0)
        fed.service.accept(first, "test")
        fed.service.accept([late], "test")
        fed.service.accept([marker], "test")
        sent = [reading_of(r) for r in [*first, marker]]
        hehua = [reading_of(r) for r in [*first, marker] if r.site == "hehua"]
        wait_until(lambda: all(len(c.of("reading")) >= len(want) for c, want in
                               ((everyone, sent), (wancheng, hehua), (one_site, hehua))), timeout=20)
        assert everyone.of("reading") == sent, "each newest reading once, in order; the late one is not sent"
        assert wancheng.of("reading") == hehua, "卧龙区's school is not shown to 宛城区's enforcement"
        assert one_site.of("reading") == hehua
        # the summed flow of the site follows each batch (the board's live chart)
        flows = [f for f in everyone.of("flow") if f["site"] == "hehua"]
        assert flows[-1] == {"site": "hehua", "ts": marker.ts.astimezone(TZ).isoformat(), "extraction_m3h": 121.0,
                             "reinjection_m3h": 118.5, "deficit_m3h": 2.5, "complete": True}
    finally:
        for c in (everyone, wancheng, one_site):
            c.close()


def test_an_alert_transition_of_the_engine_arrives_over_the_stream_as_stored(fed: Running) -> None:
    everyone, school_only = SseClient(fed, "viewer"), SseClient(fed, "viewer", "?site=school")
    try:
        start = T0 + timedelta(minutes=2)
        # the hospital drains half of its water: 120 m³/h pumped, 2 × 30 m³/h reinjected
        for i in range(46):
            ts = start + timedelta(minutes=i)
            fed.service.accept([Reading("hospital", "E1", E, ts, 120.0, 5000.0 + 2.0 * i),
                                Reading("hospital", "R1", R, ts, 30.0, 7000.0 + 0.5 * i),
                                Reading("hospital", "R2", R, ts, 30.0, 9000.0 + 0.5 * i)], "test")

        def gross() -> list[dict[str, object]]:
            return [a for a in fed.get("/api/alerts", "admin", params={"site": "hospital"}).json()["alerts"]
                    if a["rule"] == "balance_gross" and a["state"] == "firing"]

        wait_until(lambda: bool(gross()), timeout=30, interval=0.2)
        alert_id = gross()[0]["id"]
        stored = fed.service.store.transitions(str(alert_id))
        assert [t["state"] for t in stored] == ["pending", "firing"]
        wait_until(lambda: len([a for a in everyone.of("alert") if a["id"] == alert_id]) == 2, timeout=20)
        assert [a for a in everyone.of("alert") if a["id"] == alert_id] == stored
        firing = stored[1]
        assert firing["at"].endswith("+08:00") and firing["starts_at"].endswith("+08:00")
        assert firing["site"] == "hospital" and firing["kind"] == "discharge"
        ev = firing["evidence"]
        assert (ev["window"], ev["extracted_m3"], ev["reinjected_m3"], ev["deficit_m3"], ev["deficit_pct"]) == \
            ("15m", 30.0, 15.0, 15.0, 50.0)
        assert not [a for a in school_only.of("alert") if a["site"] != "school"]
    finally:
        everyone.close()
        school_only.close()
