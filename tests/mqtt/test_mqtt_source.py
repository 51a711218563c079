"""The MQTT source in-process against a real mosquitto: bad payloads, TLS with a password, v5."""

from __future__ import annotations

import json
import logging
import subprocess
import threading
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from collector.deadletter import DeadLetterStore
from collector.model import Reading, Site
from collector.mqtt.decode import DecodeContext
from collector.mqtt.ingester import MqttSource
from collector.mqtt.profile import load_profiles
from collector.mqtt.settings import MqttSettings
from collector.mqtt.topics import plan_routes
from gshp.devstack import Mosquitto
from tests.helpers import make_pki, wait_until
from tests.mqtt_support import NOW0, Publisher, dtu_json

pytestmark = pytest.mark.integration

SITE = Site.model_validate({"id": "s1", "name": "向阳荷花广场", "district": "宛城区", "meters": [
    {"id": "E1", "role": "extraction", "mqtt": {"topic": "dtu/{key}/up", "profile": "dtu-json"}},
    {"id": "R1", "role": "reinjection", "mqtt": {"topic": "dtu/{key}/up", "profile": "dtu-json"}}]})


class Sink:
    def __init__(self) -> None:
        self.readings: list[Reading] = []
        self.lock = threading.Lock()

    def __call__(self, readings: Sequence[Reading]) -> None:
        with self.lock:
            self.readings.extend(readings)


def _source(settings: MqttSettings, tmp_path: Path) -> tuple[MqttSource, DeadLetterStore]:
    router = plan_routes([SITE], load_profiles())
    store = DeadLetterStore(tmp_path / "deadletter.sqlite")
    ctx = DecodeContext(tz=ZoneInfo("Asia/Shanghai"), max_payload=2048)
    return MqttSource(settings, router, ctx, store), store


def _bad(i: int) -> tuple[str, bytes, str]:
    ts = int(NOW0.timestamp()) + i
    kinds: list[tuple[str, bytes, str]] = [
        ("dtu/E1/up", b'{"ts": %d, "total_m3": ' % i, "bad_json"),
        ("dtu/E1/up", b"\xff\xfe" + str(i).encode(), "bad_encoding"),
        ("dtu/R1/up", json.dumps({"ts": ts, "rate_m3h": i}).encode(), "missing_field"),
        ("dtu/R1/up", json.dumps({"ts": ts, "total_m3": [i]}).encode(), "wrong_type"),
        ("dtu/E1/up", b'{"ts": %d, "total_m3": NaN, "i": %d}' % (ts, i), "not_finite"),
        ("dtu/E1/up", json.dumps({"ts": ts, "total_m3": -1 - i}).encode(), "negative_total"),
        ("dtu/E1/up", json.dumps({"ts": ts + 86400 * 3, "total_m3": i}).encode(), "ts_future"),
        ("dtu/E1/up", json.dumps({"ts": ts - 86400 * 400, "total_m3": i}).encode(), "ts_past"),
        ("dtu/E1/up", json.dumps({"ts": f"yesterday {i}", "total_m3": i}).encode(), "bad_timestamp"),
        ("dtu/X9/up", json.dumps({"ts": ts, "total_m3": i}).encode(), "unknown_meter"),
        ("dtu/E1/up", json.dumps({"ts": ts, "total_m3": i, "pad": "x" * 3000}).encode(), "too_large"),
    ]
    return kinds[i % len(kinds)]


def test_malformed_payloads_are_dead_lettered_and_the_good_ones_all_arrive(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    settings = MqttSettings(port=mosquitto.port, client_id="bad-input-test")  # type: ignore[call-arg]
    source, store = _source(settings, tmp_path)
    sink = Sink()
    source.start(sink)
    try:
        assert source.wait_subscribed(10)
        good: list[tuple[str, bytes]] = []
        stream: list[tuple[str, bytes]] = []
        bad: list[tuple[str, bytes, str]] = []
        for i in range(6000):
            if i % 6 == 3:
                b = _bad(len(bad))
                bad.append(b)
                stream.append(b[:2])
            else:
                meter = "E1" if i % 2 else "R1"
                msg = (f"dtu/{meter}/up", dtu_json(NOW0 + timedelta(seconds=i), 100.0 + i))
                good.append(msg)
                stream.append(msg)
        assert len(bad) == 1000
        pub = Publisher(mosquitto.port, "bad-input-pub")
        pub.publish_all(stream)
        pub.close()
        wait_until(lambda: len(sink.readings) >= len(good) and len(store) >= len(bad), timeout=30)
    finally:
        source.close()
    assert {(r.meter, r.total_m3) for r in sink.readings} == {
        (t.split("/")[1], json.loads(p)["total_m3"]) for t, p in good}
    store = DeadLetterStore(tmp_path / "deadletter.sqlite")
    letters = store.list(limit=5000)
    assert sorted((d.topic, d.payload[:2048], d.reason) for d in letters) == sorted(
        (t, p[:2048], r) for t, p, r in bad)
    assert store.counts() == {r: sum(1 for b in bad if b[2] == r) for r in {b[2] for b in bad}}
    assert next(d for d in letters if d.reason == "too_large").truncated is False  # kept whole (< 64 KiB)


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Any:
    d = make_pki(tmp_path_factory.mktemp("tls"), {"client": "gshp-collector"})
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(d / "passwd"), "collector", "s3cret-Pa55"],
                   check=True, capture_output=True)
    subprocess.run(["mosquitto_passwd", "-b", str(d / "passwd"), "dtu", "dtu-pass"], check=True,
                   capture_output=True)
    broker = Mosquitto(d / "broker", extra_config=f"""
cafile {d}/ca.crt
certfile {d}/server.crt
keyfile {d}/server.key
require_certificate true
password_file {d}/passwd
allow_anonymous false
""").start()
    yield broker, d
    broker.stop()


