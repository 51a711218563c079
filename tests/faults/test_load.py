"""Load: 10× a city (1 000 readings/s) for 30 minutes of data time, accelerated into 45 s, through a real
broker into `gshp run` and a real influxd, with a stalled live-board subscriber attached: memory stays
flat (RSS from /proc) and every queue stays within its bound; every reading arrives."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

from gshp.devstack import Influxd, Mosquitto, free_port
from tests.faults.test_outages import metric_sum
from tests.helpers import rss_kb, wait_until
from tests.mqtt_support import Collector, Publisher, flow_count

SITES = 25
METERS = ("E1", "E2", "R1", "R2")  # 100 meters, one DTU per site sending all four in one message
RATE = 1000  # readings per second
SECONDS = 45
STEP_S = 4  # device time between two readings of a meter: 10 readings/s/meter × 4 s = 40× → 30 min
WARMUP_S = 15


def _config(path: Path, state: Path, influx: Influxd, broker: Mosquitto, db: str, api_port: int) -> Path:
    sites = "".join(
        f"  - id: c{i}\n    name: 站{i}\n    district: 区{i % 4}\n    meters:\n" + "".join(
            f"      - {{id: {m}, role: {'extraction' if m[0] == 'E' else 'reinjection'}, "
            f"mqtt: {{topic: dtu/c{i}/up, profile: dtu-json-array}}}}\n" for m in METERS)
        for i in range(SITES))
    path.write_text(f"""\
timezone: Asia/Shanghai
state_dir: {state}
influx: {{url: '{influx.url}', api: v1, bucket: {db}}}
outbox: {{max_batch_age: 200ms}}
mqtt: {{host: 127.0.0.1, port: {broker.port}, client_id: gshp-load, max_inflight: 1000}}
api: {{listen: '127.0.0.1:{api_port}', tokens: [{{token: load-viewer-token-0123, role: viewer}}]}}
sites:
{sites}""", encoding="utf-8")
    return path


def test_ten_times_a_city_for_thirty_data_minutes_with_flat_memory_and_bounded_queues(
        influxd: Influxd, mosquitto: Mosquitto, influx_db: str, tmp_path: Path, figures: dict[str, Any]) -> None:
    api_port = free_port()
    cfg = _config(tmp_path / "gshp.yaml", tmp_path / "state", influxd, mosquitto, influx_db, api_port)
    collector = Collector(cfg, api_port, tmp_path / "gshp.log").start()
    collector.wait_subscribed()
    assert collector.proc is not None
    pid = collector.proc.pid
    # a live-board client that connects and never reads: its queue must stay bounded
    stalled = requests.get(f"http://127.0.0.1:{api_port}/api/stream", stream=True, timeout=10,
                           headers={"Authorization": "Bearer load-viewer-token-0123"})
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    per_msg = len(METERS)
    messages = RATE * SECONDS // per_msg

    def stream() -> Iterator[tuple[str, bytes]]:
        t0 = time.monotonic()
        for k in range(messages):
            site, step = k % SITES, k // SITES
            ms = int(start.timestamp() * 1000) + step * STEP_S * 1000
            body = [{"id": m, "ts": ms, "rate_m3h": 50.0, "total_m3": 1000.0 + step * 0.05 + j}
                    for j, m in enumerate(METERS)]
            yield f"dtu/c{site}/up", json.dumps(body).encode()
            ahead = (k + 1) * per_msg / RATE - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)

    pub = Publisher(mosquitto.port, "load-dtus", window=500)
    publisher = threading.Thread(target=pub.publish_all, args=(stream(),), kwargs={"timeout": 300}, daemon=True)
    samples: list[tuple[float, int, float, float]] = []  # (t, rss kB, outbox depth, mqtt pending)
    t0 = time.monotonic()
    publisher.start()
    try:
        while publisher.is_alive() and time.monotonic() - t0 < SECONDS + 60:
            samples.append((time.monotonic() - t0, rss_kb(pid), metric_sum(collector, "gshp_outbox_depth"),
                            metric_sum(collector, "gshp_mqtt_pending")))
            time.sleep(1.0)
        publisher.join(60)
        took = time.monotonic() - t0
        assert not publisher.is_alive()
        expected = messages * per_msg
        wait_until(lambda: flow_count(influxd, influx_db) >= expected, timeout=60, interval=0.5)
        samples.append((time.monotonic() - t0, rss_kb(pid), metric_sum(collector, "gshp_outbox_depth"),
                        metric_sum(collector, "gshp_mqtt_pending")))
    finally:
        stalled.close()
        pub.close()
        code = collector.stop()
    assert code == 0
    stored = flow_count(influxd, influx_db)
    after_warmup = [s for s in samples if s[0] >= WARMUP_S]
    base = after_warmup[0][1]
    peak = max(s[1] for s in after_warmup)
    growth = (peak - base) / base
    max_depth = max(s[2] for s in samples)
    max_pending = max(s[3] for s in samples)
    assert stored == expected
    assert growth < 0.10, (base, peak, samples)
    assert max_pending <= 1000  # mqtt.max_inflight
    assert max_depth < 20_000  # the drainer keeps up: a few seconds of readings at most
    figures.update(readings=expected, readings_per_s=round(expected / took), wall_s=round(took, 1),
                   data_time_min=round(messages // SITES * STEP_S / 60, 1), stored=stored, lost=expected - stored,
                   rss_after_warmup_mb=round(base / 1024, 1), rss_peak_mb=round(peak / 1024, 1),
                   rss_growth_pct=round(100 * growth, 1), max_outbox_depth=int(max_depth),
                   max_mqtt_pending=int(max_pending), stalled_sse_subscribers=1)
