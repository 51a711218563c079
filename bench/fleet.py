"""A city-sized fleet in one process: `gshp run` with 1 000 and 10 000 MQTT meters (sites of 4 meters, one
topic each). Per size: `gshp check-config` time, start-up time (process start to `/healthz` answering and
every subscription acknowledged), readings/s sustained while draining a burst of 20 readings per meter
(one a minute, queued in mosquitto for the collector's persistent session while it was away: 10 000 DTUs
flushing their buffers after a cell outage), and the process's RSS after the burst. Loopback only, bounded;
stops by itself.

    python bench/fleet.py [--meters 1000 10000] [--per-meter 20]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.mqtt import count_flow, scrape  # noqa: E402
from bench.table import Row  # noqa: E402
from gshp.devstack import Influxd, Mosquitto, free_port  # noqa: E402

ROW_PREFIXES = ("fleet:",)
"""The README rows this bench writes (`python -m bench --only bench.fleet --update-readme README.md`)."""
METERS_PER_SITE = 4
ROLES = ("extraction", "extraction", "reinjection", "reinjection")
T0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=1)


def write_config(path: Path, meters: int, mq: Mosquitto, ix: Influxd, db: str, api: int) -> Path:
    sites = []
    for s in range(meters // METERS_PER_SITE):
        ms = "\n".join(f"      - {{id: M{j}, role: {ROLES[j]}, mqtt: {{topic: fleet/s{s}/M{j}}}}}"
                       for j in range(METERS_PER_SITE))
        sites.append(f"  - id: s{s}\n    name: 站点{s}\n    district: 区{s % 12}\n    meters:\n{ms}")
    path.write_text(f"""\
