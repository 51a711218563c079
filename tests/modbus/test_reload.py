"""A config reload of a Modbus deployment: `gshp run`'s service and reloader, a real pymodbus simulator on
loopback and a real influxd. Adding a site on the same gateway restarts the gateway's poller with the new
plan: the new site's meters are polled and stored from then on, the kept site's polls go on, and health
shows the new config's hash and when it was loaded, in the config's zone."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from collector.modbus import PROFILES
from gshp.config import load_config
from gshp.devstack import Influxd, free_port
from gshp.reload import Reloader, ReloadOutcome
from gshp.service import Service
from gshp.sources import build_sources
from simulators.clock import SimClock
from simulators.modbus import ModbusSimServer, Scenario, image_size, range_units
from tests.helpers import count
from tests.modbus.conftest import run

pytestmark = pytest.mark.integration

TUF = PROFILES.get("tuf2000m")
SITE = """
  - id: {id}
    name: 站点 {id}
    district: 宛城区
    meters:
      - {{id: E1, role: extraction, modbus: {{gateway: gw1, unit: {e}}}}}
      - {{id: R1, role: reinjection, modbus: {{gateway: gw1, unit: {r}}}}}"""


def _write(path: Path, state: Path, influxd: Influxd, db: str, port: int, api: int, sites: int) -> None:
    path.write_text(f"""
state_dir: {state}
influx: {{url: "{influxd.url}", api: v1, bucket: {db}}}
outbox: {{max_batch_age: 100ms}}
api: {{listen: "127.0.0.1:{api}"}}
gateways: [{{id: gw1, transport: tcp, host: 127.0.0.1, port: {port}, interval: 300ms, timeout: 200ms,
             retries: 0}}]
sites:""" + "".join(SITE.format(id=f"s{i}", e=2 * i - 1, r=2 * i) for i in range(1, sites + 1)) + "\n",
                    encoding="utf-8")


def _count(influxd: Influxd, db: str, site: str) -> int:
    return count(influxd, db, where=f"WHERE site='{site}'")


async def _until(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(0.2)
    return False


@dataclass
class Seen:
    outcome: ReloadOutcome
    added: bool  # the new site's meters polled and stored
    kept: bool  # the kept site's polls went on after the reload
    hashes: tuple[str, str]  # the config's sha256 in health, before and after
    loaded: tuple[str, str]  # when it was loaded, in health, before and after
    sites: list[str]


async def _reload_adds_a_site(tmp_path: Path, influxd: Influxd, db: str) -> Seen:
    clock = SimClock(speed=60.0)
    units = range_units(TUF, [1, 2, 3, 4], Scenario(), lambda: (clock.now() - clock.start).total_seconds())
    async with ModbusSimServer(units, size=image_size(TUF)) as server:
        path = tmp_path / "gshp.yaml"
        args = (tmp_path / "state", influxd, db, server.port, free_port())
        _write(path, *args, sites=1)
        config = load_config(path)
        service = Service(config, build_sources(config, clock), clock=clock)
        reloader = Reloader(service, path, lambda c: c, lambda c: build_sources(c, clock))
        task = asyncio.create_task(service.serve())
        try:
            assert await _until(lambda: _count(influxd, db, "s1") >= 10, 30)
            before = reloader.stamp.sha256
            loaded = reloader.health()["config"]["loaded_at"]
            _write(path, *args, sites=2)
            outcome = await reloader.reload()
            s1_at_reload = _count(influxd, db, "s1")
            added = await _until(lambda: _count(influxd, db, "s2") >= 10, 30)
            kept = await _until(lambda: _count(influxd, db, "s1") >= s1_at_reload + 10, 30)
            after = reloader.health()["config"]
            return Seen(outcome, added, kept, (before, after["sha256"]), (loaded, after["loaded_at"]),
                        [s.id for s in service.config.sites])
        finally:
            service.stop()
            await task


def test_a_reload_adding_a_modbus_site_polls_and_stores_it_and_keeps_polling_the_others(
        influxd: Influxd, influx_db: str, tmp_path: Path) -> None:
    seen = run(_reload_adds_a_site(tmp_path, influxd, influx_db), timeout=120)
    assert seen.outcome.ok, seen.outcome.problems
    assert "restarted" in seen.outcome.changes, seen.outcome.changes  # the gateway's poller, with the new plan
    assert seen.sites == ["s1", "s2"] and seen.added and seen.kept
    assert seen.hashes[0] != seen.hashes[1]
    before, after = (datetime.fromisoformat(t) for t in seen.loaded)
    assert before.utcoffset() == after.utcoffset() == timedelta(hours=8)  # the config's zone (Asia/Shanghai)
    assert before < after
