"""A config reload of an HJ 212 deployment: `gshp run`'s service and reloader, a real influxd and a data
logger on loopback TCP. A station added by the reload is taken on the logger's open connection (the server
keeps its connections: only its station plan changes); before the reload its frames were refused unanswered."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from collector.hj212 import encode_packet
from gshp.config import load_config
from gshp.devstack import Influxd, free_port, wait_port
from gshp.reload import Reloader
from gshp.service import Service
from gshp.sources import build_sources
from tests.helpers import count

pytestmark = pytest.mark.integration

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime.now(UTC).replace(microsecond=0)
SITE = """
  - id: {id}
    name: 站点 {id}
    district: 宛城区
    meters:
      - {{id: E1, role: extraction, hj212: {{mn: {mn}}}}}
      - {{id: R1, role: reinjection}}"""


def _write(path: Path, state: Path, influxd: Influxd, db: str, api: int, port: int, stations: int) -> None:
    mns = [f"MN{i}" for i in range(1, stations + 1)]
    path.write_text(f"""
timezone: Asia/Shanghai
state_dir: {state}
influx: {{url: "{influxd.url}", api: v1, bucket: {db}}}
outbox: {{max_batch_age: 100ms}}
api: {{listen: "127.0.0.1:{api}"}}
hj212:
  listen: 127.0.0.1:{port}
  stations: [{', '.join(f'{{mn: {mn}, password: pw}}' for mn in mns)}]
sites:""" + "".join(SITE.format(id=f"s{i}", mn=mn) for i, mn in enumerate(mns, 1)) + "\n", encoding="utf-8")


def _frame(mn: str, i: int) -> bytes:
    ts = (NOW - timedelta(minutes=30) + timedelta(minutes=i)).astimezone(TZ).strftime("%Y%m%d%H%M%S")
    return encode_packet(f"QN={ts}{i:03d};ST=32;CN=2011;PW=pw;MN={mn};Flag=5;CP=&&DataTime={ts};"
                         f"w00000-Rtd=40.0;w00001-Rtd={1000 + i}&&")


async def _answered(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, frame: bytes,
                    timeout: float = 5.0) -> bool:
    writer.write(frame)
    await writer.drain()
    try:
        return b"CN=9014" in await asyncio.wait_for(reader.readuntil(b"\r\n"), timeout)
    except TimeoutError:
        return False


def _count(influxd: Influxd, db: str, site: str) -> int:
    return count(influxd, db, where=f"WHERE site='{site}'")


async def _reload_adds_a_station(tmp_path: Path, influxd: Influxd, db: str) -> dict[str, bool | str]:
    path, port = tmp_path / "gshp.yaml", free_port()
    args = (tmp_path / "state", influxd, db, free_port(), port)
    _write(path, *args, stations=1)
    config = load_config(path)
    service = Service(config, build_sources(config))
    reloader = Reloader(service, path, lambda c: c, build_sources)
    task = asyncio.create_task(service.serve())
    try:
        await asyncio.to_thread(wait_port, "127.0.0.1", port, 30)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        seen: dict[str, bool | str] = {
            "MN1 before": await _answered(reader, writer, _frame("MN1", 0)),
            "MN2 before": await _answered(reader, writer, _frame("MN2", 0), timeout=1.0)}
        _write(path, *args, stations=2)
        outcome = await reloader.reload()
        seen["reload"] = outcome.ok and "restarted" not in outcome.changes
        seen["MN2 after"] = await _answered(reader, writer, _frame("MN2", 1))
        seen["MN1 after"] = await _answered(reader, writer, _frame("MN1", 1))
        writer.close()
        return seen
    finally:
        service.stop()
        await task


def test_a_reload_adding_an_hj212_station_takes_its_frames_on_the_open_connection(
        influxd: Influxd, influx_db: str, tmp_path: Path) -> None:
    seen = asyncio.run(asyncio.wait_for(_reload_adds_a_station(tmp_path, influxd, influx_db), 90))
    assert seen == {"MN1 before": True, "MN2 before": False, "reload": True, "MN2 after": True,
                    "MN1 after": True}
    assert (_count(influxd, influx_db, "s1"), _count(influxd, influx_db, "s2")) == (2, 1)