state_dir: {path.parent}/state-{meters}
log_level: WARNING
influx: {{url: '{ix.url}', api: v1, bucket: {db}}}
outbox: {{synchronous: normal}}
api: {{listen: '127.0.0.1:{api}'}}
mqtt: {{port: {mq.port}, client_id: fleet-{meters}, max_inflight: 1000, batch_max: 1000, broker_stats: false}}
sites:
""" + "\n".join(sites) + "\n", encoding="utf-8")
    return path


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def _start(config: Path, api: int, log: Path) -> tuple[subprocess.Popen[bytes], float]:
    """Start `gshp run`; the seconds until it answers and every subscription is acknowledged."""
    t = time.monotonic()
    with open(log, "ab") as out:
        # two malloc arenas, as the systemd units run it (deploy/systemd): ~5 MB less RSS at 10 000 meters
        proc = subprocess.Popen([sys.executable, "-m", "gshp.cli", "run", "--config", str(config)],
                                env={**os.environ, "PYTHONPATH": str(REPO), "MALLOC_ARENA_MAX": "2"},
                                stdout=out, stderr=out)
    deadline = t + 120
    while scrape(api, "gshp_mqtt_subscribed") != 1.0:
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError(f"gshp run did not subscribe; see {log}")
        time.sleep(0.05)
    return proc, time.monotonic() - t


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def publish(port: int, meters: int, per_meter: int, window: int = 1000) -> float:
    """Publish `per_meter` readings (one a minute) for every meter at QoS 1, at most `window` unconfirmed;
    returns the seconds it took until the broker confirmed them all."""
    done = threading.Semaphore(0)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"fleet-dtus-{meters}")
    client.max_inflight_messages_set(window)
    client.max_queued_messages_set(window)
    client.on_publish = lambda *_: done.release()
    client.connect("127.0.0.1", port)
    client.loop_start()
    t = time.monotonic()
    sent = 0
    try:
        for k in range(per_meter):
            ts = int((T0 + timedelta(minutes=k)).timestamp())
            for i in range(meters):
                payload = json.dumps({"ts": ts, "rate_m3h": 50.5, "total_m3": 1000 + k * 0.8 + i})
                while client.publish(f"fleet/s{i // METERS_PER_SITE}/M{i % METERS_PER_SITE}", payload,
                                     qos=1).rc == mqtt.MQTT_ERR_QUEUE_SIZE:
                    if not done.acquire(timeout=60):
                        raise RuntimeError("the broker stopped confirming publishes")
                    sent -= 1
                sent += 1
        while sent > 0:
            if not done.acquire(timeout=60):
                raise RuntimeError("the broker stopped confirming publishes")
            sent -= 1
    finally:
        client.disconnect()
        client.loop_stop()
    return time.monotonic() - t


def measure(meters: int, per_meter: int, root: Path, mq: Mosquitto, ix: Influxd) -> dict[str, float]:
    api = free_port()
    config = write_config(root / f"fleet-{meters}.yaml", meters, mq, ix, f"fleet_{meters}", api)
    log = root / f"fleet-{meters}.log"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t = time.monotonic()
    subprocess.run([sys.executable, "-m", "gshp.cli", "check-config", str(config)], env=env, check=True,
                   stdout=subprocess.DEVNULL, timeout=120)
    check_s = time.monotonic() - t
    proc, start_s = _start(config, api, log)  # the persistent session exists before the burst
    idle_rss = _rss_mb(proc.pid)
    _stop(proc)
    publish(mq.port, meters, per_meter)
    total = meters * per_meter
    proc, _ = _start(config, api, log)
    # progress is read from InfluxDB, not from /metrics: a scrape of 10 000 meters' gauges costs the
    # collector ~0.2 s of CPU, which a bench polling it would measure instead of the ingest
    samples: list[tuple[float, float]] = []
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            stored = count_flow(ix, f"fleet_{meters}")
            samples.append((time.monotonic(), stored))
            if stored >= total:
                break
            time.sleep(0.25)
        time.sleep(2)  # the board, the rules and the outbox settle
        peak = _rss_mb(proc.pid)
        time.sleep(10)  # the service hands the burst's freed heap back every 10 s
        rss = _rss_mb(proc.pid)
        acked = scrape(api, "gshp_mqtt_acked_total")
    finally:
        _stop(proc)
    lo = next(s for s in samples if s[1] >= total * 0.1)
    hi = next(s for s in samples if s[1] >= total * 0.9)
    return {"meters": meters, "check_config_s": check_s, "start_s": start_s, "idle_rss_mb": idle_rss,
            "peak_rss_mb": peak, "rss_mb": rss,
            "readings_s": (hi[1] - lo[1]) / (hi[0] - lo[0]) if hi[0] > lo[0] else float("nan"),
            "readings": total, "stored": samples[-1][1], "acked": acked}


def measure_all(sizes: list[int], per_meter: int) -> list[dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="gshp-fleet-") as tmp:
        root = Path(tmp)
        mq = Mosquitto(root / "mosquitto", extra_config="max_queued_bytes 0").start()
        ix = Influxd(root / "influxd").start()
        try:
            return [measure(n, per_meter, root, mq, ix) for n in sizes]
        finally:
            mq.stop()
            ix.stop()


def run() -> list[Row]:
    rows = []
    for r in measure_all([1_000, 10_000], 20):
        n = f"{r['meters']:,.0f}"
        rows.append(Row(f"fleet: {n} MQTT meters, RSS 10 s after a burst of 20 readings/meter", r["rss_mb"], "MB",
                        None, "", "≤ 150 MB at 10 000"))
        if r["meters"] == 10_000:
            rows.append(Row(f"fleet: {n} meters, {n} topics: readings into InfluxDB, sustained (10–90 %)",
                            r["readings_s"], "readings/s"))
        rows.append(Row(f"fleet: {n} meters: start-up to every subscription", r["start_s"], "s", None, "",
                        "< 10 s"))
        rows.append(Row(f"fleet: {n} meters: gshp check-config", r["check_config_s"], "s", None, "", "< 5 s"))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--meters", type=int, nargs="+", default=[1_000, 10_000])
    ap.add_argument("--per-meter", type=int, default=20, help="readings per meter in the burst (default 20)")
    a = ap.parse_args()
    print("meters | check-config s | start-up s | RSS idle MB | RSS at the burst's end MB | RSS 10 s later MB | "
          "readings/s | stored/sent")
    for r in measure_all(a.meters, a.per_meter):
        print(f"{r['meters']:,.0f} | {r['check_config_s']:.2f} | {r['start_s']:.2f} | {r['idle_rss_mb']:.1f} | "
              f"{r['peak_rss_mb']:.1f} | {r['rss_mb']:.1f} | {r['readings_s']:,.0f} | "
              f"{r['stored']:.0f}/{r['readings']:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
