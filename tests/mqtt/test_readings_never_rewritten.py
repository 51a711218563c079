"""A stored reading is never rewritten, through a real mosquitto into a real influxd with `gshp run`: a second
value at a stored device time is refused (before and after a restart), a redelivery is a duplicate, a DTU's
back-fill after an outage is stored, a retained message is not a reading, and a reading dated in the future
neither gets in nor freezes the board."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import requests
from paho.mqtt.enums import CallbackAPIVersion

from collector.deadletter import DeadLetterStore
from gshp.devstack import Influxd, Mosquitto, free_port
from tests.helpers import wait_until
from tests.mqtt_support import NOW0, Collector, write_config

pytestmark = pytest.mark.integration


@dataclass
class Rig:
    collector: Collector
    influxd: Influxd
    db: str
    state: Path
    prefix: str
    pub: mqtt.Client

    def send(self, meter: str, ts: datetime | float, total: float, rate: float = 50.0,
             retain: bool = False) -> None:
        seconds = ts if isinstance(ts, float | int) else ts.timestamp()
        payload = json.dumps({"ts": int(seconds), "rate_m3h": rate, "total_m3": total})
        info = self.pub.publish(f"{self.prefix}/{meter}", payload, qos=1, retain=retain)
        info.wait_for_publish(10)

    def stored(self, meter: str) -> dict[int, tuple[float, float]]:
        """The meter's points in InfluxDB: device time (s) → (rate, total)."""
        try:
            res = self.influxd.query(f"SELECT rate_m3h, total_m3 FROM flow WHERE meter = '{meter}'", self.db)
        except requests.RequestException:
            return {}
        series = res[0].get("series") or []
        return {int(t) // 1000: (float(r), float(v)) for t, r, v in series[0]["values"]} if series else {}  # type: ignore[index]

    def metric(self, name: str) -> float:
        return self.collector.metric(name) or 0.0

    def labelled(self, name: str, label: str) -> float:
        text = requests.get(f"http://127.0.0.1:{self.collector.api_port}/metrics", timeout=5).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(name + "{") and label in line)

    def site(self) -> dict[str, object]:
        r = requests.get(f"http://127.0.0.1:{self.collector.api_port}/api/sites/s1", timeout=5)
        r.raise_for_status()
        return r.json()  # type: ignore[no-any-return]

    def latest(self, meter: str) -> dict[str, float]:
        meters = self.site()["meters"]
        assert isinstance(meters, list)
        return next(m["latest"] for m in meters if m["id"] == meter)  # type: ignore[no-any-return]

    def letters(self, reason: str) -> list[dict[str, object]]:
        store = DeadLetterStore(self.state / "deadletter.sqlite")
        try:
            return [{"topic": d.topic, "detail": d.detail, "payload": json.loads(d.payload)
                     if d.payload.startswith(b"{") else d.payload.decode()} for d in store.list(100, reason=reason)]
        finally:
            store.close()

    def restart(self) -> None:
        wait_until(lambda: self.collector.metric("gshp_outbox_depth") == 0.0, timeout=30, interval=0.1)
        assert self.collector.stop() == 0
        self.collector.start().wait_subscribed()


@pytest.fixture
def rig(mosquitto: Mosquitto, influxd: Influxd, influx_db: str, tmp_path: Path,
        request: pytest.FixtureRequest) -> Iterator[Rig]:
    prefix = f"dtu/{request.node.name[:40]}"
    meters = "\n".join(f"      - {{id: {m}, role: {role}, mqtt: {{topic: {prefix}/{m}, profile: dtu-json}}}}"
                       for m, role in (("E1", "extraction"), ("R1", "reinjection")))
    api_port = free_port()
    config = write_config(tmp_path / "gshp.yaml", state_dir=tmp_path / "state", influx_url=influxd.url, db=influx_db,
                          mqtt_port=mosquitto.port, client_id=f"c-{request.node.name[:40]}", meters=meters,
                          api_port=api_port)
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"p-{request.node.name[:40]}")
    pub.connect("127.0.0.1", mosquitto.port)
    pub.loop_start()
    rig = Rig(Collector(config, api_port, tmp_path / "collector.log"), influxd, influx_db, tmp_path / "state",
              prefix, pub)
    yield rig
    for m in ("E1", "R1"):  # no retained message outlives its test on the shared broker
        pub.publish(f"{prefix}/{m}", b"", qos=1, retain=True).wait_for_publish(10)
    pub.disconnect()
    pub.loop_stop()
    if rig.collector.proc is not None:
        rig.collector.stop()


