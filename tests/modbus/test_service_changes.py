"""`gshp run`'s wiring: a meter swapped under the running service — real pymodbus simulator on loopback,
the sources `gshp run` builds, the service, a real influxd — reaches the rule engine as a meter change and
raises `meter_changed`, with no reset and no discharge."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from alerting.model import Alert
from collector.modbus import PROFILES
from gshp.config import load_config
from gshp.devstack import Influxd, free_port
from gshp.service import Service
from gshp.sources import build_sources
from simulators.clock import SimClock
from simulators.modbus import ModbusSimServer, Scenario, image_size, range_units
from tests.modbus.conftest import run

pytestmark = pytest.mark.integration

TUF = PROFILES.get("tuf2000m")


def _config(tmp_path: Path, influxd: Influxd, db: str, port: int) -> Path:
    path = tmp_path / "gshp.yaml"
    path.write_text(f"""
state_dir: {tmp_path}/state
influx: {{url: "{influxd.url}", api: v1, bucket: {db}}}
api: {{listen: "127.0.0.1:{free_port()}"}}
gateways: [{{id: gw1, transport: tcp, host: 127.0.0.1, port: {port}, interval: 500ms, timeout: 300ms,
             retries: 0}}]
sites:
  - id: hehua
    name: 向阳荷花广场
    district: 宛城区
    meters:
      - {{id: E1, role: extraction, modbus: {{gateway: gw1, unit: 1}}}}
      - {{id: R1, role: reinjection, modbus: {{gateway: gw1, unit: 2}}}}
""", encoding="utf-8")
    return path


async def _serve_until_changed(tmp_path: Path, influxd: Influxd, db: str) -> tuple[list[Alert], int]:
    clock = SimClock(speed=60.0)  # a data minute per second; the rules evaluate every 5 s
    units = range_units(TUF, [1, 2], Scenario(), lambda: (clock.now() - clock.start).total_seconds(),
                        per_unit={2: Scenario.parse("swap:3")})  # R1 is replaced after 3 data minutes
    async with ModbusSimServer(units, size=image_size(TUF)) as server:
        config = load_config(_config(tmp_path, influxd, db, server.port))
        service = Service(config, build_sources(config, clock), clock=clock)
        task = asyncio.create_task(service.serve())
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not task.done():
                alerts = service.store.open_alerts()
                if any(a.rule == "meter_changed" and a.state == "firing" for a in alerts):
                    break
                await asyncio.sleep(0.2)
            await asyncio.sleep(6)  # one more evaluation: the readings after the swap are in the windows
            alerts, changes = service.store.open_alerts(), service.engine.stats.changes
        finally:
            service.stop()
            await task
    return alerts, changes


def test_a_meter_swapped_under_the_running_service_raises_meter_changed(
        influxd: Influxd, influx_db: str, tmp_path: Path) -> None:
    alerts, changes = run(_serve_until_changed(tmp_path, influxd, influx_db), timeout=120)
    assert changes == 1
    rules = {a.rule: a for a in alerts}
    assert "meter_changed" in rules, [a.rule for a in alerts]
    alert = rules["meter_changed"]
    assert alert.state == "firing" and alert.kind == "data_quality" and alert.severity == "high"
    ev = alert.evidence
    assert (ev["meter"], ev["kind"], ev["field"], ev["old"], ev["new"]) == (
        "R1", "serial_changed", "serial_number", 20240002, 30240002)
    assert alert.summary == ("向阳荷花广场 流量计被更换或设置被改动：R1 序列号（serial_number）20240002 → 30240002")
    assert "totalizer_reset" not in rules  # the new meter's total from zero is a rebase, not a reset
    assert not [a for a in alerts if a.kind == "discharge"]
