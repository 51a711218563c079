"""`gshp sim mqtt` publishes what the ingester decodes, with the physics the Modbus simulators serve."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import defaultdict
from datetime import UTC, datetime, timedelta
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
from simulators.flow import Scenario
from simulators.modbus import site_units
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


def _simulate(mosquitto: Mosquitto, tmp_path: Path, name: str, meters: str, args: list[str], expect: int,
              head: str = "") -> list[Reading]:
    """Run `gshp sim mqtt` on a one-site config; return what the ingester decoded (nothing dead-lettered)."""
    config_file = tmp_path / "gshp.yaml"
    config_file.write_text(f"""\
state_dir: {tmp_path}/state
mqtt: {{port: {mosquitto.port}, client_id: sim-test-{name}}}
{head}sites:
  - id: hehua
    name: 向阳荷花广场
    district: 宛城区
    meters:
{meters}""", encoding="utf-8")
    config = load_config(config_file)
    assert config.mqtt is not None
    router = plan_routes(config.sites, load_profiles())
    store = DeadLetterStore(tmp_path / "dl.sqlite")
    settings = MqttSettings.model_validate({**config.mqtt.model_dump(), "client_id": f"c-{name}"})
    source = MqttSource(settings, router, DecodeContext(tz=ZoneInfo("Asia/Shanghai")), store)
    got: list[Reading] = []
    source.start(got.extend)
    try:
        assert source.wait_subscribed(10)
        cmd = [sys.executable, "-m", "gshp.cli", "sim", "mqtt", "--config", str(config_file), *args]
        out = subprocess.run(cmd,
                             env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        assert f"published {expect} readings" in out.stdout
        wait_until(lambda: len(got) >= expect, timeout=30)
    finally:
        source.close()
    assert len(DeadLetterStore(tmp_path / "dl.sqlite")) == 0
    return got


@pytest.mark.parametrize("scenario", ["balanced", "discharge:20"])
def test_simulated_dtus_decode_cleanly_and_balance_per_scenario(
        mosquitto: Mosquitto, tmp_path: Path, scenario: str) -> None:
    got = _simulate(mosquitto, tmp_path, scenario.replace(":", "-"), METERS,
                    ["--scenario", scenario, "--hours", "2", "--speed", "1000000", "--count", "3600"], 3600)
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


MIXED = """\
      - {id: E1, role: extraction, modbus: {gateway: gw1, unit: 1}}
      - {id: R1, role: reinjection, mqtt: {topic: sim/mixed/R1, profile: dtu-json}}
"""


@pytest.mark.parametrize(("scenario", "kept"), [("balanced", 1.0), ("discharge:20", 0.8)])
def test_a_dtu_reinjection_meter_follows_the_modbus_extraction_meter_all_day(
        mosquitto: Mosquitto, tmp_path: Path, scenario: str, kept: float) -> None:
    """Extraction read over Modbus (`gshp sim site`), reinjection published by a DTU (`gshp sim mqtt`):
    at every hour of a day, including 02:00, the DTU's rate is what the scenario keeps of the Modbus
    meter's, whenever each simulator was started."""
    head = "gateways: [{id: gw1, transport: tcp, host: 127.0.0.1, port: 5020}]\n"
    got = _simulate(mosquitto, tmp_path, f"mixed-{scenario.replace(':', '-')}", MIXED,
                    ["--scenario", scenario, "--hours", "24", "--interval", "600", "--speed", "1000000"], 145,
                    head=head)
    config = load_config(tmp_path / "gshp.yaml")
    site = config.sites[0]
    served_from = datetime.now(UTC) - timedelta(days=3)  # a Modbus simulator running for days already
    t = [0.0]
    e1 = site_units(site, {g.id: g for g in config.gateways}, Scenario.parse(scenario), served_from, config.tz,
                    lambda: t[0])["gw1"][1].model
    assert {r.meter for r in got} == {"R1"}
    hours = set()
    for r in sorted(got, key=lambda r: r.ts):
        t[0] = (r.ts - served_from).total_seconds()
        extracted = e1.sample(t[0])["rate_m3h"]
        assert r.rate_m3h == pytest.approx(extracted * kept, rel=0.03), r.ts.astimezone(config.tz)
        hours.add(r.ts.astimezone(config.tz).hour)
        if r.ts.astimezone(config.tz).hour == 2:
            assert extracted == pytest.approx(30.0, rel=0.03)  # the low of the local day: 40 − 25 %
    assert hours == set(range(24))
