"""`GET /api/sites/{id}/compliance` on the live service: a sealed site pumping in balance raises
`sealed_pumping` within 15 min of data time, and the route answers with the year's extraction, the rate peaks
and the permit, to those who see the site only."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from collector.model import Reading, Role
from gshp.clock import DataClock
from gshp.config import parse_config
from gshp.devstack import Influxd, free_port
from tests.api.conftest import Running, city_yaml, serving
from tests.helpers import wait_until

pytestmark = pytest.mark.integration

T0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=4)
PERMIT = ('permit: {number: "取水(宛)字[2024]第0012号", holder: 向阳荷花广场物业, annual_quota_m3: 300000, '
          'max_rate_m3h: 150, wells: {extraction: 2, reinjection: 4}, valid_from: 2024-01-01, '
          'valid_to: 2099-12-31, status: sealed}')


@pytest.fixture(scope="module")
def fed(influxd: Influxd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    text = city_yaml(tmp_path_factory.mktemp("compliance") / "state", influxd.url, "api_compliance", free_port())
    hehua = "  - id: hehua\n"
    text = text.replace(hehua, f"{hehua}    {PERMIT}\n", 1)
    config = parse_config(text)
    assert config.site("hehua").permit is not None
    with serving(config, clock=DataClock()) as running:
        yield running


def test_a_sealed_site_pumping_in_balance_fires_and_the_route_shows_its_standing(fed: Running) -> None:
    start = T0 + timedelta(minutes=30)  # dry for half an hour, then 120 m³/h in and out
    for i in range(60):
        ts = T0 + timedelta(minutes=i)
        rate = 120.0 if ts >= start else 0.0
        total = 2.0 * max(0, i - 30)
        fed.service.accept([Reading("hehua", "E1", Role.EXTRACTION, ts, rate, 1000.0 + total),
                            Reading("hehua", "R1", Role.REINJECTION, ts, rate, 5000.0 + total)], "test")

    def sealed() -> list[dict[str, object]]:
        return [a for a in fed.get("/api/alerts", "admin", params={"site": "hehua"}).json()["alerts"]
                if a["rule"] == "sealed_pumping" and a["state"] == "firing"]

    wait_until(lambda: bool(sealed()), timeout=30, interval=0.2)
    (alert,) = sealed()
    fired = datetime.fromisoformat(str(alert["at"]))
    assert alert["kind"] == "compliance" and alert["severity"] == "critical"
    assert fired - start <= timedelta(minutes=15), fired - start

    r = fed.get("/api/sites/hehua/compliance", "wancheng")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["permit"]["status"] == "sealed" and body["permit"]["wells"] == {"extraction": 2, "reinjection": 4}
    assert body["alerts"]["sealed_pumping"] == "firing" and body["valid"] is True
    year = body["year"]
    assert year["annual_quota_m3"] == 300000 and year["extracted_m3"] > 0
    assert year["used_pct"] == pytest.approx(100 * year["extracted_m3"] / 300000, abs=0.01)
    assert year["through"].endswith("+08:00")  # in the configured zone
    assert body["rates"]["peak_24h_m3h"] == pytest.approx(120.0, rel=0.02)
    assert body["rates"]["limit_m3h"] == 151.5 and body["rates"]["max_rate_m3h"] == 150

    school = fed.get("/api/sites/school/compliance").json()  # no permit: nothing to hold it to
    assert school["permit"] is None and school["year"] is None
    assert fed.get("/api/sites/school/compliance", "wancheng").status_code == 404  # another district's
    assert fed.get("/api/sites/hehua/compliance", None).status_code == 401


def test_the_site_page_shows_the_meter_records(fed: Running) -> None:
    meters = {m["id"]: m for m in fed.get("/api/sites/hospital").json()["meters"]}
    record = meters["E1"]["record"]
    assert record["serial"] == "TUF-2311-0042" and record["model"] == "TUF-2000M"
    assert record["calibration"]["date"] == "2025-06-01" and record["calibration"]["next_due"] == "2026-06-01"
    assert record["calibration"]["overdue"] is True  # next_due 2026-06-01 has passed
    assert meters["R1"]["record"] is None