def test_tls_with_client_certificate_and_password_over_mqtt5(
        tls_broker: tuple[Mosquitto, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    broker, d = tls_broker
    settings = MqttSettings.model_validate({
        "port": broker.port, "client_id": "tls-test", "protocol": "5", "username": "collector",
        "password": "s3cret-Pa55",
        "tls": {"ca": d / "ca.crt", "cert": d / "client.crt", "key": d / "client.key"}})
    source, _ = _source(settings, tmp_path)
    sink = Sink()
    caplog.set_level(logging.DEBUG)
    source.start(sink)
    try:
        assert source.wait_subscribed(10)
        pub = Publisher(broker.port, "tls-pub", username="dtu", password="dtu-pass", ca=str(d / "ca.crt"),
                        cert=str(d / "client.crt"), key=str(d / "client.key"))
        pub.publish_all([("dtu/E1/up", dtu_json(NOW0 + timedelta(seconds=i), float(i))) for i in range(500)])
        pub.close()
        wait_until(lambda: len(sink.readings) >= 500, timeout=20)
    finally:
        source.close()
    assert sorted(r.total_m3 or 0 for r in sink.readings) == [float(i) for i in range(500)]
    assert "s3cret-Pa55" not in caplog.text


def test_a_wrong_password_is_reported_without_the_password_and_retried(
        tls_broker: tuple[Mosquitto, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    broker, d = tls_broker
    settings = MqttSettings.model_validate({
        "port": broker.port, "client_id": "tls-bad", "username": "collector", "password": "wrong-Pa55",
        "reconnect_min": "1s", "reconnect_max": "1s",
        "tls": {"ca": d / "ca.crt", "cert": d / "client.crt", "key": d / "client.key"}})
    source, _ = _source(settings, tmp_path)
    caplog.set_level(logging.DEBUG)
    source.start(Sink())
    try:
        assert not source.wait_subscribed(3)
    finally:
        source.close()
    assert "refused the connection" in caplog.text and "username/password" in caplog.text
    assert "wrong-Pa55" not in caplog.text


def test_a_shared_group_splits_the_stream_between_collectors_without_loss_or_repeat(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    sources, sinks = [], []
    for i in range(2):
        settings = MqttSettings(port=mosquitto.port, client_id=f"shared-{i}",  # type: ignore[call-arg]
                                shared_group="collectors")
        source, _ = _source(settings, tmp_path / f"c{i}")
        sink = Sink()
        source.start(sink)
        sources.append(source)
        sinks.append(sink)
    try:
        assert all(s.wait_subscribed(10) for s in sources)
        stream = [(f"dtu/{'E1' if i % 2 else 'R1'}/up", dtu_json(NOW0 + timedelta(seconds=i), float(i)))
                  for i in range(2000)]
        pub = Publisher(mosquitto.port, "shared-pub")
        pub.publish_all(stream)
        pub.close()
        wait_until(lambda: sum(len(s.readings) for s in sinks) >= len(stream), timeout=30)
    finally:
        for s in sources:
            s.close()
    got = [(r.meter, r.total_m3) for s in sinks for r in s.readings]
    assert sorted(got) == sorted((t.split("/")[1], float(i)) for i, (t, _) in enumerate(stream))  # once each
    assert all(len(s.readings) > 0 for s in sinks)  # both collectors took a share


def test_an_mqtt5_session_keeps_what_arrives_while_the_collector_is_away(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    settings = MqttSettings.model_validate({"port": mosquitto.port, "client_id": "v5-session", "protocol": "5",
                                            "session_expiry": "1h"})
    source, _ = _source(settings, tmp_path)
    source.start(Sink())
    assert source.wait_subscribed(10)
    source.close()  # the session (clean_start false, expiry 1 h) outlives the connection
    stream = [("dtu/E1/up", dtu_json(NOW0 + timedelta(seconds=i), float(i))) for i in range(300)]
    pub = Publisher(mosquitto.port, "v5-session-pub")
    pub.publish_all(stream)
    pub.close()
    source, _ = _source(settings, tmp_path / "again")
    sink = Sink()
    source.start(sink)
    try:
        wait_until(lambda: len(sink.readings) >= len(stream), timeout=20)
    finally:
        source.close()
    assert sorted(r.total_m3 or 0 for r in sink.readings) == [float(i) for i in range(300)]
