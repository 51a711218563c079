"""MQTT ingest throughput, end to end, against `mosquitto_sub` on the same stream in the same run.

For each case the stream is queued in the broker first, for two persistent sessions: `mosquitto_sub`'s
and the collector's. Then `mosquitto_sub` drains its copy (the baseline: a C client that only receives),
and `gshp run` drains the other — decode, commit to the outbox, acknowledge, write to InfluxDB, evaluate
the rules. The InfluxDB rate is the sustained one: readings stored per second between 10 % and 90 % of the
stream stored; the whole burst (first message received to last point stored, which includes the last
partial batch waiting `outbox.max_batch_age`) is reported beside it. The ratio compares messages/s. Every
point is checked to be stored exactly once. Each figure is the median of three alternating rounds (the
broker's own rate swings widely on a shared machine). Loopback only; bounded; stops by itself.

    python bench/mqtt.py [--messages 200000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.table import Row  # noqa: E402
from gshp.devstack import Influxd, Mosquitto, free_port  # noqa: E402

METERS = 10
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)


@dataclass
class Case:
    name: str
    profile: str
    per_message: int  # readings per message


CASES = [Case("dtu-json, 1 reading/message", "dtu-json", 1),
         Case("thingsboard, 10 readings/message", "thingsboard", 10)]


def _lines(case: Case, meter: int, messages: int) -> str:
    out = []
    for i in range(messages):
        if case.per_message == 1:
            ts = int((T0 + timedelta(seconds=i)).timestamp())
            out.append(json.dumps({"ts": ts, "rate_m3h": 50.5, "total_m3": 1000 + i * 0.25 + meter}))
        else:
            base = i * case.per_message
            out.append(json.dumps([{"ts": int((T0 + timedelta(seconds=base + k)).timestamp() * 1000),
                                    "values": {"rate_m3h": 50.5, "total_m3": 1000 + (base + k) * 0.25}}
                                   for k in range(case.per_message)]))
    return "\n".join(out) + "\n"


def scrape(port: int, name: str, timeout: float = 5.0) -> float:
    """One unlabelled metric of a running service's /metrics; -1 when it does not answer or lacks it."""
    try:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=timeout).text
    except requests.RequestException:
        return -1.0
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return -1.0


def count_flow(ix: Influxd, db: str) -> int:
    """Readings stored in `db` (0 while influxd does not answer)."""
    try:
        res = ix.query("SELECT count(total_m3) FROM flow", db)
    except requests.RequestException:
        return 0
    series = res[0].get("series")
    return int(series[0]["values"][0][1]) if series else 0  # type: ignore[index]


