"""State that is never lost silently: damaged, emptied and shortened outbox files, a second `gshp run` on
one state directory, and floods of large payloads — each against a real influxd, mosquitto and `gshp run`.

- a corrupt page, a half-length file: the outbox is moved aside at start, its readable lines salvaged and
  sent to InfluxDB, the service (API, rules) runs, `/healthz` says `degraded` and why;
- a 0-byte outbox: starts empty, but loudly — the high-water record beside it held the lines it had;
- damage met while running: the drainer's read fails with ``database disk image is malformed``; the outbox
  is repaired once and drains on, instead of retrying forever;
- two `gshp run` on one state_dir: the second exits 2 naming the first one's PID;
- 10 MB payloads flooding in: `gshp run` stays under 300 MB; 5 000 × 61 kB rejects: the dead-letter store
  stays under its byte bound, the oldest evicted and counted.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from prometheus_client import REGISTRY

from collector.drain import Drainer
from collector.influx.settings import InfluxSettings
from collector.influx.writer import make_writer
from collector.outbox import Outbox, OutboxSettings
from gshp.devstack import Influxd, Mosquitto, free_port
from tests.faults.support import write_run_config
from tests.helpers import wait_until
from tests.mqtt_support import Collector, Publisher, flow_count

LINES = 5001
METERS = """\
      - {id: Q1, role: extraction,  mqtt: {topic: dtu/Q1/up, profile: dtu-json}}
      - {id: Q2, role: reinjection, mqtt: {topic: dtu/Q2/up, profile: dtu-json}}"""
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)


def _lines(n: int) -> list[str]:
    ms = int(T0.timestamp()) * 1000  # the write precision
    return [f"flow,site=s1,meter=Q1,role=extraction,district=宛城区 rate_m3h=50,total_m3={1000 + i * 0.25} "
            f"{ms + i * 1000}" for i in range(n)]


def _outbox_with_lines(path: Path, n: int) -> None:
    """An outbox left by a clean stop with `n` lines waiting, one per stored chunk."""
    box = Outbox(path, OutboxSettings(batch_size=1, synchronous="normal"))
    box.put(_lines(n))
    box.close()


def _corrupt_page(path: Path, page: int) -> None:
    with open(path, "r+b") as f:
        f.seek(page * 4096)
        f.write(b"\xab" * 4096)


def _start(tmp_path: Path, influxd: Influxd, mosquitto: Mosquitto, db: str, **extra: Any) -> Collector:
    api_port = free_port()
    config = write_run_config(tmp_path / "gshp.yaml", state_dir=tmp_path / "state", influx_url=influxd.url, db=db,
                              api_port=api_port, mqtt_port=mosquitto.port, meters=METERS, **extra)
    return Collector(config, api_port, tmp_path / "gshp.log").start()


def _health(c: Collector) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        assert c.proc is not None and c.proc.poll() is None, c.log.read_text()[-3000:]
        try:
            body: dict[str, Any] = requests.get(f"http://127.0.0.1:{c.api_port}/healthz", timeout=2).json()
            return body
        except requests.RequestException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _salvaged(problem: str) -> int:
    m = re.search(r"(\d+) readable rows salvaged", problem)
    assert m, problem
    return int(m.group(1))


def _stored_totals(influxd: Influxd, db: str) -> set[float]:
    res = influxd.query("SELECT total_m3 FROM flow", db)
    series = res[0].get("series", [])
    return {float(v) for s in series for _, v in s["values"]}  # type: ignore[index, union-attr]


def test_a_corrupt_page_in_the_outbox_is_moved_aside_and_its_readable_lines_sent(
        influxd: Influxd, mosquitto: Mosquitto, influx_db: str, tmp_path: Path, figures: dict[str, Any]) -> None:
    outbox = tmp_path / "state" / "outbox.sqlite"
    _outbox_with_lines(outbox, LINES)
    _corrupt_page(outbox, outbox.stat().st_size // 4096 // 2)
    c = _start(tmp_path, influxd, mosquitto, influx_db)
    try:
        health = _health(c)
        assert health["status"] == "degraded", health
        (problem,) = health["stores"]["outbox"]
        salvaged = _salvaged(problem)
        assert LINES - 200 < salvaged < LINES, problem  # one page of lines lost, the rest kept
        wait_until(lambda: flow_count(influxd, influx_db) >= salvaged, timeout=60)
        c.wait_subscribed()  # collection goes on
    finally:
        assert c.stop() == 0
    stored = _stored_totals(influxd, influx_db)
    assert len(stored) == salvaged and stored <= {1000 + i * 0.25 for i in range(LINES)}
    assert len(list(outbox.parent.glob("outbox.sqlite.damaged-*"))) == 1
    log = c.log.read_text()
    assert f"{salvaged} readable rows salvaged" in log and "ERROR" in log
    figures.update(lines=LINES, salvaged=salvaged, lost=LINES - salvaged)


def test_a_half_length_outbox_does_not_stop_the_service(
        influxd: Influxd, mosquitto: Mosquitto, influx_db: str, tmp_path: Path, figures: dict[str, Any]) -> None:
    outbox = tmp_path / "state" / "outbox.sqlite"
    _outbox_with_lines(outbox, LINES)
    with open(outbox, "r+b") as f:
        f.truncate(outbox.stat().st_size // 2)
    c = _start(tmp_path, influxd, mosquitto, influx_db)
    try:
        health = _health(c)  # the API is up: alerts and the board with it
        (problem,) = health["stores"]["outbox"]
        salvaged = _salvaged(problem)
        assert 0 < salvaged < LINES and f"at least {LINES - salvaged} lost" in problem
        wait_until(lambda: flow_count(influxd, influx_db) >= salvaged, timeout=60)
        assert requests.get(f"http://127.0.0.1:{c.api_port}/api/alerts", timeout=5).status_code == 200
    finally:
        assert c.stop() == 0
    stored = _stored_totals(influxd, influx_db)
    assert len(stored) == salvaged and stored <= {1000 + i * 0.25 for i in range(LINES)}  # nothing invented
    figures.update(lines=LINES, salvaged=salvaged)


def test_an_outbox_emptied_while_stopped_is_reported_loudly(
        influxd: Influxd, mosquitto: Mosquitto, influx_db: str, tmp_path: Path) -> None:
    outbox = tmp_path / "state" / "outbox.sqlite"
    _outbox_with_lines(outbox, LINES)
    outbox.write_bytes(b"")
    c = _start(tmp_path, influxd, mosquitto, influx_db)
    try:
        health = _health(c)
        assert health["status"] == "degraded"
        (problem,) = health["stores"]["outbox"]
        assert f"is an empty file (it held {LINES} rows" in problem
        c.wait_subscribed()
    finally:
        assert c.stop() == 0
    assert f"empty file (it held {LINES} rows" in c.log.read_text()


def test_damage_met_while_draining_is_repaired_once_not_retried_forever(
        influxd: Influxd, influx_db: str, tmp_path: Path, figures: dict[str, Any]) -> None:
    path = tmp_path / "outbox.sqlite"
    _outbox_with_lines(path, 3000)
    box = Outbox(path, OutboxSettings(max_batch_age=timedelta(milliseconds=50)))  # opened sound
    _corrupt_page(path, path.stat().st_size // 4096 // 2)  # then a page goes bad under it
    before = REGISTRY.get_sample_value("gshp_store_errors_total", {"store": "outbox"}) or 0.0
    settings = InfluxSettings.model_validate({"url": influxd.url, "api": "v1", "bucket": influx_db})
    drainer = Drainer(box, make_writer(settings))
    drainer.prepare()
    drainer.start()
    started = time.monotonic()
    try:
        wait_until(lambda: box.depth == 0, timeout=60)
        elapsed = time.monotonic() - started
        box.put(_lines(3001)[-1:])  # the repaired outbox takes new lines and sends them
        wait_until(lambda: box.depth == 0, timeout=30)
    finally:
        drainer.stop()
        drainer.writer.close()
    (problem,) = box.problems()  # the failing read is over; the damage stays listed
    m = re.search(r"(\d+) of (\d+) waiting lines salvaged into a fresh outbox, (\d+) lost", problem)
    assert m and "database disk image is malformed" in problem, problem
    salvaged, waiting, lost = map(int, m.groups())
    assert 0 < lost < 200 and salvaged + lost == waiting  # one page of lines lost, no more
    assert (REGISTRY.get_sample_value("gshp_store_errors_total", {"store": "outbox"}) or 0.0) >= before + 2
    stored = _stored_totals(influxd, influx_db)
    assert len(stored) == 3000 - lost + 1 and stored <= {1000 + i * 0.25 for i in range(3001)}
    box.close()
    figures.update(lines=3000, lost=lost, drained_in_s=round(elapsed, 2))


def test_a_second_run_on_one_state_dir_exits_2_naming_the_first(
        influxd: Influxd, mosquitto: Mosquitto, influx_db: str, tmp_path: Path, caplog: Any) -> None:
    first = _start(tmp_path, influxd, mosquitto, influx_db, influx_extra=", token: PwSecret111")
    second_port = free_port()
    second = None
    try:
        first.wait_subscribed()
        second = Collector(first.config, second_port, tmp_path / "second.log").start()
        assert second.proc is not None
        assert second.proc.wait(60) == 2
        assert f"is in use by process {first.proc.pid}" in second.log.read_text()  # type: ignore[union-attr]
        assert first.proc is not None and first.proc.poll() is None  # the first one is undisturbed
        _health(first)
    finally:
        assert first.stop() == 0
    log = first.log.read_text()
    assert "readable by other users" in log and "line 3 (token)" in log  # names lines and keys only
    assert "PwSecret111" not in log
    state = tmp_path / "state"
    assert (state.stat().st_mode & 0o777) == 0o700
    assert int((state / "gshp.lock").read_text()) == first.proc.pid  # type: ignore[union-attr]
    for f in state.iterdir():
        assert (f.stat().st_mode & 0o077) == 0, f  # nothing another user can read
    restarted = Collector(first.config, first.api_port, tmp_path / "third.log").start()
    try:
        restarted.wait_subscribed()  # the lock went with the process that held it
    finally:
        assert restarted.stop() == 0


def _rss_peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_ten_megabyte_payloads_keep_gshp_run_under_300_mb(
        influxd: Influxd, mosquitto: Mosquitto, influx_db: str, tmp_path: Path, figures: dict[str, Any]) -> None:
    c = _start(tmp_path, influxd, mosquitto, influx_db)
    pub = None
    try:
        c.wait_subscribed()
        assert c.proc is not None
        base = _rss_peak_mb(c.proc.pid)
        pub = Publisher(mosquitto.port, "faults-flood", window=8)
        big = b'{"ts": 1, "total_m3": 1, "pad": "' + b"x" * (10 * 1024 * 1024) + b'"}'
        n = 120  # 1.2 GB through the broker
        msgs = [("dtu/Q1/up", big) for _ in range(n)]
        msgs += [("dtu/Q2/up", json.dumps({"ts": int(T0.timestamp()), "total_m3": 7.5}).encode())]
        pub.publish_all(msgs, timeout=300)
        wait_until(lambda: (c.metric("gshp_mqtt_acked_total") or 0) >= n + 1, timeout=120)
        peak = _rss_peak_mb(c.proc.pid)
        assert peak < 300, peak
    finally:
        if pub is not None:
            pub.close()
        assert c.stop() == 0
    db = sqlite3.connect(tmp_path / "state" / "deadletter.sqlite")
    rows = db.execute("SELECT COUNT(*), MAX(length(payload)), MIN(size) FROM deadletter WHERE reason='too_large'"
                      ).fetchone()
    db.close()
    assert rows == (n, 4096, len(big))  # each one kept as a prefix, its size recorded
    assert flow_count(influxd, influx_db) == 1  # the small reading among them went through
    figures.update(payloads=n, payload_mb=10, rss_start_mb=round(base), rss_peak_mb=round(peak))


def test_dead_letters_stay_within_their_byte_bound(
        influxd: Influxd, mosquitto: Mosquitto, influx_db: str, tmp_path: Path, figures: dict[str, Any]) -> None:
    cap = 64 * 1024 * 1024
    c = _start(tmp_path, influxd, mosquitto, influx_db, mqtt_extra=f", deadletter_max_bytes: {cap}")
    pub = None
    n, size = 5000, 61_000
    try:
        c.wait_subscribed()
        evicted0 = c.metric("gshp_deadletters_evicted_total") or 0.0
        pub = Publisher(mosquitto.port, "faults-rejects", window=200)
        pub.publish_all((("dtu/Q1/up", b"{not json " + os.urandom(size // 2).hex().encode()[:size - 10])
                         for _ in range(n)), timeout=300)
        wait_until(lambda: (c.metric("gshp_mqtt_acked_total") or 0) >= n, timeout=180)
        evicted = (c.metric("gshp_deadletters_evicted_total") or 0.0) - evicted0
    finally:
        if pub is not None:
            pub.close()
        assert c.stop() == 0
    path = tmp_path / "state" / "deadletter.sqlite"
    db = sqlite3.connect(path)
    kept, held = db.execute("SELECT COUNT(*), SUM(length(payload) + length(CAST(topic AS BLOB)) + "
                            "length(CAST(detail AS BLOB)) + 64) FROM deadletter").fetchone()
    db.close()
    on_disk = sum(p.stat().st_size for p in path.parent.glob("deadletter.sqlite*") if p.suffix != ".json")
    assert held <= cap and kept + evicted == n and evicted > 0
    assert on_disk < cap * 1.2, on_disk  # the file stays near the bound (freed pages are reused)
    figures.update(payloads=n, payload_bytes=size, cap_bytes=cap, kept=kept, evicted=int(evicted),
                   file_mb=round(on_disk / 2**20, 1))
