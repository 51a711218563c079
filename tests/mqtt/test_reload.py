"""`gshp run` re-reads its config on SIGHUP, under MQTT load, against real mosquitto and influxd.

The service evaluates in data time (`--clock data`): DTUs publish per-minute readings from hours ago, so a
discharge opens an incident in seconds. A reload adds a site (collected, stored, evaluated: a balance and an
incident of its own), adds a token (it authenticates) and removes a webhook receiver (its peer hears nothing
after the reload, while it did before) — with every published reading stored and the open incident kept. A
broken config is refused with every problem logged, health says so, and the running config goes on.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

from gshp.devstack import Influxd, Mosquitto, free_port
from tests.helpers import wait_until
from tests.mqtt_support import Collector, Publisher, dtu_json, flow_count
from tests.notify_peers import HttpPeer, Received

VIEWER, NEW_TOKEN = "viewer-token-0123456789abcdef", "ops-token-fedcba9876543210"
FAST = "group_wait: 0s, group_interval: 0s, repeat_interval: 24h"
# (site, extraction rate, reinjection rate): s1 drains 40 % of its water, s2 (added by the reload) half
RATES = {"s1": (60.0, 36.0), "s2": (60.0, 30.0)}


def _config(path: Path, *, state: Path, influx: Influxd, db: str, broker: Mosquitto, api_port: int,
            sites: tuple[str, ...], tokens: tuple[str, ...], hooks: dict[str, HttpPeer], broken: bool = False) -> None:
    token_lines = "".join(f"\n    - {{token: {t}, role: viewer, name: holder-{t[:3]}}}" for t in tokens)
    hook_lines = "".join(f"\n  - {{name: {name}, type: webhook, url: '{peer.url}/hook', {FAST}}}"
                         for name, peer in hooks.items())
    site_lines = "".join(f"""
  - id: {s}
    name: 站点 {s}
    district: 宛城区
    meters:
      - {{id: E1, role: {'pumping' if broken else 'extraction'}, mqtt: {{topic: dtu/{s}-e/up, profile: dtu-json}}}}
      - {{id: R1, role: reinjection, accuracy_pct: {'-1' if broken else '1.0'}, mqtt: {{topic: dtu/{s}-r/up,
          profile: dtu-json}}}}""" for s in sites)
    path.write_text(f"""\
timezone: Asia/Shanghai
state_dir: {state}
influx: {{url: '{influx.url}', api: v1, bucket: {db}}}
outbox: {{max_batch_age: 100ms}}
mqtt: {{host: 127.0.0.1, port: {broker.port}, client_id: gshp-reload, reconnect_min: 1s, reconnect_max: 2s}}
api:
  listen: '127.0.0.1:{api_port}'
  tokens:{token_lines}
