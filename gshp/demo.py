"""The demo city, end to end on this machine.

A private mosquitto and influxd on loopback (or the InfluxDB and broker a config file names); fourteen
sites in four districts of 南阳 (on the board's map, over simplified district outlines) whose meters are real
Modbus TCP simulators (one gateway per district, registers encoded from the TUF-2000M profile), MQTT DTUs
publishing `dtu-json`, HJ 212 data loggers and an SZY 206 terminal uploading over TCP; the service collecting
them, evaluating the rules and serving the board; a webhook receiver that prints every incident notice it is sent.
Two sites drain water (one grossly, one at night only), one has a reinjection meter that goes silent.
Everything runs on one accelerated clock and stops with Ctrl-C, leaving no process behind.

Each run makes a viewer and an enforcement API token. On loopback anyone on the machine reads without a
token and acknowledging needs the enforcement token; on any other address every request needs a token.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import yaml

from collector.modbus import PROFILES
from collector.modbus.dtu import ProfileCodec
from collector.mqtt.profile import load_profiles
from collector.mqtt.topics import plan_routes
from collector.problems import ZhEn
from collector.redact import redact
from gshp.config import ApiSettings, Config, ConfigError, Problem, load_config
from gshp.devstack import Influxd, Mosquitto, free_port
from gshp.service import Service
from gshp.sources import build_sources
from simulators.city import CITY, CityPhysics, SitePlan, city_config
from simulators.clock import SimClock
from simulators.datalogger import DataLogger, Encoder
from simulators.hj212 import hj212_answers, hj212_stations
from simulators.modbus import Framer, ModbusSimServer, SimulatedMeter, image_size
from simulators.mqtt.publisher import DtuSimulator
from simulators.szy206 import szy206_answers, szy206_terminals

__all__ = ["AlertPrinter", "ExternalServers", "access_lines", "demo_api", "external_servers", "run_demo"]

VIEWER_TOKEN, ENFORCEMENT_TOKEN = "GSHP_DEMO_VIEWER_TOKEN", "GSHP_DEMO_ENFORCEMENT_TOKEN"
"""The environment variables the demo's config names for its tokens (the file never holds them)."""

log = logging.getLogger(__name__)

MARK = {"opened": "新事件 OPENED", "reopened": "再次发生 REOPENED", "escalated": "升级 ESCALATED",
        "resolved": "已结束 RESOLVED", "case_closed": "已结案 CLOSED"}


class AlertPrinter:
    """A webhook receiver on loopback that prints each incident notice it is sent (and keeps them)."""

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
        incident = event["incident"]
        print(f"[{at:%m-%d %H:%M}] {MARK.get(event['change'], event['change'])} {incident['district']} "
              f"{incident['summary'].get('zh', '')}", flush=True)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass(frozen=True)
class ExternalServers:
    """The InfluxDB and MQTT broker a config file names, used instead of the demo's private ones: each
    section as written in the file (``${VAR}`` kept, so no secret is copied), None where the file has none."""

    file: Path | None = None
    influx: dict[str, Any] | None = None
    mqtt: dict[str, Any] | None = None


def external_servers(path: Path) -> ExternalServers:
    """The servers `path` names; raises `ConfigError` when the file is invalid or a server does not answer."""
    config = load_config(path)
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    out = ExternalServers(path, raw["influx"] if "influx" in config.model_fields_set else None,
                          raw["mqtt"] if config.mqtt is not None else None)
    problems = []
    if out.influx is not None:
        url = urlsplit(config.influx.url)
        where = (url.hostname or "127.0.0.1", url.port or (443 if url.scheme == "https" else 80))
        if not _answers(*where):
            problems.append(Problem(str(path), None, "influx.url", ZhEn(
                f"{where[0]}:{where[1]} 无人应答：请启动 InfluxDB，或去掉 `influx:` 由演示自带一个",
                f"nothing answers at {where[0]}:{where[1]}: start InfluxDB, or leave `influx:` out and the demo runs "
                "its own"), repr(config.influx.url)))
    if config.mqtt is not None and not _answers(config.mqtt.host, config.mqtt.port):
        at = f"{config.mqtt.host}:{config.mqtt.port}"
        problems.append(Problem(str(path), None, "mqtt", ZhEn(
            f"{at} 无人应答：请启动消息服务器，或去掉 `mqtt:` 由演示自带一个",
            f"nothing answers at {at}: start the broker, or leave `mqtt:` out and the demo runs its own")))
    if problems:
        raise ConfigError(problems)
    return out


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=3):
            return True
    except OSError:
        return False


