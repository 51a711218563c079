"""Helpers for MQTT tests: a QoS 1 publisher that confirms every message, a `gshp run` child process,
config files, and reading the exact stored point set back from InfluxDB."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import requests
from paho.mqtt.enums import CallbackAPIVersion

from gshp.devstack import Influxd, free_port

REPO = Path(__file__).resolve().parents[1]

# recent enough for the default mqtt.max_age, whole seconds so sets compare exactly
NOW0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)


def dtu_json(ts: datetime, total: float, rate: float = 50.0) -> bytes:
    return json.dumps({"ts": int(ts.timestamp()), "rate_m3h": rate, "total_m3": total}).encode()


class Publisher:
    """Publishes at QoS 1 with a bounded window of unconfirmed messages; survives broker restarts
    (persistent session: paho re-sends what the broker did not confirm)."""

    def __init__(self, port: int, client_id: str, window: int = 1000, **tls: Any) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        self.client.max_inflight_messages_set(window)
        self.client.reconnect_delay_set(1, 2)
        if tls.get("username"):
            self.client.username_pw_set(tls["username"], tls.get("password"))
        if tls.get("ca"):
            self.client.tls_set(ca_certs=tls["ca"], certfile=tls.get("cert"), keyfile=tls.get("key"))
        self.window = window
        self._acked: set[int] = set()
        self._lock = threading.Lock()
        self.client.on_publish = self._on_publish
        self.client.connect_async("127.0.0.1", port)
        self.client.loop_start()
        self.confirmed = 0

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        with self._lock:
            self._acked.add(mid)

    def publish_all(self, messages: Iterable[tuple[str, bytes]], timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        pending: deque[int] = deque()
        for topic, payload in messages:
            while True:
                info = self.client.publish(topic, payload, qos=1)
                if info.rc != mqtt.MQTT_ERR_QUEUE_SIZE:
                    break  # sent, or queued until the connection is back
                time.sleep(0.01)
            pending.append(info.mid)
            while len(pending) >= self.window:
                self._settle(pending, deadline)
        while pending:
            self._settle(pending, deadline)

    def _settle(self, pending: deque[int], deadline: float) -> None:
        mid = pending[0]
        while True:
            with self._lock:
                if mid in self._acked:
                    self._acked.discard(mid)
                    break
            if time.monotonic() > deadline:
                raise AssertionError("the broker did not confirm the publishes in time")
            time.sleep(0.001)
        pending.popleft()
        self.confirmed += 1

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def write_config(path: Path, *, state_dir: Path, influx_url: str, db: str, mqtt_port: int, client_id: str,
                 meters: str, api_port: int | None = None, mqtt_extra: str = "") -> Path:
    path.write_text(f"""\
timezone: Asia/Shanghai
state_dir: {state_dir}
influx: {{url: '{influx_url}', api: v1, bucket: {db}}}
outbox: {{max_batch_age: 100ms}}
api: {{listen: '127.0.0.1:{api_port or free_port()}'}}
mqtt: {{host: 127.0.0.1, port: {mqtt_port}, client_id: {client_id}, reconnect_min: 1s, reconnect_max: 2s
        {mqtt_extra}}}
sites:
  - id: s1
    name: 向阳荷花广场
    district: 宛城区
    meters:
{meters}
""", encoding="utf-8")
    return path


class Collector:
    """`gshp run` as a child process; `kill()` is SIGKILL (no clean shutdown)."""

    def __init__(self, config: Path, api_port: int, log: Path, extra: Sequence[str] = ()) -> None:
        self.config, self.api_port, self.log, self.extra = config, api_port, log, list(extra)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Collector:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        with open(self.log, "ab") as out:
            cmd = [sys.executable, "-m", "gshp.cli", "run", "--config", str(self.config), *self.extra]
            self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        return self

    def metric(self, name: str) -> float | None:
        try:
            text = requests.get(f"http://127.0.0.1:{self.api_port}/metrics", timeout=1).text
        except requests.RequestException:
            return None
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        return None

    def wait_subscribed(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.metric("gshp_mqtt_subscribed") != 1.0:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-3000:]
            if time.monotonic() > deadline:
                raise AssertionError(f"collector not subscribed:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)

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


def stored_points(influxd: Influxd, db: str) -> set[tuple[str, int, float]]:
    """Every flow point as (meter, time ms, total_m3)."""
    res = influxd.query("SELECT total_m3 FROM flow GROUP BY meter", db)
    out: set[tuple[str, int, float]] = set()
    for series in res[0].get("series", []):  # type: ignore[union-attr]
        meter = series["tags"]["meter"]
        out.update((meter, int(t), float(v)) for t, v in series["values"])
    return out


def flow_count(influxd: Influxd, db: str) -> int:
    res = influxd.query("SELECT count(total_m3) FROM flow", db)
    series = res[0].get("series")
    return int(series[0]["values"][0][1]) if series else 0  # type: ignore[index]
