"""The demo city, end to end on this machine.

A private mosquitto and influxd on loopback; twelve sites in four districts of 南阳 whose meters are real
Modbus TCP simulators (one gateway per district, registers encoded from the TUF-2000M profile) and MQTT
DTUs publishing `dtu-json`; the service collecting them, evaluating the rules and serving the board; a
webhook receiver that prints every alert it is sent. Two sites drain water (one grossly, one at night
only), one has a reinjection meter that goes silent. Everything runs on one accelerated clock and
stops with Ctrl-C, leaving no process behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from collector.modbus import PROFILES
from collector.modbus.dtu import ProfileCodec
from collector.mqtt.profile import load_profiles
from collector.mqtt.topics import plan_routes
from gshp.config import Config, load_config
from gshp.devstack import Influxd, Mosquitto, free_port
from gshp.service import Service
from gshp.sources import build_sources
from simulators.city import CITY, CityPhysics, SitePlan, city_config
from simulators.clock import SimClock
from simulators.modbus import Framer, ModbusSimServer, SimulatedMeter, image_size
from simulators.mqtt.publisher import DtuSimulator

__all__ = ["AlertPrinter", "run_demo"]

log = logging.getLogger(__name__)

MARK = {"firing": "告警 FIRING", "resolved": "恢复 RESOLVED"}


class AlertPrinter:
    """A webhook receiver on loopback that prints each alert event it is sent (and keeps them)."""

    def __init__(self, tz: Any) -> None:
        self.events: list[dict[str, Any]] = []
        printer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(204)
                self.end_headers()
                with contextlib.suppress(ValueError):
                    printer.show(json.loads(body))

            def log_message(self, *args: object) -> None:
                pass

        self.tz = tz
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, name="alert-printer", daemon=True).start()

    def show(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        at = datetime.fromisoformat(event["at"]).astimezone(self.tz)
        print(f"[{at:%m-%d %H:%M}] {MARK.get(event['state'], event['state'])} {event['district']} "
              f"{event['summary']}", flush=True)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _modbus_servers(config: Config, physics: CityPhysics, clock: SimClock) -> list[ModbusSimServer]:
    """One Modbus TCP simulator per gateway, serving its units from the city physics."""
    model_clock = physics.model_clock(clock.now)
    models = physics.modbus_meters()
    units: dict[str, dict[int, SimulatedMeter]] = {}
    for site in config.sites:
        for m in site.meters:
            if m.modbus is not None:
                profile = PROFILES.get(m.modbus.profile)
                units.setdefault(m.modbus.gateway, {})[m.modbus.unit] = SimulatedMeter(
                    profile, models[(site.id, m.id)], model_clock)
    servers = []
    for gw in config.gateways:
        if gw.id in units:
            assert gw.port is not None
            size = max(image_size(u.profile) for u in units[gw.id].values())
            servers.append(ModbusSimServer(units[gw.id], size=size, framer=Framer.TCP, host="127.0.0.1",
                                           port=gw.port))
    return servers


async def _publish_dtus(config: Config, physics: CityPhysics, clock: SimClock, every_s: float) -> None:
    """The MQTT DTUs: every `every_s` of data time, each MQTT meter's reading as its profile encodes it."""
    assert config.mqtt is not None
    codec = ProfileCodec(PROFILES)
    router = plan_routes(config.sites, load_profiles(None), codec)
    dtus = DtuSimulator(config.mqtt, router, None, config.tz, codec)
    dtus.connect()
    try:
        while True:
            dtus.publish(physics.readings(clock.now(), source="mqtt"))
            await asyncio.sleep(clock.wall_seconds(every_s))
    finally:
        dtus.close()


async def _report(service: Service, every_s: float = 10.0) -> None:
    while True:
        await asyncio.sleep(every_s)
        firing = [a for a in service.store.open_alerts() if a.state == "firing"]
        now = service.clock.now().astimezone(service.config.tz)
        print(f"  {now:%m-%d %H:%M} 数据时间 data time · outbox {service.outbox.depth} · "
              f"{len(firing)} alerts firing", file=sys.stderr, flush=True)


