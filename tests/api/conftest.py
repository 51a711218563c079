"""A running service (in a thread, on an accelerated clock) fed by the simulated city feed."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from gshp.config import Config, parse_config
from gshp.devstack import Influxd, free_port
from gshp.service import Service
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

    def get(self, path: str, token: str | None = "viewer", **kw: object) -> requests.Response:
        headers = {"Authorization": f"Bearer {TOKENS[token]}"} if token else {}
        return requests.get(self.url + path, headers=headers, timeout=10, **kw)  # type: ignore[arg-type]

    def post(self, path: str, body: dict[str, object], token: str = "wancheng") -> requests.Response:
        return requests.post(self.url + path, json=body, headers={"Authorization": f"Bearer {TOKENS[token]}"},
                             timeout=10)


def city_yaml(state_dir: Path, influx_url: str, db: str, port: int) -> str:
    return f"""
timezone: Asia/Shanghai
state_dir: {state_dir}
influx: {{url: "{influx_url}", api: v1, bucket: {db}}}
outbox: {{max_batch_age: 200ms}}
api:
  listen: 127.0.0.1:{port}
  tokens:
    - {{token: {TOKENS['viewer']}, role: viewer, name: 水利局}}
    - {{token: {TOKENS['wancheng']}, role: enforcement, name: 宛城区执法大队, districts: [宛城区]}}
    - {{token: {TOKENS['admin']}, role: admin, name: ops}}
sites:
  - id: hehua
    name: 向阳荷花广场
    district: 宛城区
    meters: [{{id: E1, role: extraction}}, {{id: R1, role: reinjection}}]
  - id: hospital
    name: 宛城区人民医院
    district: 宛城区
    meters: [{{id: E1, role: extraction}}, {{id: R1, role: reinjection}}, {{id: R2, role: reinjection}}]
  - id: school
    name: 卧龙区第一中学
    district: 卧龙区
    meters: [{{id: E1, role: extraction}}, {{id: R1, role: reinjection}}]
"""


@pytest.fixture(scope="module")
def running(influxd: Influxd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    root = tmp_path_factory.mktemp("api")
    port = free_port()
    config = parse_config(city_yaml(root / "state", influxd.url, "api_city", port))
    clock = SimClock(speed=600)
    plans = (SitePlan("hehua", "向阳荷花广场", "宛城区", (_m("E1@feed"), _m("R1@feed", 0.002)), 40),
             SitePlan("hospital", "宛城区人民医院", "宛城区", (_m("E1@feed"), _m("R1@feed"), _m("R2@feed")), 80,
                      drain=0.4),
             SitePlan("school", "卧龙区第一中学", "卧龙区", (_m("E1@feed"), _m("R1@feed")), 60, drain=0.4))
    feed = SimulatedFeed(CityPhysics(plans, clock.start, config.tz), clock, interval_s=30)
    service = Service(config, sources=[feed], clock=clock)
    thread = threading.Thread(target=asyncio.run, args=(service.serve(),), daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: _up(url), timeout=30)
    yield Running(service, url, config)
    service.stop()
    thread.join(30)


def _up(url: str) -> bool:
    try:
        return requests.get(url + "/healthz", timeout=1).status_code == 200
    except requests.RequestException:
        return False
