"""Two collectors and two rule workers as separate `gshp run` processes, one mosquitto, one influxd.

Six sites in two shards, one of them discharging in each shard, four hours of readings one minute apart
(device times in the past; the rule workers evaluate in data time, `--clock data`, so the hours go by in
seconds and the same readings give the same alerts however loaded the machine is). One collector is
SIGKILLed mid-stream and restarted. Every site is evaluated by exactly one worker, whose rule engine takes
exactly the published readings of its shard (as a set: a reading may come twice, none may be missing),
each discharge alert fires once across the workers (and is notified once), and InfluxDB ends with exactly
the published set.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from gshp.devstack import Influxd, Mosquitto, free_port
from gshp.shard import shard_of
from tests.helpers import wait_until
from tests.mqtt_support import REPO, Publisher, dtu_json
from tests.notify_peers import HttpPeer

pytestmark = pytest.mark.integration

MINUTES = 240
START = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=6)


def _sites() -> tuple[list[str], set[str]]:
    """Three sites per shard of two (by the stable hash), the first of each shard discharging."""
    by_shard: dict[int, list[str]] = {0: [], 1: []}
    for i in range(100):
        sid = f"site-{i:02d}"
        if len(by_shard[shard_of(sid, 2)]) < 3:
            by_shard[shard_of(sid, 2)].append(sid)
    return by_shard[0] + by_shard[1], {by_shard[0][0], by_shard[1][0]}


SITES, DISCHARGING = _sites()


def _stream() -> list[tuple[str, bytes, tuple[str, str, int, float]]]:
    """Minute by minute, every meter: extraction 1 m³/min; reinjection the same, or 0.7 where discharging."""
    out = []
    for i in range(MINUTES + 1):
        ts = START + timedelta(minutes=i)
        for site in SITES:
            for meter in ("E1", "R1"):
                per_min = 0.7 if meter == "R1" and site in DISCHARGING else 1.0
                total = round(5000.0 + per_min * i, 3)
                rate = per_min * 60
                out.append((f"dtu/{site}/{meter}", dtu_json(ts, total, rate),
                            (site, meter, int(ts.timestamp() * 1000), total)))
    return out


def _config(path: Path, tmp: Path, influxd: Influxd, db: str, broker: Mosquitto, hook: HttpPeer) -> Path:
    sites = "".join(f"""\
  - id: {s}
    name: 站点{s[-2:]}
    district: {'宛城区' if shard_of(s, 2) == 0 else '卧龙区'}
    meters:
      - {{id: E1, role: extraction, mqtt: {{topic: dtu/{s}/E1, profile: dtu-json}}}}
      - {{id: R1, role: reinjection, mqtt: {{topic: dtu/{s}/R1, profile: dtu-json}}}}
""" for s in SITES)
    path.write_text(f"""\
timezone: Asia/Shanghai
state_dir: {tmp / "state"}
influx: {{url: '{influxd.url}', api: v1, bucket: {db}}}
outbox: {{max_batch_age: 100ms}}
mqtt: {{host: 127.0.0.1, port: {broker.port}, client_id: shard-{uuid.uuid4().hex[:8]}, reconnect_min: 1s,
        reconnect_max: 2s}}
fanout: {{topic_prefix: test/readings, publish_timeout: 5s}}
rules:
  evaluate_every: 1m
  sequential: {{enabled: false}}
  balance:
    windows:
      - {{name: gross, window: 15m, threshold_pct: 12, min_extracted_m3: 5, for: 5m, clear_for: 30m,
         severity: critical}}
notify:
  - {{name: case, type: webhook, url: "{hook.url}/in", group_wait: 0s, group_interval: 0s}}
sites:
{sites}""", encoding="utf-8")
    return path


# `gshp run`, with every reading its rule engine takes appended to a file as "site meter ts_ms": the only
# way to see from outside exactly which readings a worker evaluated (its counter would let a lost reading
# hide behind a repeated one)
TRACED_RUN = """\
import sys
from gshp.cli import main
from rules.engine import Engine
trace, ingest = sys.argv[1], Engine.ingest
def traced(self, readings):
    readings = list(readings)
    with open(trace, "a", encoding="utf-8") as f:
        f.writelines(f"{r.site} {r.meter} {round(r.ts.timestamp() * 1000)}\\n" for r in readings)
    ingest(self, readings)