def test_another_value_at_a_stored_device_time_is_refused_before_and_after_a_restart(rig: Rig) -> None:
    t1 = NOW0
    rig.collector.start().wait_subscribed()
    rig.send("E1", t1, 100.0)
    rig.send("R1", t1, 200.0)
    wait_until(lambda: rig.stored("E1") and rig.stored("R1"), timeout=30)
    rig.send("E1", t1, 999.0, rate=0.0)  # same device time, another total: a forged or garbled message
    wait_until(lambda: rig.metric("gshp_readings_conflict_total") == 1.0, timeout=30)
    rig.send("E1", t1, 100.0)  # the first message again: a redelivery
    wait_until(lambda: rig.metric("gshp_readings_duplicate_total") == 1.0, timeout=30)
    rig.send("E1", t1 + timedelta(seconds=10), 100.5)
    wait_until(lambda: len(rig.stored("E1")) == 2, timeout=30)
    assert rig.stored("E1") == {int(t1.timestamp()): (50.0, 100.0), int(t1.timestamp()) + 10: (50.0, 100.5)}
    assert rig.metric("gshp_readings_conflict_total") == 1.0, "an identical repeat is not a conflict"
    assert rig.latest("E1")["total_m3"] == 100.5 and rig.latest("E1")["rate_m3h"] == 50.0
    [letter] = rig.letters("conflict")
    assert letter["topic"] == "s1/E1"
    assert letter["payload"] == {"site": "s1", "meter": "E1", "role": "extraction", "ts": t1.isoformat(),
                                 "rate_m3h": 0.0, "total_m3": 999.0, "signal_pct": None, "error_code": None}

    rig.restart()  # the outbox has drained to InfluxDB: only the index remembers what is stored
    rig.send("E1", t1, 555.0)
    rig.send("E1", t1 + timedelta(seconds=10), 100.5)
    wait_until(lambda: rig.metric("gshp_readings_conflict_total") == 1.0
               and rig.metric("gshp_readings_duplicate_total") == 1.0, timeout=30)
    assert rig.stored("E1") == {int(t1.timestamp()): (50.0, 100.0), int(t1.timestamp()) + 10: (50.0, 100.5)}
    assert [letter["payload"]["total_m3"] for letter in rig.letters("conflict")] == [555.0, 999.0]  # type: ignore[index]


def test_a_dtus_back_fill_after_an_outage_is_stored_where_nothing_is(rig: Rig) -> None:
    t1 = NOW0
    rig.collector.start().wait_subscribed()
    rig.send("E1", t1, 100.0)
    rig.send("E1", t1 + timedelta(minutes=10), 110.0)  # back online: the live reading first
    wait_until(lambda: len(rig.stored("E1")) == 2, timeout=30)
    rig.restart()
    for minute in range(1, 10):  # then the buffered readings of the outage, oldest first
        rig.send("E1", t1 + timedelta(minutes=minute), 100.0 + minute)
    rig.send("E1", t1 - timedelta(minutes=5), 95.0)  # and one from before anything stored
    wait_until(lambda: len(rig.stored("E1")) == 12, timeout=30)
    assert rig.stored("E1") == {int(t1.timestamp()) + 60 * m: (50.0, 100.0 + m) for m in range(-5, 11)
                                if m == -5 or m >= 0}
    assert rig.metric("gshp_readings_conflict_total") == 0.0 and rig.metric("gshp_readings_too_old_total") == 0.0


def test_a_retained_message_is_not_a_reading_even_after_a_restart(rig: Rig) -> None:
    t1 = NOW0
    rig.send("E1", t1, 1.0, rate=0.0, retain=True)  # a fake the broker keeps and hands to every subscriber
    rig.collector.start().wait_subscribed()
    rig.send("E1", t1 + timedelta(seconds=10), 100.0)
    wait_until(lambda: rig.stored("E1"), timeout=30)
    rig.restart()  # subscribing again: the broker sends its retained copy again
    rig.send("E1", t1 + timedelta(seconds=20), 100.5)
    wait_until(lambda: len(rig.stored("E1")) == 2, timeout=30)
    assert int(t1.timestamp()) not in rig.stored("E1")
    assert rig.latest("E1")["total_m3"] == 100.5
    retained = rig.letters("retained")
    assert len(retained) == 2 and {r["topic"] for r in retained} == {f"{rig.prefix}/E1"}
    assert rig.labelled("gshp_ingest_rejected_total", 'reason="retained"') == 1.0, "counted since the restart"


def test_a_reading_dated_in_the_future_is_refused_and_none_within_the_skew_freezes_the_board(rig: Rig) -> None:
    rig.collector.start().wait_subscribed()
    now = math.ceil(time.time())
    rig.send("E1", float(now - 10), 100.0, rate=120.0)
    rig.send("R1", float(now - 10), 200.0, rate=120.0)
    wait_until(lambda: rig.stored("E1") and rig.stored("R1"), timeout=30)
    rig.send("E1", float(now + 590), 100.1, rate=0.0)  # beyond mqtt.max_clock_skew (2 min): refused
    rig.send("E1", float(now + 100), 100.2, rate=0.0)  # within it: stored, shown as taken now
    wait_until(lambda: len(rig.stored("E1")) == 2 and rig.letters("ts_future"), timeout=30)
    assert now + 590 not in rig.stored("E1")
    for k in range(1, 4):  # genuine readings after it flow on to the board
        ts = float(math.ceil(time.time()) + 1)
        rig.send("E1", ts, 100.2 + k, rate=120.0 + k)
        rig.send("R1", ts, 200.0 + k, rate=120.0 + k)
        wait_until(lambda t=ts: int(t) in rig.stored("R1"), timeout=30)
        wait_until(lambda k=k: rig.latest("E1")["rate_m3h"] == 120.0 + k, timeout=10)
        history = rig.site()["history"]
        assert isinstance(history, list)
        assert history[-1]["extraction_m3h"] == 120.0 + k, "the live flow follows the genuine readings"
        time.sleep(1)
    assert datetime.fromisoformat(str(rig.site()["last_seen"])) <= datetime.now(UTC) + timedelta(seconds=2)
