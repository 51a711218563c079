"""A retained MQTT message — the broker's stored copy of an old publish — is dead-lettered as `retained`
unless `mqtt.accept_retained` says otherwise; an ordinary message on the same topic is a reading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from collector.mqtt.ingester import MqttSource, _Message
from gshp.clock import SystemClock
from gshp.config import parse_config
from gshp.sources import mqtt_source


def _source(tmp_path: Path, extra: str) -> MqttSource:
    config = parse_config(f"""\
state_dir: {tmp_path / "state"}
influx: {{url: 'http://127.0.0.1:9', api: v1, bucket: x}}
mqtt: {{host: 127.0.0.1, port: 9, client_id: c{extra}}}
sites:
  - id: s1
    name: 向阳荷花广场
    district: 宛城区
    meters:
      - {{id: E1, role: extraction, mqtt: {{topic: dtu/E1, profile: dtu-json}}}}
      - {{id: R1, role: reinjection, mqtt: {{topic: dtu/R1, profile: dtu-json}}}}
""", "c.yaml", env={})
    source = mqtt_source(config, SystemClock())
    assert isinstance(source, MqttSource)
    return source


@pytest.mark.parametrize(("extra", "taken"), [("", False), (", accept_retained: true", True)])
def test_a_retained_message_is_a_reading_only_when_accepted(tmp_path: Path, extra: str, taken: bool) -> None:
    source = _source(tmp_path, extra)
    now = 1782864030.0
    payload = json.dumps({"ts": int(now) - 60, "rate_m3h": 0.0, "total_m3": 1.0}).encode()
    readings, letters = source._decode([_Message(0, 1, 1, "dtu/E1", payload, now, False, len(payload), retain=True),
                                        _Message(0, 2, 1, "dtu/R1", payload, now, False, len(payload))])
    assert [r.meter for r in readings] == (["E1", "R1"] if taken else ["R1"])
    assert [(d.topic, d.reason) for d in letters] == ([] if taken else [("dtu/E1", "retained")])
    assert source.deadletters is not None
    source.deadletters.close()
