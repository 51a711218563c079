"""`gshp sim mqtt` publishes what the ingester decodes, with consistent physics."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from collector.deadletter import DeadLetterStore
from collector.model import Reading, Role
from collector.mqtt.decode import DecodeContext
from collector.mqtt.ingester import MqttSource
from collector.mqtt.profile import load_profiles
from collector.mqtt.settings import MqttSettings
from collector.mqtt.topics import plan_routes
from gshp.config import load_config
from gshp.devstack import Mosquitto
from tests.helpers import wait_until
from tests.mqtt_support import REPO

pytestmark = pytest.mark.integration

METERS = """\
      - {id: E1, role: extraction, mqtt: {topic: sim/hehua/E1, profile: dtu-json}}
      - {id: E2, role: extraction, mqtt: {topic: sim/hehua/E2, profile: thingsboard}}
      - {id: R1, role: reinjection, mqtt: {topic: sim/hehua/multi, profile: holdingbyte-multi}}
      - {id: R2, role: reinjection, mqtt: {topic: sim/hehua/multi, profile: holdingbyte-multi}}
      - {id: R3, role: reinjection, mqtt: {topic: "sim/alink/{key}/thing/event/property/post",
                                        profile: alink, key: dev-r3}}
"""


@pytest.mark.parametrize("scenario", ["balanced", "discharge"])
def test_simulated_dtus_decode_cleanly_and_balance_per_scenario(
        mosquitto: Mosquitto, tmp_path: Path, scenario: str) -> None:
    config_file = tmp_path / "gshp.yaml"
    config_file.write_text(f"""\
state_dir: {tmp_path}/state
mqtt: {{port: {mosquitto.port}, client_id: sim-test-{scenario}}}
sites:
  - id: hehua
    name: 向阳荷花广场
    district: 宛城区
    meters:
{METERS}""", encoding="utf-8")
    config = load_config(config_file)
    assert config.mqtt is not None
    router = plan_routes(config.sites, load_profiles())
    store = DeadLetterStore(tmp_path / "dl.sqlite")
    settings = MqttSettings.model_validate({**config.mqtt.model_dump(), "client_id": f"c-{scenario}"})
    source = MqttSource(settings, router, DecodeContext(tz=ZoneInfo("Asia/Shanghai")), store)
    got: list[Reading] = []
    source.start(got.extend)
    try:
        assert source.wait_subscribed(10)
        cmd = [sys.executable, "-m", "gshp.cli", "sim", "mqtt", "--config", str(config_file),
               "--scenario", scenario, "--hours", "2", "--speed", "1000000", "--count", "3600"]
        out = subprocess.run(cmd,
                             env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        assert "published 3600 readings" in out.stdout
        wait_until(lambda: len(got) >= 3600, timeout=30)
    finally:
        source.close()
    assert len(DeadLetterStore(tmp_path / "dl.sqlite")) == 0
    totals: dict[str, list[float]] = defaultdict(list)
    for r in sorted(got, key=lambda r: r.ts):
        totals[r.meter].append(r.total_m3 or 0)
    assert set(totals) == {"E1", "E2", "R1", "R2", "R3"}
    volume = {m: v[-1] - v[0] for m, v in totals.items()}
    extracted = volume["E1"] + volume["E2"]
    reinjected = volume["R1"] + volume["R2"] + volume["R3"]
    expected = 1.0 if scenario == "balanced" else 0.8
    assert reinjected / extracted == pytest.approx(expected, abs=0.02)
    assert all(r.role is (Role.EXTRACTION if r.meter[0] == "E" else Role.REINJECTION) for r in got)