notify:{hook_lines}
sites:{site_lines}
""", encoding="utf-8")


def _messages(site: str, t0: datetime, minutes: range) -> Iterator[tuple[str, bytes]]:
    ext, rei = RATES[site]
    for m in minutes:
        ts = t0 + timedelta(minutes=m)
        yield f"dtu/{site}-e/up", dtu_json(ts, 1000.0 + ext * m / 60, ext)
        yield f"dtu/{site}-r/up", dtu_json(ts, 1000.0 + rei * m / 60, rei)


def _sites_in(received: list[Received]) -> list[str]:
    """The site of every incident notice the peer received."""
    return [r.json()["incident"]["site"] for r in list(received)]


def test_reload_adds_a_site_and_a_token_removes_a_receiver_and_refuses_a_broken_config(
        tmp_path: Path, influxd: Influxd, mosquitto: Mosquitto, influx_db: str) -> None:
    kept, removed = HttpPeer().start(), HttpPeer().start()
    api_port = free_port()
    cfg, log = tmp_path / "gshp.yaml", tmp_path / "gshp.log"
    common: dict[str, Any] = {"state": tmp_path / "state", "influx": influxd, "db": influx_db, "broker": mosquitto,
                              "api_port": api_port}
    _config(cfg, sites=("s1",), tokens=(VIEWER,), hooks={"hook-kept": kept, "hook-removed": removed}, **common)
    base = f"http://127.0.0.1:{api_port}"

    def get(path: str, token: str = VIEWER) -> requests.Response:
        return requests.get(base + path, headers={"Authorization": f"Bearer {token}"}, timeout=10)

    def health() -> dict[str, Any]:
        body: dict[str, Any] = requests.get(base + "/healthz", timeout=10).json()
        return body

    def reload(since: str | None) -> dict[str, Any]:
        assert service.proc is not None
        service.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: health().get("reload", {}).get("at") not in (None, since), timeout=30, interval=0.05)
        return health()

    t0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=8)
    service = Collector(cfg, api_port, log, ["--clock", "data"]).start()
    pub = Publisher(mosquitto.port, "dtus-reload")
    published = 0
    try:
        service.wait_subscribed()
        started = health()["config"]
        assert len(started["sha256"]) == 64 and "reload" not in health()
        assert datetime.fromisoformat(started["loaded_at"]).utcoffset() == timedelta(hours=8)  # Asia/Shanghai
        assert get("/api/me", NEW_TOKEN).status_code == 401

        # before: s1 drains for two hours, both receivers hear of its incident
        pub.publish_all(_messages("s1", t0, range(0, 120)))
        published += 240
        wait_until(lambda: len(kept.received) >= 1 and len(removed.received) >= 1, timeout=60, interval=0.2)
        opened = [i["id"] for i in get("/api/incidents?site=s1&state=open").json()["incidents"]]
        assert opened

        # the reload, under load: s1 keeps publishing while the new config is read and applied
        _config(cfg, sites=("s1", "s2"), tokens=(VIEWER, NEW_TOKEN), hooks={"hook-kept": kept}, **common)
        load = threading.Thread(target=pub.publish_all, args=(_messages("s1", t0, range(120, 180)),))
        load.start()
        after = reload(None)
        load.join(60)
        published += 120
        assert after["reload"]["ok"] is True, after
        assert after["config"]["sha256"] != started["sha256"]
        loaded = datetime.fromisoformat(after["config"]["loaded_at"])
        assert loaded.utcoffset() == timedelta(hours=8) and loaded > datetime.fromisoformat(started["loaded_at"])
        changes = after["reload"]["changes"]
        assert "sites +s2" in changes and "meters +s2/E1,s2/R1" in changes and "tokens +holder-ops" in changes
        assert "receivers -hook-removed" in changes and "mqtt topic filters +2 -0" in changes
        heard_before = len(removed.received)
        assert get("/api/me", NEW_TOKEN).json()["name"] == "holder-ops"
        assert get("/api/me", VIEWER).status_code == 200  # an unchanged token keeps working

        # after: s2 is collected, stored and evaluated; only the kept receiver hears of its incident
        pub.publish_all(m for k in range(180, 300, 10) for s in ("s1", "s2")
                        for m in _messages(s, t0, range(k, k + 10)))
        published += 480
        wait_until(lambda: "s2" in _sites_in(kept.received), timeout=60, interval=0.2)
        balance = get("/api/sites/s2/balance?window=1h").json()
        assert balance["points"] and balance["points"][-1]["deficit_m3"] > 0

        # a broken config is refused, every problem logged; the running one goes on
        _config(cfg, sites=("s1", "s2"), tokens=(VIEWER, NEW_TOKEN), hooks={"hook-kept": kept}, broken=True,
                **common)
        refused = reload(after["reload"]["at"])
        assert refused["reload"]["ok"] is False and len(refused["reload"]["problems"]) >= 4, refused
        assert refused["status"] == "degraded" and "config:reload" in [r["key"] for r in refused["reasons"]]
        assert refused["config"] == after["config"]
        text = log.read_text(encoding="utf-8")
        assert "config reload of" in text and "refused, the running config stays" in text
        assert all(p in text for p in refused["reload"]["problems"])
        assert get("/api/me", NEW_TOKEN).status_code == 200
        pub.publish_all(m for s in ("s1", "s2") for m in _messages(s, t0, range(300, 320)))
        published += 80

        # a good config again: healthy
        _config(cfg, sites=("s1", "s2"), tokens=(VIEWER, NEW_TOKEN), hooks={"hook-kept": kept}, **common)
        good = reload(refused["reload"]["at"])
        assert good["reload"]["ok"] is True and "config:reload" not in [r["key"] for r in good["reasons"]]
        assert good["reload"]["changes"].startswith("nothing changed")
        metrics = requests.get(base + "/metrics", timeout=10).text
        assert 'gshp_config_reloads_total{result="ok"} 2.0' in metrics
        assert 'gshp_config_reloads_total{result="refused"} 1.0' in metrics

        wait_until(lambda: flow_count(influxd, influx_db) >= published, timeout=60, interval=0.2)
        stored = flow_count(influxd, influx_db)
        # the incidents open before the reloads are the same ones, still open, each announced once
        still = {i["id"] for i in get("/api/incidents?site=s1&state=open").json()["incidents"]}
        time.sleep(1.0)  # a notice wrongly sent to the removed receiver would have arrived by now
    finally:
        pub.close()
        assert service.stop() == 0
        kept.stop()
        removed.stop()
    assert stored == published  # nothing lost, nothing doubled
    assert still >= set(opened)
    assert len(removed.received) == heard_before and "s2" not in _sites_in(removed.received)
    announced = Counter(e["incident"]["id"] for e in (r.json() for r in kept.received) if e["change"] == "opened")
    assert all(announced[i] == 1 for i in opened), announced
    durations = [(h["reload"]["duration_ms"], h["reload"]["prepare_ms"]) for h in (after, refused, good)]
    print("\nreload duration (ms, of which prepared): applied {}, refused {}, unchanged {}; ".format(*durations)
          + f"{published} readings published, {stored} stored")
    (tmp_path / "reload-figures.json").write_text(json.dumps({"reload_ms": durations, "published": published,
                                                              "stored": stored}))
