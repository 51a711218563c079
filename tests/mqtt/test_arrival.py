"""Arrival rate (到报率) through a real mosquitto and `gshp run`: exact on a day with a gap, duplicates and a
late back-fill, the same after a restart (re-built from InfluxDB); and behind a broker whose queue is too
small for a burst, the affected meters' arrival rate shows exactly what the broker dropped."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests

from gshp.devstack import Influxd, Mosquitto, free_port
from tests.helpers import wait_until
from tests.mqtt_support import Collector, Publisher, dtu_json, flow_count, write_config

TZ = ZoneInfo("Asia/Shanghai")
DAY = datetime.now(TZ).date() - timedelta(days=1)  # yesterday, local: whole, and within the kept days
START = datetime.combine(DAY, datetime.min.time(), tzinfo=TZ)


def meters_yaml(ids: list[str]) -> str:
    return "\n".join(f"      - {{id: {m}, role: {'extraction' if m[0] == 'E' else 'reinjection'}, interval: 1m, "
                     f"mqtt: {{topic: dtu/s1/{m}, profile: dtu-json}}}}" for m in ids)


def minute(k: int, second: int = 0) -> datetime:
    return START + timedelta(minutes=k, seconds=second)


def arrival(api: int, day: date) -> dict[str, Any]:
    r = requests.get(f"http://127.0.0.1:{api}/api/sites/s1/arrival", params={"date": day.isoformat()}, timeout=10)
    r.raise_for_status()
    return dict(r.json())


@pytest.mark.integration
def test_arrival_is_exact_through_the_broker_and_survives_a_restart(
        tmp_path: Path, influxd: Influxd, influx_db: str, mosquitto: Mosquitto) -> None:
    api = free_port()
    config = write_config(tmp_path / "gshp.yaml", state_dir=tmp_path / "state", influx_url=influxd.url,
                          db=influx_db, mqtt_port=mosquitto.port, client_id="gshp-arrival",
                          meters=meters_yaml(["E1", "R1"]), api_port=api)
    collector = Collector(config, api, tmp_path / "gshp.log").start()
    try:
        collector.wait_subscribed()
        pub = Publisher(mosquitto.port, "dtus-arrival")
        # E1: 10:00–10:59 missing at first; minute 5 sent three times (a DTU re-sending); 10:00–10:29 later
        e1 = [(k, k % 50) for k in range(1440) if not 600 <= k < 660] + [(5, 0), (5, 0), (5, 40)]
        e1 += [(k, 7) for k in range(600, 630)]
        messages = [("dtu/s1/E1", dtu_json(minute(k, s), 1000.0 + k)) for k, s in e1]
        messages += [("dtu/s1/R1", dtu_json(minute(k, 30), 900.0 + k)) for k in range(1440)]
        pub.publish_all(messages)
        pub.close()
        wait_until(lambda: flow_count(influxd, influx_db) >= 1410 + 1 + 1440, timeout=120)

        def exact(body: dict[str, Any]) -> None:
            meters = {m["id"]: m for m in body["meters"]}
            assert (meters["E1"]["expected"], meters["E1"]["arrived"]) == (1440, 1410)
            assert meters["E1"]["missing"] == [{"from": minute(630).isoformat(), "to": minute(660).isoformat()}]
            assert (meters["R1"]["expected"], meters["R1"]["arrived"], meters["R1"]["missing"]) == (1440, 1440, [])
            assert (body["expected"], body["arrived"]) == (2880, 2850)
            assert body["rate_pct"] == round(100 * 2850 / 2880, 2)

        exact(arrival(api, DAY))
        old = arrival(api, DAY - timedelta(days=7))  # older than the kept days: counted from InfluxDB
        assert (old["expected"], old["arrived"], len(old["meters"][0]["missing"])) == (2880, 0, 1)
        assert collector.stop() == 0
        collector.start()  # the counts are in memory: a restart re-builds them from InfluxDB
        collector.wait_subscribed()
        wait_until(lambda: "re-built" in collector.log.read_text(), timeout=60)
        exact(arrival(api, DAY))
        sites = requests.get(f"http://127.0.0.1:{api}/api/sites", timeout=10).json()
        assert sites["sites"][0]["arrival"]["expected"] > 0  # today's, so far
        assert sites["districts"][0]["arrival"] == sites["sites"][0]["arrival"]
        assert collector.metric('gshp_arrival_expected{meter="E1",site="s1"}') is not None
    finally:
        assert collector.stop() == 0


BURST_METERS = ["E1", "E2", "R1", "R2"]
BURST = 1000


@pytest.fixture(params=[100, 1_000_000], ids=["small-queue", "large-queue"])
def broker(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Mosquitto, int]]:
    limit = int(request.param)
    server = Mosquitto(tmp_path_factory.mktemp("mosq"),
                       extra_config=f"max_queued_messages {limit}\nsys_interval 1").start()
    yield server, limit
    server.stop()


@pytest.mark.integration
def test_readings_a_broker_drops_show_in_the_arrival_rate_of_their_meters(
        tmp_path: Path, influxd: Influxd, influx_db: str, broker: tuple[Mosquitto, int]) -> None:
    server, limit = broker
    api = free_port()
    config = write_config(tmp_path / "gshp.yaml", state_dir=tmp_path / "state", influx_url=influxd.url,
                          db=influx_db, mqtt_port=server.port, client_id="gshp-arrival-drops",
                          meters=meters_yaml(BURST_METERS), api_port=api)
    collector = Collector(config, api, tmp_path / "gshp.log").start()
    collector.wait_subscribed()
    assert collector.stop() == 0  # away: the broker queues for its persistent session
    pub = Publisher(server.port, "dtus-drops")
    pub.publish_all((f"dtu/s1/{BURST_METERS[i % 4]}", dtu_json(minute(i // 4), 1000.0 + i)) for i in range(BURST))
    pub.close()
    collector.start()
    try:
        collector.wait_subscribed()
        if limit < BURST:
            wait_until(lambda: (collector.metric("gshp_broker_dropped_total") or 0) > 0, timeout=30)
        dropped = int(collector.metric("gshp_broker_dropped_total") or 0)
        wait_until(lambda: flow_count(influxd, influx_db) >= BURST - dropped, timeout=60)
        stored = flow_count(influxd, influx_db)
        body = arrival(api, DAY)
        assert body["expected"] == 4 * 1440
        assert body["arrived"] == stored  # one reading per meter-minute: every stored reading fills a slot
        sent = BURST // 4  # per meter, minutes 0 … sent−1 of the day
        short = [m["id"] for m in body["meters"] if m["arrived"] < sent]
        if limit < BURST:
            assert body["arrived"] == BURST - dropped < BURST
            assert sum(sent - m["arrived"] for m in body["meters"]) == dropped  # the loss, meter by meter
            assert short  # the affected meters show it
        else:
            assert body["arrived"] == BURST and dropped == 0 and short == []
    finally:
        assert collector.stop() == 0
