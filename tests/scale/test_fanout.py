"""The fan-out publisher against a real mosquitto: a broker restart mid-stream loses no reading, and rows
leave the fan-out outbox only once the broker acknowledged them."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from collector.fanout import FanoutOutbox, FanoutPublisher, FanoutSettings, decode_reading, encode_reading
from collector.fanout.message import reading_topic
from collector.mqtt.settings import MqttSettings
from collector.outbox import OutboxSettings
from gshp.devstack import Mosquitto
from tests.helpers import readings, wait_until

pytestmark = pytest.mark.integration


class Worker:
    """A rule worker's subscription: persistent session, QoS 1, every reading recorded."""

    def __init__(self, port: int) -> None:
        self.got: set[tuple[str, str, float]] = set()
        self.messages = 0
        self._lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="fanout-test-worker", clean_session=False)
        self.client.reconnect_delay_set(1, 2)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe("t/readings/0/#", qos=1)
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        r = decode_reading(msg.payload)
        assert msg.topic == f"t/readings/0/{r.site}/{r.meter}"
        with self._lock:
            self.messages += 1
            self.got.add((r.meter, r.ts.isoformat(), r.total_m3 or 0.0))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_a_broker_restart_mid_stream_loses_no_fanned_out_reading(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker").start()
    box = FanoutOutbox(tmp_path / "fanout.sqlite", OutboxSettings(batch_size=500))
    settings = FanoutSettings(topic_prefix="t/readings", batch_size=500, publish_timeout=timedelta(seconds=3),
                              retry_min=timedelta(milliseconds=100), retry_max=timedelta(seconds=1))
    broker_settings = MqttSettings(port=broker.port, reconnect_min=timedelta(seconds=1),
                                   reconnect_max=timedelta(seconds=2))
    publisher = FanoutPublisher(box, settings, broker_settings, "fanout-test-publisher")
    worker = Worker(broker.port)
    stream = list(readings(20_000))
    try:
        assert worker.subscribed.wait(10)
        publisher.start()
        assert publisher.wait_connected(10)
        for i in range(0, 10_000, 250):
            box.put([f"{reading_topic('t/readings', 0, r.site, r.meter)} {encode_reading(r).decode()}"
                     for r in stream[i:i + 250]])
        wait_until(lambda: publisher.published >= 3_000, timeout=30)
        broker.restart()
        for i in range(10_000, 20_000, 250):  # committed while the broker is away or coming back
            box.put([f"{reading_topic('t/readings', 0, r.site, r.meter)} {encode_reading(r).decode()}"
                     for r in stream[i:i + 250]])
        wait_until(lambda: box.depth == 0, timeout=60, interval=0.1)
        wait_until(lambda: len(worker.got) >= len(stream), timeout=30, interval=0.1)
    finally:
        publisher.stop()
        worker.close()
        box.close()
        broker.stop()
    assert worker.got == {(r.meter, r.ts.isoformat(), r.total_m3) for r in stream}
    assert publisher.published >= len(stream)  # a round cut by the restart is published again, never dropped