def run_case(case: Case, messages: int, root: Path, mq: Mosquitto, ix: Influxd, tag: str = "") -> dict[str, float]:
    name = f"{case.profile}{tag}"  # databases, topics, sessions and files of this round
    db = f"bench_{name.replace('-', '_')}"
    prefix = f"bench/{name}"
    api = free_port()
    meters = "\n".join(f"      - {{id: M{i}, role: {'extraction' if i % 2 == 0 else 'reinjection'}, "
                       f"mqtt: {{topic: {prefix}/M{i}, profile: {case.profile}}}}}" for i in range(METERS))
    config = root / f"{name}.yaml"
    config.write_text(f"""\
state_dir: {root}/state-{name}
log_level: WARNING
influx: {{url: '{ix.url}', api: v1, bucket: {db}}}
outbox: {{synchronous: full}}
api: {{listen: '127.0.0.1:{api}'}}
mqtt: {{port: {mq.port}, client_id: bench-{name}, max_inflight: 1000, batch_max: 1000}}
sites:
  - id: bench
    name: bench
    district: bench
    meters:
{meters}
""", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    gshp = [sys.executable, "-m", "gshp.cli", "run", "--config", str(config)]
    log = open(root / f"{name}.log", "ab")  # noqa: SIM115 - closed below
    # 1. both persistent sessions exist before anything is published
    proc = subprocess.Popen(gshp, env=env, stdout=log, stderr=log)
    deadline = time.monotonic() + 30
    while scrape(api, "gshp_mqtt_subscribed") != 1.0:
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(f"collector did not subscribe; see {root}/{name}.log")
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    sub = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(mq.port), "-c", "-i", f"sub-{name}",
           "-q", "1", "-t", f"{prefix}/#"]
    subprocess.run([*sub, "-W", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    # 2. queue the stream (mosquitto_pub, one process per meter topic)
    per_meter = messages // METERS
    t = time.monotonic()
    pubs = [subprocess.Popen(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(mq.port), "-q", "1", "-l",
                              "-t", f"{prefix}/M{i}"], stdin=subprocess.PIPE) for i in range(METERS)]
    for i, p in enumerate(pubs):
        assert p.stdin is not None
        p.stdin.write(_lines(case, i, per_meter).encode())
        p.stdin.close()
    for p in pubs:
        p.wait(300)
    publish_s = time.monotonic() - t
    total_msgs = per_meter * METERS
    readings = total_msgs * case.per_message
    # 3. baseline: mosquitto_sub drains its queued copy
    t = time.monotonic()
    subprocess.run([*sub, "-C", str(total_msgs)], stdout=subprocess.DEVNULL, check=True, timeout=300)
    baseline_s = time.monotonic() - t
    # 4. the collector drains its copy, to InfluxDB; the stored count is sampled all along. The collector's
    # /metrics is asked at most every 0.2 s once it runs: each scrape costs it CPU time
    proc = subprocess.Popen(gshp, env=env, stdout=log, stderr=log)
    first = last_commit = None
    samples: list[tuple[float, int]] = []
    deadline = time.monotonic() + 600
    scraped = 0.0
    try:
        while time.monotonic() < deadline:
            if first is None and scrape(api, "gshp_mqtt_messages_total") > 0:
                first = scraped = time.monotonic()
            if (first is not None and last_commit is None and time.monotonic() - scraped >= 0.2):
                scraped = time.monotonic()
                if scrape(api, "gshp_mqtt_acked_total") >= total_msgs:
                    last_commit = scraped
            if first is not None:
                samples.append((time.monotonic(), count_flow(ix, db)))
                if samples[-1][1] >= readings:
                    break
            time.sleep(0.05)
        done = time.monotonic()
        if last_commit is None:
            last_commit = done  # everything stored before the last scrape saw every acknowledgement
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        log.close()
    stored = count_flow(ix, db)
    assert first is not None and last_commit is not None, f"collector stalled; see {root}/{name}.log"
    ingest_s = done - first
    base_rate = total_msgs / baseline_s
    sustained = _sustained(samples, readings)
    return {"messages": total_msgs, "readings": readings, "publish_msg_s": total_msgs / publish_s,
            "baseline_msg_s": base_rate, "collector_msg_s": sustained / case.per_message,
            "to_outbox_readings_s": readings / (last_commit - first), "readings_s": sustained,
            "burst_readings_s": readings / ingest_s, "ratio": sustained / case.per_message / base_rate,
            "lost": readings - stored}


def _sustained(samples: list[tuple[float, int]], total: int) -> float:
    """Readings/s into InfluxDB between 10 % and 90 % stored: the steady rate, without the start-up and the
    last partial batch (which waits up to `outbox.max_batch_age` before it is sent)."""
    lo = next(s for s in samples if s[1] >= total * 0.1)
    hi = next(s for s in samples if s[1] >= total * 0.9)
    return (hi[1] - lo[1]) / (hi[0] - lo[0]) if hi[0] > lo[0] else float("nan")


def measure(messages: int, rounds: int = 3) -> list[tuple[Case, dict[str, float]]]:
    """Per case, the median of each figure over `rounds` alternating rounds (so background load hits the
    baseline and the collector alike); `lost` is the worst round's."""
    runs: dict[str, list[dict[str, float]]] = {c.name: [] for c in CASES}
    with tempfile.TemporaryDirectory(prefix="gshp-bench-") as tmp:
        root = Path(tmp)
        mq = Mosquitto(root / "mosquitto").start()
        ix = Influxd(root / "influxd").start()
        try:
            for r in range(rounds):
                for c in CASES:
                    runs[c.name].append(run_case(c, messages // c.per_message, root, mq, ix, f"-{r}"))
        finally:
            mq.stop()
            ix.stop()
    out = []
    for c in CASES:
        keys = runs[c.name][0].keys()
        med = {k: statistics.median(x[k] for x in runs[c.name]) for k in keys}
        med["lost"] = max(x["lost"] for x in runs[c.name])
        med["ratio"] = med["collector_msg_s"] / med["baseline_msg_s"]
        out.append((c, med))
    return out


def run() -> list[Row]:
    rows = []
    for c, r in measure(200_000):
        rows.append(Row(f"MQTT {c.name} → InfluxDB (sustained, 10–90 % stored), lost {r['lost']:.0f}",
                        r["collector_msg_s"], "msg/s", r["baseline_msg_s"], "mosquitto_sub, same stream",
                        "≥ 0.35×" if c.per_message == 1 else ""))
        rows.append(Row(f"MQTT {c.name}: readings into InfluxDB (sustained)", r["readings_s"], "readings/s",
                        None, "", "≥ 30 000/s"))
        rows.append(Row(f"MQTT {c.name}: readings into the outbox", r["to_outbox_readings_s"], "readings/s"))
        rows.append(Row(f"MQTT {c.name}: whole burst, first message to last point stored",
                        r["burst_readings_s"], "readings/s"))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=200_000, help="readings per case (default 200000)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds; medians are reported (default 3)")
    a = ap.parse_args()
    results = measure(a.messages, a.rounds)
    print(f"\nMQTT ingest, {os.cpu_count()} CPUs, loopback, QoS 1, outbox synchronous=full\n")
    head = ("case", "messages", "readings", "mosquitto_sub msg/s", "collector msg/s", "to outbox rdg/s",
            "to InfluxDB rdg/s (sustained)", "whole burst rdg/s", "ratio", "lost")
    print(" | ".join(head))
    print(" | ".join("---" for _ in head))
    for c, r in results:
        print(f"{c.name} | {r['messages']:.0f} | {r['readings']:.0f} | {r['baseline_msg_s']:,.0f} | "
              f"{r['collector_msg_s']:,.0f} | {r['to_outbox_readings_s']:,.0f} | {r['readings_s']:,.0f} | "
              f"{r['burst_readings_s']:,.0f} | {r['ratio']:.2f} | {r['lost']:.0f}")
    return 0 if all(r["lost"] == 0 for _, r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
