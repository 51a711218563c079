"""Chaos: `gshp run` under 10× a city's load while a seeded schedule injects, every few seconds, one fault:
SIGKILL (and restart), InfluxDB stop/start, broker stop/start, the state directory's disk full/free, a Modbus
gateway flapping, the meters' clock stepping forward.

At the end InfluxDB holds exactly what the DTUs published (the broker confirmed, QoS 1) and the committed
Modbus polls — nothing lost, invented or rewritten; the alert transitions the service stored are, per site
and rule, exactly those `gshp replay` derives from the same stored readings in a fault-free run; and
`/healthz` was not `ok` during each fault (with the fault's reason where the service can see it) and `ok`
again after it.

The service evaluates in data time (`--clock data`): the DTUs' device time runs at 1×, close to the wall
clock the Modbus polls are stamped with, so the rules see one time line; a clock step moves the DTUs' time
forward, and the service's evaluation clock with it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import requests

from gshp.devstack import Influxd, Mosquitto, free_port
from tests.faults.support import ModbusSims, audited, install_audit
from tests.faults.test_outages import _tmpfs
from tests.helpers import fill_disk, wait_until
from tests.mqtt_support import REPO, Collector, Publisher, stored_points

SEED = 13
SITES = 25
METERS = ("E1", "E2", "R1", "R2")  # 100 MQTT meters, one DTU per site sending all four in one message
RATE = 1000  # readings per second: 10× a city
STEP_MS = 100  # device time between two readings of a meter (1×: 10 readings/s/meter)
KINDS = ("kill", "influx", "broker", "disk", "gateway", "clock")
ROUNDS = 2  # every kind twice, in a seeded order
CLOCK_STEP_S = 15
FLEET_STEPS = 2000  # 200 s of device time (plus the clock steps)
DISCHARGE = {"c0": (100, 750), "c1": (100, 750), "c2": (600, 1250), "c3": (600, 1250)}
"""Sites whose reinjection runs at half the extraction, from step to step (10 steps a second)."""
SILENT = ("c4R1", 200, 1300)
"""A reinjection meter that sends nothing from step to step (offline, silent while extraction runs)."""
EXPECTED = {"influx": "influx", "broker": "source:MQTT", "disk": "store:", "gateway": "source:Modbus gw1"}


def _config(path: Path, state: Path, influx: Influxd, broker: Mosquitto, gateway_port: int, db: str,
            api_port: int) -> Path:
    sites = "".join(
        f"  - id: c{i}\n    name: 站{i}\n    district: 区{i % 4}\n    meters:\n" + "".join(
            f"      - {{id: c{i}{m}, role: {'extraction' if m[0] == 'E' else 'reinjection'}, "
            f"mqtt: {{topic: dtu/c{i}/up, profile: dtu-json-array}}}}\n" for m in METERS)
        for i in range(SITES))
    path.write_text(f"""\
timezone: Asia/Shanghai
state_dir: {state}
influx: {{url: '{influx.url}', api: v1, bucket: {db}}}
outbox: {{max_batch_age: 200ms}}
mqtt: {{host: 127.0.0.1, port: {broker.port}, client_id: gshp-chaos, max_inflight: 1000, reconnect_min: 200ms,
        reconnect_max: 1s}}
api: {{listen: '127.0.0.1:{api_port}'}}
health: {{source_grace: 1s, drain_failures: 2, outbox_max_age: 1m, backfill_timeout: 10s}}
gateways:
  - {{id: gw1, transport: tcp, host: 127.0.0.1, port: {gateway_port}, interval: 250ms, timeout: 200ms, retries: 0,
     reconnect_delay: 100ms}}
rules:
  evaluate_every: 1m
  balance:
    windows:
      - {{name: gross, window: 1m, threshold_pct: 12, min_extracted_m3: 0.5, for: 0s, clear_for: 0s,
         severity: critical}}
  sequential: {{enabled: false}}
  quality: {{offline_after: 1m, silent_after: 1m, silent_hold: 0s}}
sites:
{sites}  - id: m1
    name: 模拟站
    district: 区0
    meters:
      - {{id: M1, role: extraction,  modbus: {{gateway: gw1, unit: 1, profile: tuf2000m}}}}
      - {{id: M2, role: reinjection, modbus: {{gateway: gw1, unit: 2, profile: tuf2000m}}}}
