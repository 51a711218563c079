"""Pieces the fault tests share: Modbus simulators on a background loop, a steady QoS 1 DTU publisher,
an outbox audit trail, line parsing and `gshp run` configs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from datetime import datetime
from pathlib import Path
from typing import Any

from collector.modbus import PROFILES
from collector.outbox import Chunk, Outbox
from simulators.modbus import DayCycleFlow, MeterModel, ModbusSimServer, SimulatedMeter, image_size
from tests.mqtt_support import Publisher

TUF = PROFILES.get("tuf2000m")

Point = tuple[str, int, float]  # (meter, time ms, total_m3)


class ModbusSims:
    """Simulated TUF-2000M meters served by real pymodbus servers (one per gateway) on a loop thread.
    `pause(gw)` / `resume(gw)` take a gateway's server down and up (a flapping gateway)."""

    def __init__(self, gateways: dict[str, list[int]], speed: float = 60.0) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="modbus-sims", daemon=True)
        self._thread.start()
        start = time.monotonic()
        self.meters: dict[str, dict[int, SimulatedMeter]] = {}
        self.servers: dict[str, ModbusSimServer] = {}
        self.ports: dict[str, int] = {}
        for gw, units in gateways.items():
            self.meters[gw] = {u: SimulatedMeter(TUF, MeterModel(DayCycleFlow(40.0 + u), seed=u, noise_pct=0.2),
                                                 clock=lambda: 3600.0 + (time.monotonic() - start) * speed)
                               for u in units}
            self.servers[gw] = ModbusSimServer(self.meters[gw], size=image_size(TUF))
            self._call(self.servers[gw].start())
            self.ports[gw] = self.servers[gw].port

    def _call(self, coro: Any, timeout: float = 15.0) -> Any:
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)

    def pause(self, gw: str) -> None:
        self._call(self.servers[gw].stop())

    def resume(self, gw: str) -> None:
        self.servers[gw] = ModbusSimServer(self.meters[gw], size=image_size(TUF), port=self.ports[gw])
        self._call(self.servers[gw].start())

    def close(self) -> None:
        for server in self.servers.values():
            with contextlib.suppress(Exception):  # already stopped by pause()
                self._call(server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


class SteadyDtus:
    """DTUs publishing at QoS 1 at a steady pace from a thread until `finish()`; `published` holds every
    point the broker confirmed (publish_all returns only when all are confirmed)."""

    def __init__(self, port: int, client_id: str, meters: list[str], start: datetime, per_s: float,
                 topic: str = "dtu/{meter}/up", limit: int = 1_000_000, step_ms: int = 10, **auth: Any) -> None:
        self.pub = Publisher(port, client_id, window=200, **auth)
        self.meters, self.start, self.per_s, self.topic, self.limit = meters, start, per_s, topic, limit
        self.step_ms = step_ms  # device time between two readings of one meter
        self.published: list[Point] = []
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="dtus", daemon=True)
        self._thread.start()

    def _messages(self) -> Iterator[tuple[str, bytes]]:
        t0 = time.monotonic()
        for i in range(self.limit):
            if self._stop.is_set():
                return
            meter = self.meters[i % len(self.meters)]
            ms = int(self.start.timestamp() * 1000) + (i // len(self.meters)) * self.step_ms
            total = 1000.0 + i * 0.25
            self.published.append((meter, ms, total))
            yield self.topic.format(meter=meter), json.dumps({"ts": ms, "rate_m3h": 50.0, "total_m3": total}).encode()
            ahead = (i + 1) / self.per_s - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)

    def _run(self) -> None:
        try:
            self.pub.publish_all(self._messages(), timeout=600)
        except BaseException as exc:  # reported by finish()
            self.error = exc

    def finish(self, timeout: float = 120.0) -> list[Point]:
        self._stop.set()
        self._thread.join(timeout)
        self.pub.close()
        assert not self._thread.is_alive(), "the publisher did not finish"
        assert self.error is None, self.error
        return self.published


def install_audit(outbox: Path) -> None:
    """Create the outbox with an audit table filled by a trigger in the same transaction as every
    commit: the audit holds exactly what the collector committed, whatever happens to the process."""
    Outbox(outbox).close()  # the outbox's own schema
    db = sqlite3.connect(outbox)
    db.executescript("""
        CREATE TABLE IF NOT EXISTS audit (body TEXT NOT NULL, is_json INTEGER NOT NULL);
        CREATE TRIGGER IF NOT EXISTS audit_commit AFTER INSERT ON outbox
            BEGIN INSERT INTO audit (body, is_json) VALUES (NEW.body, NEW.is_json); END;
    """)
    db.close()


def parse_flow(line: str) -> tuple[dict[str, str], dict[str, str], int] | None:
    """(tags, fields, ts) of a `flow` line whose tags hold no escapes (the test configs' are plain)."""
    if not line.startswith("flow,"):
        return None
    head, fields, ts = line.rsplit(" ", 2)
    tags = dict(kv.split("=", 1) for kv in head.split(",")[1:])
    return tags, dict(kv.split("=", 1) for kv in fields.split(",")), int(ts)


def audited(outbox: Path) -> list[Point]:
    """Every flow point the collector ever committed (with repeats, if it committed one twice)."""
    db = sqlite3.connect(outbox)
    try:
        chunks = [Chunk(0, 0, body, bool(is_json)) for body, is_json in db.execute("SELECT body, is_json FROM audit")]
    finally:
        db.close()
    out: list[Point] = []
    for chunk in chunks:
        for line in chunk.lines:
            parsed = parse_flow(line)
            if parsed is not None:
                tags, fields, ts = parsed
                out.append((tags["meter"], ts, float(fields["total_m3"])))
    return out


def write_run_config(path: Path, *, state_dir: Path, influx_url: str, db: str, api_port: int,
                     mqtt_port: int | None = None, gateways: dict[str, int] | None = None,
                     meters: str, extra: str = "", mqtt_extra: str = "", influx_extra: str = "") -> Path:
    gw = "".join(f"  - {{id: {g}, transport: tcp, host: 127.0.0.1, port: {p}, interval: 250ms, timeout: 200ms, "
                 f"retries: 0, reconnect_delay: 100ms}}\n" for g, p in (gateways or {}).items())
    mqtt = (f"mqtt: {{host: 127.0.0.1, port: {mqtt_port}, client_id: gshp-faults, reconnect_min: 200ms, "
            f"reconnect_max: 1s{mqtt_extra}}}\n") if mqtt_port else ""
    path.write_text(f"""\
timezone: Asia/Shanghai
state_dir: {state_dir}
influx: {{url: '{influx_url}', api: v1, bucket: {db}{influx_extra}}}
outbox: {{max_batch_age: 100ms}}
api: {{listen: '127.0.0.1:{api_port}'}}
{mqtt}{"gateways:" + chr(10) + gw if gw else ""}sites:
  - id: s1
    name: 向阳荷花广场
    district: 宛城区
    meters:
{meters}
{extra}""", encoding="utf-8")
    return path
