"""The demo city: private servers on loopback, a simulated city, the service, and a live summary.

Twelve sites across four districts of 南阳 are simulated on an accelerated clock; two of them drain part of
their water away. Everything runs on 127.0.0.1 and stops with Ctrl-C, leaving no process behind.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import yaml

from collector import metrics
from gshp.config import Config, load_config
from gshp.devstack import Influxd, Mosquitto
from gshp.service import Service
from rules.events import AlertEvent
from simulators.clock import SimClock
from simulators.feed import SimulatedFeed

__all__ = ["CITY", "city_config", "run_demo"]

log = logging.getLogger(__name__)

# (id, name, district, extraction wells, reinjection wells, discharge fraction)
CITY: list[tuple[str, str, str, int, int, float]] = [
    ("hehua-plaza", "向阳荷花广场", "宛城区", 1, 2, 0.0),
    ("wancheng-hospital", "宛城区人民医院", "宛城区", 2, 3, 0.35),
    ("xinhua-mall", "新华城市广场", "宛城区", 1, 1, 0.0),
    ("wolong-school", "卧龙区第一中学", "卧龙区", 1, 2, 0.0),
    ("wolong-gov", "卧龙区政务服务中心", "卧龙区", 2, 2, 0.0),
    ("zhuge-garden", "诸葛花园小区", "卧龙区", 1, 3, 0.0),
    ("gaoxin-park", "高新区创业园", "高新区", 2, 4, 0.0),
    ("gaoxin-hotel", "高新假日酒店", "高新区", 1, 2, 0.12),
    ("optics-factory", "光电产业园", "高新区", 2, 3, 0.0),
    ("demo-zone-center", "示范区市民中心", "城乡一体化示范区", 1, 2, 0.0),
    ("baihe-villas", "白河湾别墅区", "城乡一体化示范区", 1, 1, 0.0),
    ("eco-school", "示范区实验学校", "城乡一体化示范区", 1, 2, 0.0),
]


def city_config(root: Path, influx_url: str, mqtt_port: int, listen: str) -> dict[str, Any]:
    sites = []
    for site_id, name, district, n_ext, n_rei, _ in CITY:
        meters = [{"id": f"E{i + 1}", "role": "extraction"} for i in range(n_ext)]
        meters += [{"id": f"R{i + 1}", "role": "reinjection"} for i in range(n_rei)]
        sites.append({"id": site_id, "name": name, "district": district, "meters": meters})
    return {
        "timezone": "Asia/Shanghai",
        "state_dir": str(root / "state"),
        "influx": {"url": influx_url, "api": "v1", "bucket": "gshp"},
        "mqtt": {"host": "127.0.0.1", "port": mqtt_port, "client_id": "gshp-demo"},
        "outbox": {"max_batch_age": "500ms"},
        "sites": sites,
        "api": {"listen": listen},
    }


async def _report(service: Service, influxd: Influxd, every_s: float = 5.0) -> None:
    while True:
        await asyncio.sleep(every_s)
        accepted = sum(s.value for m in metrics.READINGS_ACCEPTED.collect() for s in m.samples
                       if s.name.endswith("_total"))
        try:
            res = await asyncio.to_thread(influxd.query, "SELECT count(total_m3) FROM flow", "gshp")
            stored = res[0]["series"][0]["values"][0][1] if res[0].get("series") else 0  # type: ignore[index]
        except Exception:
            stored = "?"
        print(f"readings accepted {accepted:,.0f} · in InfluxDB {stored} · outbox {service.outbox.depth}",
              file=sys.stderr, flush=True)


def _print_alert(event: AlertEvent) -> None:
    if event.state != "pending":
        mark = {"firing": "告警", "resolved": "恢复"}.get(event.state, event.state)
        print(f"[{event.at:%m-%d %H:%M}] {mark} {event.district} {event.summary}", flush=True)


def run_demo(root: Path, speed: float, listen: str) -> int:
    root.mkdir(parents=True, exist_ok=True)
    mosquitto = Mosquitto(root / "mosquitto")
    influxd = Influxd(root / "influxd")
    try:
        mosquitto.start()
        influxd.start()
        path = root / "city.yaml"
        path.write_text(yaml.safe_dump(city_config(root, influxd.url, mosquitto.port, listen), allow_unicode=True,
                                       sort_keys=False), encoding="utf-8")
        config: Config = load_config(path)
        feed = SimulatedFeed(config.sites, SimClock(speed), discharge={s[0]: s[5] for s in CITY if s[5]})
        service = Service(config, sources=[feed], clock=feed.clock)
        service.alert_listeners.append(_print_alert)
        print(f"demo city: {len(config.sites)} sites in 4 districts, simulated time ×{speed:g}\n"
              f"  config      {path}\n  InfluxDB    {influxd.url} (database gshp)\n"
              f"  MQTT        127.0.0.1:{mosquitto.port}\n  service     http://{listen}/healthz · /metrics\n"
              "Ctrl-C stops everything.", flush=True)
        asyncio.run(service.serve(extra=[_report(service, influxd)]))
    finally:
        influxd.stop()
        mosquitto.stop()
    print("demo stopped; data kept under", root)
    return 0