def demo_api(listen: str) -> dict[str, Any]:
    """The demo's `api:` section: its two tokens (from the environment), read open on loopback."""
    return {"listen": listen, "loopback_read": True, "tokens": [
        {"token": f"${{{VIEWER_TOKEN}}}", "role": "viewer", "name": "demo viewer"},
        {"token": f"${{{ENFORCEMENT_TOKEN}}}", "role": "enforcement", "name": "demo enforcement"}]}


def access_lines(api: ApiSettings, viewer: str, enforcement: str) -> list[str]:
    """What the banner says about the board's address, the run's tokens and who may do what."""
    lines = [f"  board       http://{api.listen}/   (API: /api/alerts, /api/sites)",
             f"  tokens      查看 viewer        {viewer}",
             f"              执法 enforcement   {enforcement}   (本次运行有效 valid for this run)"]
    if api.open_read:
        lines += ["  access      本机访问：查看无需令牌，确认告警需执法令牌"
                  "（看板会提示输入，或 Authorization: Bearer <令牌>）",
                  "              loopback: reading needs no token; acknowledging an alert needs the enforcement "
                  "token (the board asks for it, or send Authorization: Bearer <token>)"]
    else:
        lines += ["  access      非本机地址：每个请求都需令牌——查看用查看令牌，确认告警用执法令牌"
                  "（看板会提示输入，或 Authorization: Bearer <令牌>）",
                  f"              {api.host} is not loopback: every request needs a token — the viewer token to "
                  "read, the enforcement token to acknowledge (the board asks for it, or send "
                  "Authorization: Bearer <token>)"]
    return lines


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


async def _upload_loggers(config: Config, physics: CityPhysics, clock: SimClock, every_s: float) -> None:
    """The HJ 212 data loggers and SZY 206 terminals: every `every_s` of data time, each station's frames
    (waiting for the centre's answers, sending again what is not answered)."""
    stations: list[tuple[str, Encoder, DataLogger]] = []
    if config.hj212 is not None:
        host, port = config.hj212.host, config.hj212.port
        for e in hj212_stations(config.sites, config.hj212.passwords(), config.tz, config.hj212.minute_interval):
            stations.append(("hj212", e, DataLogger(host, port, hj212_answers, window=4)))
    if config.szy206 is not None:
        host, port = config.szy206.host, config.szy206.port
        for t in szy206_terminals(config.sites, config.tz, config.szy206.flow_unit):
            stations.append(("szy206", t, DataLogger(host, port, szy206_answers)))
    try:
        while stations:
            now = clock.now()
            readings = {name: physics.readings(now, source=name) for name in ("hj212", "szy206")}
            for name, encoder, logger in stations:
                for upload in encoder.uploads(readings[name], now):
                    logger.add(upload)
            budget = clock.wall_seconds(every_s)
            await asyncio.gather(*(asyncio.to_thread(lg.pump, budget * 0.8) for _, _, lg in stations))
            await asyncio.sleep(max(0.0, budget - (clock.now() - now).total_seconds() / clock.speed))
    finally:
        for _, _, logger in stations:
            logger.close()


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