Engine.ingest = traced
sys.exit(main(sys.argv[2:]))
"""


class Proc:
    """One `gshp run` child process with its own HTTP port; `kill()` is SIGKILL. With `trace`, the readings
    its rule engine takes are listed in that file."""

    def __init__(self, config: Path, role: str, shard: int, log: Path, trace: Path | None = None) -> None:
        self.config, self.role, self.shard, self.log, self.trace = config, role, shard, log, trace
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        run = ["-c", TRACED_RUN, str(self.trace)] if self.trace is not None else ["-m", "gshp.cli"]
        cmd = [sys.executable, *run, "run", "--config", str(self.config), "--role", self.role,
               "--shard", f"{self.shard}/2", "--listen", f"127.0.0.1:{self.port}", "--clock", "data"]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=out,
                                         stderr=subprocess.STDOUT)
        return self

    def get(self, path: str) -> Any:
        r = requests.get(f"http://127.0.0.1:{self.port}{path}", timeout=5)
        r.raise_for_status()
        return r.json() if path != "/metrics" else r.text

    def metric(self, name: str) -> float | None:
        try:
            text = requests.get(f"http://127.0.0.1:{self.port}/metrics", timeout=1).text
        except requests.RequestException:
            return None
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
        return None

    def wait_metric(self, name: str, value: float, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.metric(name) != value:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"{self.role} {self.shard}: {name} != {value}\n" + \
                self.log.read_text()[-3000:]
            time.sleep(0.1)

    def evaluated(self) -> tuple[set[tuple[str, str, int]], int]:
        """The distinct (site, meter, ts_ms) the rule engine took, and how many readings in all (repeats)."""
        assert self.trace is not None
        text = self.trace.read_text(encoding="utf-8") if self.trace.exists() else ""
        lines = text.splitlines()[:text.count("\n")]  # a line being written is not complete yet
        seen = {(site, meter, int(ts)) for site, meter, ts in (line.split(" ") for line in lines)}
        return seen, len(lines)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return int(self.proc.returncode)


def _stored(influxd: Influxd, db: str) -> set[tuple[str, str, int, float]]:
    res = influxd.query("SELECT total_m3 FROM flow GROUP BY site, meter", db)
    out: set[tuple[str, str, int, float]] = set()
    for series in res[0].get("series", []):  # type: ignore[union-attr]
        site, meter = series["tags"]["site"], series["tags"]["meter"]
        out.update((site, meter, int(t), float(v)) for t, v in series["values"])
    return out


def _count(influxd: Influxd, db: str) -> int:
    res = influxd.query("SELECT count(total_m3) FROM flow", db)
    series = res[0].get("series")
    return int(series[0]["values"][0][1]) if series else 0  # type: ignore[index]


def test_two_collectors_two_rule_workers_every_site_once_every_alert_once_nothing_lost(
        mosquitto: Mosquitto, influxd: Influxd, influx_db: str, tmp_path: Path) -> None:
    started = time.monotonic()
    hook = HttpPeer().start()
    config = _config(tmp_path / "city.yaml", tmp_path, influxd, influx_db, mosquitto, hook)
    stream = _stream()
    per_shard = {k: sum(1 for _, _, e in stream if shard_of(e[0], 2) == k) for k in (0, 1)}
    published = {k: {(site, meter, ts) for _, _, (site, meter, ts, _) in stream if shard_of(site, 2) == k}
                 for k in (0, 1)}
    rules = [Proc(config, "rules", k, tmp_path / f"rules-{k}.log", tmp_path / f"rules-{k}.trace") for k in (0, 1)]
    collectors = [Proc(config, "collector", k, tmp_path / f"collector-{k}.log") for k in (0, 1)]
    pub = Publisher(mosquitto.port, f"shard-dtus-{uuid.uuid4().hex[:6]}", window=200)
    procs = rules + collectors
    try:
        for p in procs:
            p.start()
        for p in procs:  # persistent sessions exist from here on: nothing published later is lost
            p.wait_metric("gshp_mqtt_subscribed", 1.0)
        for p in collectors:
            p.wait_metric("gshp_fanout_connected", 1.0)

        def publish() -> None:
            n = len(SITES) * 2
            for i in range(0, len(stream), n):  # one data minute at a time, paced: the kill lands mid-stream
                pub.publish_all([(t, pl) for t, pl, _ in stream[i:i + n]])
                time.sleep(0.02)

        t = threading.Thread(target=publish, daemon=True)
        t.start()
        victim = collectors[0]
        wait_until(lambda: (victim.metric("gshp_fanout_published_total") or 0) >= per_shard[0] * 0.3,
                   timeout=60, interval=0.05)
        victim.kill()
        killed_at = pub.confirmed
        time.sleep(0.5)
        victim.start()
        t.join(120)
        assert not t.is_alive() and pub.confirmed == len(stream)
        assert killed_at < len(stream), "the collector must be killed while the stream still flows"

        wait_until(lambda: _count(influxd, influx_db) >= len(stream), timeout=60, interval=0.2)
        for k, w in enumerate(rules):  # exactly the shard's readings went through its engine (repeats allowed)
            try:
                wait_until(lambda w=w, k=k: w.evaluated()[0] == published[k], timeout=60, interval=0.2)
            except AssertionError:
                seen = w.evaluated()[0]
                raise AssertionError(f"rule worker {k}: {len(published[k] - seen)} published readings never "
                                     f"evaluated (e.g. {sorted(published[k] - seen)[:3]}), {len(seen - published[k])} "
                                     f"evaluated that were not published of its shard") from None
            # the trace saw every reading the worker counted: nothing reached the engine another way
            wait_until(lambda w=w: w.metric("gshp_rule_readings_total") == w.evaluated()[1], timeout=10)
        wait_until(lambda: len([r for r in hook.received if r.json().get("change") == "opened"]) >= 2, timeout=30)
        time.sleep(1.0)  # a duplicate, if any, would arrive now

        # every site evaluated by exactly one rule worker: its own shard's, with a balance computed
        seen: dict[str, int] = {}
        for k, w in enumerate(rules):
            assert w.metric("gshp_rule_sites") == 3.0
            listed = w.get("/api/sites")["sites"]
            assert {s["id"] for s in listed} == {s for s in SITES if shard_of(s, 2) == k}
            for s in listed:
                assert s["balance"]["1h"] is not None, s
                assert s["id"] not in seen
                seen[s["id"]] = k
        assert sorted(seen) == sorted(SITES)
        for c in collectors:
            assert c.metric("gshp_rule_sites") in (None, 0.0)
            assert c.get("/healthz")["fanout_depth"] == 0

        # every alert once across the workers: one gross-balance alert per discharging site, none elsewhere
        alerts = [a for w in rules for a in w.get("/api/alerts")["alerts"]]
        assert sorted((a["site"], a["rule"], a["state"]) for a in alerts) == \
            sorted((s, "balance_gross", "firing") for s in DISCHARGING), json.dumps(alerts, ensure_ascii=False)
        # every incident once: one discharge incident per discharging site, opened once
        opened = sorted((r.json()["incident"]["site"], r.json()["incident"]["kind"]) for r in hook.received
                        if r.json().get("change") == "opened")
        assert opened == sorted((site, "discharge") for site in DISCHARGING)
        assert len({a["id"] for a in alerts}) == len(alerts)

        # no reading lost to the SIGKILL, none invented: InfluxDB holds exactly the published set
        assert _stored(influxd, influx_db) == {e for _, _, e in stream}
    finally:
        pub.close()
        codes = [p.stop() for p in procs if p.proc is not None]
        hook.stop()
    assert codes == [0, 0, 0, 0], [p.log.read_text()[-2000:] for p in procs]
    assert time.monotonic() - started < 120