def _plan_lines(plans: tuple[SitePlan, ...]) -> Iterator[str]:
    for p in plans:
        trouble = []
        if p.drain:
            trouble.append(f"drains {p.drain:.0%}{' at night' if p.night_only else ''}")
        trouble += [f"{m.id} goes silent after {m.silent_after_h:g} h" for m in p.meters if m.silent_after_h]
        sources = "+".join(sorted({m.source for m in p.meters}))
        yield f"  {p.district:<8} {p.name:<10} {sources:<12} {'; '.join(trouble) or 'honest'}"


def run_demo(root: Path, speed: float, listen: str, hours: float | None = None) -> int:
    root.mkdir(parents=True, exist_ok=True)
    mosquitto, influxd = Mosquitto(root / "mosquitto"), Influxd(root / "influxd")
    printer: AlertPrinter | None = None
    try:
        mosquitto.start()
        influxd.start()
        districts = sorted({p.district for p in CITY})
        poll_s = max(0.5, min(10.0, 60.0 / speed))  # one reading per data minute, but not faster than 2/s
        raw = city_config(CITY, influx_url=influxd.url, mqtt_port=mosquitto.port,
                          gateway_ports={d: free_port() for d in districts}, state_dir=str(root / "state"),
                          listen=listen, interval=f"{round(poll_s * 1000)}ms",
                          timeout=f"{round(min(1.0, poll_s * 0.8) * 1000)}ms")
        printer = AlertPrinter(ZoneInfo(raw["timezone"]))
        raw["notify"] = [{"name": "demo-printer", "type": "webhook", "url": printer.url, "group_wait": "0s",
                          "group_interval": "0s", "repeat_interval": "0s"}]
        path = root / "city.yaml"
        path.write_text("# written by gshp demo\n" + yaml.safe_dump(raw, allow_unicode=True, sort_keys=False),
                        encoding="utf-8")
        config = load_config(path)
        start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
        clock = SimClock(speed, start)
        physics = CityPhysics(CITY, start, config.tz)
        service = Service(config, build_sources(config, clock), clock=clock)
        modbus = sum(1 for s in config.sites for m in s.meters if m.modbus)
        mqtt = sum(1 for s in config.sites for m in s.meters if m.mqtt)
        print(f"demo city: {len(config.sites)} sites in {len(districts)} districts, {modbus} Modbus meters on "
              f"{len(config.gateways)} gateways, {mqtt} MQTT DTU meters; data time runs ×{speed:g}")
        for line in _plan_lines(CITY):
            print(line)
        print(f"  board       http://{listen}/   (API: /api/alerts, /api/sites; open read access on loopback)\n"
              f"  config      {path}\n  InfluxDB    {influxd.url} (database gshp)\n"
              f"  MQTT        127.0.0.1:{mosquitto.port}\n"
              "Alerts are printed below as the webhook receiver gets them. Ctrl-C stops everything.",
              flush=True)
        asyncio.run(_serve(service, config, physics, clock, poll_s, hours))
    finally:
        if printer is not None:
            printer.close()
        influxd.stop()
        mosquitto.stop()
    print("demo stopped; data kept under", root)
    return 0


async def _serve(service: Service, config: Config, physics: CityPhysics, clock: SimClock, poll_s: float,
                 hours: float | None) -> None:
    servers = _modbus_servers(config, physics, clock)
    for s in servers:
        await s.start()
    extra = [_publish_dtus(config, physics, clock, 60.0), _report(service)]
    if hours is not None:
        extra.append(_stop_after(service, clock.wall_seconds(hours * 3600)))
    try:
        await service.serve(extra=extra)
    finally:
        for s in servers:
            await s.stop()


async def _stop_after(service: Service, wall_s: float) -> None:
    await asyncio.sleep(wall_s)
    service.stop()