def run_demo(root: Path, speed: float, listen: str, hours: float | None = None,
             external: ExternalServers | None = None, start: datetime | None = None) -> int:
    """Run the demo city until Ctrl-C (or `hours` of data time) from `start` (default: an hour ago); raises
    `ConfigError` when its config cannot be used (a bad `--listen`)."""
    external = external or ExternalServers()
    root.mkdir(parents=True, exist_ok=True)
    mosquitto = Mosquitto(root / "mosquitto") if external.mqtt is None else None
    influxd = Influxd(root / "influxd") if external.influx is None else None
    tokens = {VIEWER_TOKEN: secrets.token_hex(16), ENFORCEMENT_TOKEN: secrets.token_hex(16)}
    printer: AlertPrinter | None = None
    try:
        for server in (mosquitto, influxd):
            if server is not None:
                server.start()
        districts = sorted({p.district for p in CITY})
        poll_s = max(0.5, min(10.0, 60.0 / speed))  # one reading per data minute, but not faster than 2/s
        raw = city_config(CITY, influx_url=influxd.url if influxd else "", mqtt_port=mosquitto.port if mosquitto else 0,
                          gateway_ports={d: free_port() for d in districts}, state_dir=str(root / "state"),
                          hj212_port=free_port(), szy206_port=free_port(),
                          listen=listen, interval=f"{round(poll_s * 1000)}ms",
                          timeout=f"{round(min(1.0, poll_s * 0.8) * 1000)}ms")
        _use(raw, external)
        raw["api"] = demo_api(listen)
        printer = AlertPrinter(ZoneInfo(raw["timezone"]))
        raw["notify"] = [{"name": "demo-printer", "type": "webhook", "url": printer.url, "group_wait": "0s",
                          "group_interval": "0s", "repeat_interval": "0s"}]
        outlines = root / "districts.geojson"
        outlines.write_bytes(resources.files("gshp").joinpath("demo-districts.geojson").read_bytes())
        raw["map"] = {"districts": str(outlines)}
        path = root / "city.yaml"
        path.write_text(f"# written by gshp demo; the API tokens are printed at each start ({VIEWER_TOKEN}, "
                        f"{ENFORCEMENT_TOKEN})\n" + yaml.safe_dump(raw, allow_unicode=True, sort_keys=False),
                        encoding="utf-8")
        config = load_config(path, env={**os.environ, **tokens})
        if start is None:
            start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
        clock = SimClock(speed, start)
        physics = CityPhysics(CITY, start, config.tz)
        service = Service(config, build_sources(config, clock), clock=clock)
        modbus = sum(1 for s in config.sites for m in s.meters if m.modbus)
        mqtt = sum(1 for s in config.sites for m in s.meters if m.mqtt)
        hj212 = sum(1 for s in config.sites for m in s.meters if m.hj212)
        szy206 = sum(1 for s in config.sites for m in s.meters if m.szy206)
        print(f"demo city: {len(config.sites)} sites in {len(districts)} districts, {modbus} Modbus meters on "
              f"{len(config.gateways)} gateways, {mqtt} MQTT DTU meters, {hj212} HJ 212 and {szy206} SZY 206 "
              f"meters; data time runs ×{speed:g}")
        for line in _plan_lines(CITY):
            print(line)
        for line in access_lines(config.api, tokens[VIEWER_TOKEN], tokens[ENFORCEMENT_TOKEN]):
            print(line)
        assert config.mqtt is not None
        influx_where = f"{redact(config.influx.url)} ({'bucket' if config.influx.api == 'v2' else 'database'} " \
                       f"{config.influx.bucket}{', from ' + str(external.file) if external.influx else ''})"
        mqtt_where = f"{config.mqtt.host}:{config.mqtt.port}" + \
                     (f" (from {external.file}, topics under gshp-demo/)" if external.mqtt else "")
        print(f"  config      {path}\n  InfluxDB    {influx_where}\n  MQTT        {mqtt_where}\n"
              "Incidents are printed below as the webhook receiver gets them. Ctrl-C stops everything.",
              flush=True)
        asyncio.run(_serve(service, config, physics, clock, poll_s, hours))
    finally:
        if printer is not None:
            printer.close()
        for server in (influxd, mosquitto):
            if server is not None:
                server.stop()
    print("demo stopped; data kept under", root)
    return 0


def _use(raw: dict[str, Any], external: ExternalServers) -> None:
    """Point the demo's config at the servers of `external`. On a shared broker the demo has a client id
    of its own, no shared subscription group, and its DTU topics under ``gshp-demo/``."""
    if external.influx is not None:
        raw["influx"] = external.influx
    if external.mqtt is not None:
        raw["mqtt"] = {**{k: v for k, v in external.mqtt.items() if k != "shared_group"}, "client_id": "gshp-demo"}
        for site in raw["sites"]:
            for meter in site["meters"]:
                if "mqtt" in meter:
                    meter["mqtt"]["topic"] = f"gshp-demo/{meter['mqtt']['topic']}"


async def _serve(service: Service, config: Config, physics: CityPhysics, clock: SimClock, poll_s: float,
                 hours: float | None) -> None:
    servers = _modbus_servers(config, physics, clock)
    for s in servers:
        await s.start()
    extra = [_publish_dtus(config, physics, clock, 60.0), _upload_loggers(config, physics, clock, 60.0),
             _report(service)]
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