""", encoding="utf-8")
    return path


class DataCollector(Collector):
    """`gshp run --clock data`: the rules evaluate at the boundaries the reading stream crosses."""

    def start(self) -> DataCollector:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        with open(self.log, "ab") as out:
            cmd = [sys.executable, "-m", "gshp.cli", "run", "--config", str(self.config), "--clock", "data"]
            self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        return self


class Fleet:
    """25 DTUs at 1 000 readings/s, device time from the step count (1×) plus a clock offset that a fault
    steps forward; `published` holds every point, all confirmed by the broker once `finish` returns."""

    def __init__(self, port: int, start: datetime) -> None:
        self.pub = Publisher(port, "chaos-dtus", window=500)
        self.start_ms = int(start.timestamp() * 1000)
        self.offset_ms = 0
        self.published: list[tuple[str, int, float]] = []
        self.totals = {f"c{i}{m}": 1000.0 + 10 * i + j for i in range(SITES) for j, m in enumerate(METERS)}
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="fleet", daemon=True)
        self._thread.start()

    def _messages(self) -> Iterator[tuple[str, bytes]]:
        t0 = time.monotonic()
        k = 0
        per_msg = len(METERS)
        while not self._stop.is_set():
            site, step = k % SITES, k // SITES
            ms = self.start_ms + step * STEP_MS + self.offset_ms
            if step >= FLEET_STEPS:
                return
            body = []
            for m in METERS:
                meter = f"c{site}{m}"
                if meter == SILENT[0] and SILENT[1] <= step < SILENT[2]:
                    continue
                first, last = DISCHARGE.get(f"c{site}", (0, 0))
                share = 0.5 if m[0] == "R" and first <= step < last else 1.0
                self.totals[meter] = round(self.totals[meter] + 50.0 * STEP_MS / 3_600_000 * share, 6)
                self.published.append((meter, ms, self.totals[meter]))
                body.append({"id": meter, "ts": ms, "rate_m3h": 50.0 * share, "total_m3": self.totals[meter]})
            yield f"dtu/c{site}/up", json.dumps(body).encode()
            k += 1
            ahead = k * per_msg / RATE - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)

    def _run(self) -> None:
        try:
            self.pub.publish_all(self._messages(), timeout=600)
        except BaseException as exc:  # reported by finish()
            self.error = exc

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def step_clock(self, seconds: int) -> None:
        self.offset_ms += seconds * 1000

    def finish(self, timeout: float = 120.0) -> list[tuple[str, int, float]]:
        self._stop.set()
        self._thread.join(timeout)
        self.pub.close()
        assert not self._thread.is_alive(), "the publisher did not finish"
        assert self.error is None, self.error
        return self.published


class HealthLog:
    """Polls `/healthz` every 0.2 s from a thread: (time, status or 'down', reason keys)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.samples: list[tuple[float, str, tuple[str, ...]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="health-log", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                body = requests.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).json()
                sample = (time.monotonic(), str(body["status"]), tuple(r["key"] for r in body["reasons"]))
            except (requests.RequestException, ValueError, KeyError):
                sample = (time.monotonic(), "down", ())
            self.samples.append(sample)

    def answered_since(self, t: float) -> bool:
        return any(ts >= t and status != "down" for ts, status, _ in self.samples)

    def reason_since(self, t: float, prefix: str) -> bool:
        return any(ts >= t and any(k.startswith(prefix) for k in keys) for ts, _, keys in self.samples)

    def ok_since(self, t: float) -> bool:
        return any(ts >= t and status == "ok" for ts, status, _ in self.samples)

    def between(self, t0: float, t1: float) -> list[tuple[float, str, tuple[str, ...]]]:
        return [s for s in self.samples if t0 <= s[0] <= t1]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


def _stored_transitions(alerts: Path) -> list[tuple[str, str, str]]:
    db = sqlite3.connect(alerts)
    try:
        rows = [json.loads(event) for (event,) in db.execute("SELECT event FROM transitions ORDER BY rowid")]
    finally:
        db.close()
    return [(e["site"], e["rule"], e["state"]) for e in rows]


def _replayed_transitions(config: Path, start: datetime, stop: datetime) -> list[tuple[str, str, str]]:
    """What `gshp replay` derives from the stored readings in [start, stop): the evaluations up to `stop` only
    (replay also evaluates the boundary after the last reading, which a live stream never crosses)."""
    out = subprocess.run([sys.executable, "-m", "gshp.cli", "replay", "--config", str(config), "--from-influx",
                          "--start", start.isoformat(), "--stop", stop.isoformat()],
                         env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    events = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    return [(e["site"], e["rule"], e["state"]) for e in events if datetime.fromisoformat(e["at"]) < stop]


def _per_alert(transitions: list[tuple[str, str, str]]) -> dict[tuple[str, str], list[str]]:
    out: dict[tuple[str, str], list[str]] = defaultdict(list)
    for site, rule, state in transitions:
        out[(site, rule)].append(state)
    return dict(out)


def test_chaos_under_ten_times_a_city_loses_invents_rewrites_nothing_and_health_tells_the_truth(
        tmp_path: Path, figures: dict[str, Any]) -> None:
    rng = random.Random(SEED)
    started = time.monotonic()
    influxd = Influxd(tmp_path / "influxd").start()
    broker = Mosquitto(tmp_path / "broker").start()
    sims = ModbusSims({"gw1": [1, 2]}, speed=1.0)  # totals at the meters' real pace, as the DTUs'
    db = "chaos"
    with _tmpfs(tmp_path / "disk", "128m") as disk:
        state = disk / "state"
        install_audit(state / "outbox.sqlite")
        api_port = free_port()
        config = _config(tmp_path / "gshp.yaml", state, influxd, broker, sims.ports["gw1"], db, api_port)
        collector = DataCollector(config, api_port, tmp_path / "gshp.log").start()
        health = HealthLog(api_port)
        fleet: Fleet | None = None
        filler = disk / "filler"
        faults: list[dict[str, Any]] = []
        try:
            collector.wait_subscribed(60)
            wait_until(lambda: health.ok_since(0), timeout=60, interval=0.2)
            data_start = datetime.now(UTC).replace(microsecond=0)
            fleet = Fleet(broker.port, data_start)
            time.sleep(8.0)
            schedule = [k for _ in range(ROUNDS) for k in rng.sample(KINDS, len(KINDS))]
            for kind in schedule:
                t0 = time.monotonic()
                if kind == "kill":
                    collector.kill()
                    time.sleep(rng.uniform(0.0, 0.3))
                    collector.start()
                    wait_until(partial(health.answered_since, t0), timeout=60, interval=0.1)
                elif kind == "influx":
                    influxd.stop()
                    time.sleep(4.0)
                    influxd.start()
                elif kind == "broker":
                    broker.stop()
                    time.sleep(3.0)
                    broker.start()
                elif kind == "disk":
                    fill_disk(filler)  # held until a write fails (SQLite reuses its WAL for a while), at most 20 s
                    with contextlib.suppress(AssertionError):
                        wait_until(partial(health.reason_since, t0, "store:"), timeout=20, interval=0.2)
                    time.sleep(1.0)
                    filler.unlink()
                elif kind == "gateway":
                    sims.pause("gw1")
                    time.sleep(3.0)
                    sims.resume("gw1")
                else:
                    fleet.step_clock(CLOCK_STEP_S)
                    time.sleep(3.0)
                t1 = time.monotonic()
                wait_until(partial(health.ok_since, t1 + 0.5), timeout=60, interval=0.2)
                faults.append({"kind": kind, "t0": t0, "t1": t1, "ok_after_s": round(
                    min(ts for ts, status, _ in health.samples if ts >= t1 + 0.5 and status == "ok") - t1, 1)})
                time.sleep(rng.uniform(1.0, 3.0))
            wait_until(lambda: fleet is not None and fleet.done, timeout=240, interval=0.5)
            published = fleet.finish(timeout=180)
            fleet = None
            wait_until(lambda: {p for p in stored_points(influxd, db) if p[0][0] == "c"} >= set(published),
                       timeout=120, interval=1.0)
            time.sleep(1.0)
        finally:
            if fleet is not None:
                with contextlib.suppress(Exception):
                    fleet.finish(timeout=10)
            filler.unlink(missing_ok=True)
            health.close()
            code = collector.stop()
            sims.close()
            broker.stop()
        committed = audited(state / "outbox.sqlite")
        live = _stored_transitions(state / "alerts.sqlite")
    try:
        stored = stored_points(influxd, db)
        data_stop = datetime.fromtimestamp(max(ts for _, ts, _ in stored) / 1000 + 0.001, UTC)
        reference = _replayed_transitions(config, data_start - timedelta(minutes=1), data_stop)
    finally:
        influxd.stop()
    wall = time.monotonic() - started
    log = (tmp_path / "gshp.log").read_text(errors="replace")
    assert code == 0, log[-3000:]

    # -- readings: none lost, none invented, none rewritten ----------------------------------------------------
    mqtt_pub = set(published)
    modbus_committed = {p for p in set(committed) if p[0][0] == "M"}
    mqtt_stored = {p for p in stored if p[0][0] == "c"}
    lost = len(mqtt_pub - mqtt_stored) + len(modbus_committed - stored)
    invented = len(mqtt_stored - mqtt_pub) + len({p for p in stored if p[0][0] == "M"} - modbus_committed)
    rewritten = len(stored) - len({(m, ts) for m, ts, _ in stored})  # one value per meter and time
    by_meter: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for m, ts, total in modbus_committed:
        by_meter[m].append((ts, total))
    served_in_order = all(all(b[1] >= a[1] for a, b in itertools.pairwise(s))
                          for s in (sorted(v) for v in by_meter.values()))

    # -- alert transitions: what a fault-free run of the same data gives, each exactly once -----------------------
    expected, got = _per_alert(reference), _per_alert(live)
    missing = {k: v for k, v in expected.items() if got.get(k) != v}
    extra = {k: v for k, v in got.items() if k not in expected}

    # -- health: not ok during each fault (with its reason where visible), ok after --------------------------------
    verdicts = []
    for f in faults:
        seen = health.between(f["t0"], f["t1"] + 2.0)
        statuses = Counter(status for _, status, _ in seen)
        keys = {k for _, _, ks in seen for k in ks}
        want = EXPECTED.get(f["kind"])
        f.update(statuses=dict(statuses), reasons=sorted(keys))
        if f["kind"] == "clock":
            f["truthful"] = statuses.get("ok", 0) > 0  # nothing fails: health rightly stays ok
        elif f["kind"] == "kill":
            f["truthful"] = statuses.get("down", 0) > 0 and statuses.get("ok", 0) < len(seen)
        else:
            f["truthful"] = statuses.get("degraded", 0) + statuses.get("full", 0) > 0 and any(
                k.startswith(want or "") for k in keys)
        verdicts.append(f["truthful"])
    summary = [{k: f[k] for k in ("kind", "statuses", "reasons", "ok_after_s", "truthful")} for f in faults]
    figures.update(faults=len(faults), kinds=dict(Counter(f["kind"] for f in faults)), seed=SEED,
                   mqtt_published=len(mqtt_pub), modbus_committed=len(modbus_committed), stored=len(stored),
                   lost=lost, invented=invented, rewritten=rewritten,
                   transitions_expected=len(reference), transitions_stored=len(live),
                   transitions_missing=len(missing), transitions_extra=len(extra),
                   health_truthful=f"{sum(verdicts)}/{len(verdicts)}",
                   ok_after_s_max=max(f["ok_after_s"] for f in faults), wall_s=round(wall, 1),
                   readings_per_s=RATE, health_samples=len(health.samples),
                   reasons_by_kind={k: sorted({r.split(" ")[0] for f in faults if f["kind"] == k for r in f["reasons"]})
                                    for k in KINDS},
                   transitions=dict(Counter(f"{rule}:{state}" for _, rule, state in reference)))
    print(json.dumps({"faults": summary, "missing": {str(k): v for k, v in missing.items()},
                      "extra": {str(k): v for k, v in extra.items()}}, ensure_ascii=False, indent=1))
    assert lost == 0 and invented == 0 and rewritten == 0, figures
    assert served_in_order
    assert reference, "the data must produce alert transitions to compare"
    assert not missing and not extra, (missing, extra)
    assert all(verdicts), summary
    assert "Traceback" not in log, log[-3000:]
