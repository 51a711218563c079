"""At-least-once from a real mosquitto to a real influxd: kills, broker restarts, bad payloads."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from collector.deadletter import DeadLetterStore
from gshp.devstack import Influxd, Mosquitto, free_port
from tests.helpers import wait_until
from tests.mqtt_support import NOW0, Collector, Publisher, dtu_json, flow_count, stored_points, write_config

pytestmark = pytest.mark.integration

METERS = ["E1", "E2", "R1", "R2", "R3"]
METER_YAML = "\n".join(
    f"      - {{id: {m}, role: {'extraction' if m[0] == 'E' else 'reinjection'}, "
    f"mqtt: {{topic: dtu/hehua/{m}, profile: dtu-json}}}}" for m in METERS)


def _stream(n: int) -> list[tuple[str, bytes, tuple[str, int, float]]]:
    out = []
    for i in range(n):
        meter = METERS[i % len(METERS)]
        ts = NOW0 + timedelta(seconds=i // len(METERS))
        total = 1000.0 + i * 0.25
        out.append((f"dtu/hehua/{meter}", dtu_json(ts, total), (meter, int(ts.timestamp() * 1000), total)))
    return out


def _collector(tmp_path: Path, influxd: Influxd, db: str, port: int, client_id: str) -> Collector:
    api_port = free_port()
    config = write_config(tmp_path / "gshp.yaml", state_dir=tmp_path / "state", influx_url=influxd.url, db=db,
                          mqtt_port=port, client_id=client_id, meters=METER_YAML, api_port=api_port)
    return Collector(config, api_port, tmp_path / "collector.log")


def test_50k_readings_with_three_sigkills_arrive_exactly_once_each(
        mosquitto: Mosquitto, influxd: Influxd, influx_db: str, tmp_path: Path) -> None:
    stream = _stream(50_000)
    collector = _collector(tmp_path, influxd, influx_db, mosquitto.port, "kill-test").start()
    collector.wait_subscribed()  # the persistent session exists from here on
    pub = Publisher(mosquitto.port, "kill-test-pub")
    t = threading.Thread(target=pub.publish_all, args=([(tp, p) for tp, p, _ in stream],), daemon=True)
    t.start()
    try:
        for threshold in (8_000, 20_000, 32_000):
            wait_until(lambda th=threshold: flow_count(influxd, influx_db) >= th, timeout=60, interval=0.1)
            collector.kill()
            time.sleep(0.3)
            collector.start()
        t.join(120)
        assert not t.is_alive() and pub.confirmed == len(stream)
        wait_until(lambda: flow_count(influxd, influx_db) >= len(stream), timeout=90, interval=0.2)
    finally:
        pub.close()
        code = collector.stop()
    assert code == 0
    assert stored_points(influxd, influx_db) == {e for _, _, e in stream}
    assert len(DeadLetterStore(tmp_path / "state" / "deadletter.sqlite")) == 0


def test_mosquitto_restart_mid_stream_loses_nothing(influxd: Influxd, influx_db: str, tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker").start()  # persistence on, own instance: it gets restarted
    stream = _stream(15_000)
    collector = _collector(tmp_path, influxd, influx_db, broker.port, "restart-test").start()
    try:
        collector.wait_subscribed()
        pub = Publisher(broker.port, "restart-test-pub", window=200)
        t = threading.Thread(target=pub.publish_all, args=([(tp, p) for tp, p, _ in stream],), daemon=True)
        t.start()
        wait_until(lambda: flow_count(influxd, influx_db) >= 4_000, timeout=60, interval=0.1)
        broker.restart()
        t.join(120)
        assert not t.is_alive() and pub.confirmed == len(stream)
        wait_until(lambda: flow_count(influxd, influx_db) >= len(stream), timeout=60, interval=0.2)
        pub.close()
    finally:
        code = collector.stop()
        broker.stop()
    assert code == 0
    assert stored_points(influxd, influx_db) == {e for _, _, e in stream}
