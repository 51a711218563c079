"""A running service (in a thread, on an accelerated clock) fed by the simulated city feed; `serving` runs one
with any config and clock (a test feeding its own readings in data time uses `DataClock`); `SseClient`
collects the events of `/api/stream`."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from gshp.clock import Clock
from gshp.config import Config, parse_config
from gshp.devstack import Influxd, free_port
from gshp.service import Service, Source
from simulators.city import CityPhysics, SitePlan
from simulators.city import meter_plan as _m
from simulators.clock import SimClock
from simulators.feed import SimulatedFeed
from tests.helpers import wait_until

TOKENS = {"viewer": "viewer-token-0123456789", "wancheng": "enforce-wancheng-0123456789",
          "admin": "admin-token-0123456789"}


@dataclass
class Running:
    service: Service
    url: str
    config: Config
    verify: str | bool = True  # a CA file when the API serves TLS

    def get(self, path: str, token: str | None = "viewer", **kw: object) -> requests.Response:
        return requests.get(self.url + path, headers=_headers(token), timeout=10,  # type: ignore[arg-type]
                            verify=self.verify, **kw)

    def post(self, path: str, body: dict[str, object], token: str | None = "wancheng") -> requests.Response:
        return requests.post(self.url + path, json=body, headers=_headers(token), timeout=10, verify=self.verify)


def _headers(token: str | None) -> dict[str, str]:
    # one connection per request: a response a test keeps would hold its connection open, and a TLS server
    # shutting down waits 30 s for the close_notify of every open connection
    return {"Connection": "close", **({"Authorization": f"Bearer {TOKENS[token]}"} if token else {})}


@contextmanager
def serving(config: Config, sources: Sequence[Source] = (), clock: Clock | None = None,
            verify: str | bool = True) -> Iterator[Running]:
    """`Service.serve` (what `gshp run` runs) in a thread until the block ends."""
    service = Service(config, sources=sources, clock=clock)
    thread = threading.Thread(target=asyncio.run, args=(service.serve(),), daemon=True)
    thread.start()
    scheme = "https" if config.api.tls else "http"
    running = Running(service, f"{scheme}://127.0.0.1:{config.api.port}", config, verify)
    try:
        wait_until(lambda: not thread.is_alive() or _up(running), timeout=30)
        assert thread.is_alive(), "the service stopped at start-up: see the log above"
        yield running
    finally:
        service.stop()
        thread.join(30)


@dataclass
class SseClient:
    """Reads `/api/stream` in a thread; `events` holds (event name, data) in arrival order. Plain `http.client`,
    so `close` can shut the socket down under the blocked reader instead of waiting for a keep-alive."""

    running: Running
    token: str = "viewer"
    query: str = ""
    events: list[tuple[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        url = urlsplit(self.running.url)
        self._conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
        self._conn.request("GET", f"/api/stream{self.query}", headers={"Authorization": f"Bearer {TOKENS[self.token]}"})
        self._response = self._conn.getresponse()
        assert self._response.status == 200, self._response.read()
        assert self._response.getheader("content-type", "").startswith("text/event-stream")
        assert self._response.readline() == b": connected\n"  # subscribed: what is published from now on arrives
        assert self._conn.sock is not None
        self._conn.sock.settimeout(None)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        name = "message"
        try:
            while line := self._response.readline():
                text = line.decode("utf-8").rstrip("\n")
                if text.startswith("event: "):
                    name = text[7:]
                elif text.startswith("data: "):
                    self.events.append((name, json.loads(text[6:])))
                    name = "message"
        except (OSError, ValueError, http.client.HTTPException):
            pass  # closed by `close`

    def of(self, name: str) -> list[Any]:
        return [data for n, data in list(self.events) if n == name]

    def close(self) -> None:
        if self._conn.sock is not None:
            with suppress(OSError):
                self._conn.sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(10)
        self._conn.close()


OUTLINES = {"type": "FeatureCollection", "features": [
    {"type": "Feature", "properties": {"name": name},
     "geometry": {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}}
    for name, (w, s, e, n) in {"宛城区": (112.53, 32.94, 112.62, 33.07),
                               "卧龙区": (112.40, 32.94, 112.53, 33.07)}.items()]}
"""The city's two districts as rectangles (west, south, east, north) around its sites."""


def city_yaml(state_dir: Path, influx_url: str, db: str, port: int, outlines: Path | None = None,
              loopback_read: bool = False) -> str:
    """The test city; `outlines`: a GeoJSON file for `map.districts`; `loopback_read`: reads need no token (as in
    the demo)."""
    return f"""
timezone: Asia/Shanghai
state_dir: {state_dir}
influx: {{url: "{influx_url}", api: v1, bucket: {db}}}
outbox: {{max_batch_age: 200ms}}
api:
  listen: 127.0.0.1:{port}
  loopback_read: {str(loopback_read).lower()}
  tokens:
    - {{token: {TOKENS['viewer']}, role: viewer, name: 水利局}}
    - {{token: {TOKENS['wancheng']}, role: enforcement, name: 宛城区执法大队, districts: [宛城区]}}
    - {{token: {TOKENS['admin']}, role: admin, name: ops}}
sites:
  - id: hehua
    name: 向阳荷花广场
    district: 宛城区
    location: {{lat: 33.0, lon: 112.56, address: 南阳市宛城区向阳路}}
    meters: [{{id: E1, role: extraction}}, {{id: R1, role: reinjection}}]
  - id: hospital
    name: 宛城区人民医院
    district: 宛城区
    location: {{lat: 32.99, lon: 112.575}}
    meters:
      - {{id: E1, role: extraction, record: {{serial: TUF-2311-0042, model: TUF-2000M, installed: 2024-03-01,
          calibration: {{number: "宛计检字[2025]第118号", date: 2025-06-01, next_due: 2026-06-01}}}}}}
      - {{id: R1, role: reinjection}}
      - {{id: R2, role: reinjection}}
  - id: school
    name: 卧龙区第一中学
    district: 卧龙区
    location: {{lat: 32.985, lon: 112.48, address: 南阳市卧龙区卧龙路}}
    meters: [{{id: E1, role: extraction}}, {{id: R1, role: reinjection}}]
""" + (f"map: {{districts: {outlines}}}\n" if outlines else "")


@pytest.fixture(scope="module")
def running(influxd: Influxd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    root = tmp_path_factory.mktemp("api")
    port = free_port()
    outlines = root / "districts.geojson"
    outlines.write_text(json.dumps(OUTLINES, ensure_ascii=False), encoding="utf-8")
    config = parse_config(city_yaml(root / "state", influxd.url, "api_city", port, outlines))
    clock = SimClock(speed=600)
    plans = (SitePlan("hehua", "向阳荷花广场", "宛城区", (_m("E1@feed"), _m("R1@feed", 0.002)), 40),
             SitePlan("hospital", "宛城区人民医院", "宛城区", (_m("E1@feed"), _m("R1@feed"), _m("R2@feed")), 80,
                      drain=0.4),
             SitePlan("school", "卧龙区第一中学", "卧龙区", (_m("E1@feed"), _m("R1@feed")), 60, drain=0.4))
    feed = SimulatedFeed(CityPhysics(plans, clock.start, config.tz), clock, interval_s=30)
    with serving(config, [feed], clock) as running:
        yield running


def _up(running: Running) -> bool:
    """Serving, and the start-up back-fill over (health is `degraded` while it runs)."""
    try:
        r = requests.get(running.url + "/healthz", timeout=1, verify=running.verify)
        return r.status_code == 200 and r.json().get("backfill", {}).get("state") not in ("waiting", "running")
    except requests.RequestException:
        return False
