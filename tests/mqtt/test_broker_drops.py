"""Readings a broker drops before they reach the collector are seen: behind a real mosquitto with a small
`max_queued_messages`, a burst queued for the collector's session while it is away overflows the queue;
the broker's drop counter reaches `/metrics` and `/healthz` says `degraded`, naming the broker. With a
large limit the same burst arrives whole and health stays `ok`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import requests

from collector.mqtt.brokerstats import DROP_HOLD, BrokerStats, ride_out_need
from collector.mqtt.settings import MqttSettings
from gshp.devstack import Influxd, Mosquitto, free_port
from tests.helpers import wait_until
from tests.mqtt_support import NOW0, Collector, Publisher, dtu_json, flow_count, write_config

METERS = ["E1", "E2", "R1", "R2"]
METER_YAML = "\n".join(
    f"      - {{id: {m}, role: {'extraction' if m[0] == 'E' else 'reinjection'}, "
    f"mqtt: {{topic: dtu/s1/{m}, profile: dtu-json}}}}" for m in METERS)
BURST = 1000


@pytest.fixture(params=[100, 1_000_000], ids=["small-queue", "large-queue"])
def broker(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Mosquitto, int]]:
    limit = int(request.param)
    server = Mosquitto(tmp_path_factory.mktemp("mosq"),
                       extra_config=f"max_queued_messages {limit}\nsys_interval 1").start()
    yield server, limit
    server.stop()


def health(api: int) -> dict[str, object]:
    return dict(requests.get(f"http://127.0.0.1:{api}/healthz", timeout=5).json())


@pytest.mark.integration
def test_a_burst_beyond_the_brokers_queue_is_counted_and_makes_health_degraded(
        tmp_path: Path, influxd: Influxd, influx_db: str, broker: tuple[Mosquitto, int]) -> None:
    server, limit = broker
    api = free_port()
    config = write_config(tmp_path / "gshp.yaml", state_dir=tmp_path / "state", influx_url=influxd.url,
                          db=influx_db, mqtt_port=server.port, client_id="gshp-drops", meters=METER_YAML,
                          api_port=api)
    collector = Collector(config, api, tmp_path / "gshp.log").start()
    collector.wait_subscribed()
    wait_until(lambda: (tmp_path / "state" / "broker.json").exists(), timeout=20)
    assert collector.stop() == 0  # away: the broker queues for its persistent session
    pub = Publisher(server.port, "dtus")
    pub.publish_all((f"dtu/s1/{METERS[i % 4]}", dtu_json(NOW0 + timedelta(minutes=i // 4), 1000.0 + i))
                    for i in range(BURST))  # every one confirmed by the broker
    pub.close()
    collector.start()
    try:
        collector.wait_subscribed()
        if limit < BURST:
            wait_until(lambda: (collector.metric("gshp_broker_dropped_total") or 0) > 0, timeout=30)
            dropped = int(collector.metric("gshp_broker_dropped_total") or 0)
            wait_until(lambda: flow_count(influxd, influx_db) >= BURST - dropped, timeout=30)
            assert flow_count(influxd, influx_db) == BURST - dropped  # what the broker kept, all of it
            assert dropped >= BURST - limit - 10  # the queue held about `limit` (plus what was in flight)
            state = health(api)
            assert state["status"] == "degraded"
            assert any("broker" in p for p in state["problems"])  # type: ignore[attr-defined]
            assert "max_queued_messages" in collector.log.read_text()  # the fix, logged once
        else:
            wait_until(lambda: flow_count(influxd, influx_db) >= BURST, timeout=60)
            wait_until(lambda: collector.metric("gshp_broker_stored_messages") is not None, timeout=20)
            assert flow_count(influxd, influx_db) == BURST
            assert (collector.metric("gshp_broker_dropped_total") or 0) == 0
            assert health(api)["status"] == "ok"
    finally:
        assert collector.stop() == 0
    assert json.loads((tmp_path / "state" / "broker.json").read_text())["dropped"] >= 0


def test_drop_counting_across_collector_and_broker_restarts(tmp_path: Path) -> None:
    now = [1000.0]
    settings = MqttSettings(port=free_port())
    state = tmp_path / "broker.json"

    def watcher() -> BrokerStats:
        return BrokerStats(settings, "t", None, state, clock=lambda: now[0], wall=lambda: now[0])

    first = watcher()
    first.observe_dropped(7)  # before the broker's uptime: held back
    first.observe_uptime(500)
    assert first.dropped == 0 and first.problems() == []  # the very first start blames nothing
    second = watcher()  # the collector restarts; the broker kept running and dropped 40 meanwhile
    now[0] += 600
    second.observe_uptime(1100)
    second.observe_dropped(47)
    assert second.dropped == 40 and second.problems()
    now[0] += DROP_HOLD.total_seconds() + 1
    assert second.problems() == []  # an hour without drops: healthy again
    third = watcher()  # the broker restarted too, and has dropped 5 since
    third.observe_uptime(30)
    third.observe_dropped(5)
    assert third.dropped == 5


def test_the_ride_out_need_counts_every_meters_readings() -> None:
    need = ride_out_need([timedelta(minutes=1)] * 9_000 + [timedelta(seconds=10)] * 1_000, timedelta(hours=1))
    assert need.messages == 9_000 * 60 + 1_000 * 360
    assert "max_queued_messages 900000" in need.advice()
