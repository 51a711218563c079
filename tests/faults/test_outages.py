"""Outages under load: InfluxDB down for an accelerated hour, a Modbus gateway flapping every 1.5 s,
mosquitto restarted, the outbox's disk full. Nothing acknowledged is lost; metrics and logs say what
happens; everything drains after."""

from __future__ import annotations

import contextlib
import itertools
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from gshp.devstack import Influxd, Mosquitto, free_port
from tests.faults.support import ModbusSims, SteadyDtus, write_run_config
from tests.helpers import fill_disk, wait_until
from tests.mqtt_support import Collector, flow_count, stored_points

METERS = """\
      - {id: M1, role: extraction,  modbus: {gateway: gw1, unit: 1, profile: tuf2000m}}
      - {id: M2, role: reinjection, modbus: {gateway: gw1, unit: 2, profile: tuf2000m}}
      - {id: N1, role: extraction,  modbus: {gateway: gw2, unit: 1, profile: tuf2000m}}
      - {id: N2, role: reinjection, modbus: {gateway: gw2, unit: 2, profile: tuf2000m}}
      - {id: Q1, role: extraction,  mqtt: {topic: dtu/Q1/up, profile: dtu-json}}
      - {id: Q2, role: reinjection, mqtt: {topic: dtu/Q2/up, profile: dtu-json}}"""

MQTT_ONLY = """\
      - {id: Q1, role: extraction,  mqtt: {topic: dtu/Q1/up, profile: dtu-json}}
      - {id: Q2, role: reinjection, mqtt: {topic: dtu/Q2/up, profile: dtu-json}}"""


def metric_sum(collector: Collector, name: str) -> float:
    """The sum of a metric over all its labels (0 when absent or the service does not answer)."""
    try:
        text = requests.get(f"http://127.0.0.1:{collector.api_port}/metrics", timeout=2).text
    except requests.RequestException:
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + " ") or line.startswith(name + "{"))


def _times(influxd: Influxd, db: str, meter: str) -> list[int]:
    res = influxd.query(f"SELECT total_m3 FROM flow WHERE meter = '{meter}'", db)
    series = res[0].get("series") or []
    return [int(v[0]) for v in series[0]["values"]] if series else []  # type: ignore[index]


def test_influxd_down_an_hour_gateway_flapping_and_broker_restart_lose_nothing(
        tmp_path: Path, influx_db: str, figures: dict[str, Any]) -> None:
    influxd = Influxd(tmp_path / "influxd").start()  # its own: it is stopped and started
    broker = Mosquitto(tmp_path / "broker").start()
    sims = ModbusSims({"gw1": [1, 2], "gw2": [1, 2]})
    api_port = free_port()
    config = write_run_config(tmp_path / "gshp.yaml", state_dir=tmp_path / "state", influx_url=influxd.url,
                              db=influx_db, api_port=api_port, mqtt_port=broker.port, gateways=sims.ports,
                              meters=METERS)
    collector = Collector(config, api_port, tmp_path / "gshp.log").start()
    dtus: SteadyDtus | None = None
    try:
        collector.wait_subscribed()
        # 150 readings/s per DTU, 3 s of device time apart: 450× — 8 s of outage is an hour of readings
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
        dtus = SteadyDtus(broker.port, "faults-outage-dtus", ["Q1", "Q2"], start, per_s=300, step_ms=3000)

        # -- a gateway flapping every 1.5 s for 9 s; the other one keeps its pace --------------------------
        flap_from = time.time()
        flaps = 0
        for _ in range(3):
            time.sleep(1.5)
            sims.pause("gw1")
            flaps += 1
            time.sleep(1.5)
            sims.resume("gw1")
        time.sleep(2.0)
        flap_to = time.time()
        wait_until(lambda: metric_sum(collector, "gshp_outbox_depth") < 500, timeout=20)
        steady = [t for t in _times(influxd, influx_db, "N1") if flap_from * 1000 <= t <= flap_to * 1000]
        steady_gap = max(b - a for a, b in itertools.pairwise(steady)) / 1000
        flapping = [t for t in _times(influxd, influx_db, "M1") if t >= (flap_to - 2.0) * 1000]
        assert steady_gap < 1.0, steady_gap  # interval 250 ms: the flapping neighbour costs it nothing
        assert flapping, "the flapping gateway's meters are read again once it is back"
        log = (tmp_path / "gshp.log").read_text()
        # the steady gateway logs no fault (a poll cycle slowed by a loaded machine is not one)
        gw2 = [line for line in log.splitlines() if "gw2:" in line and "poll cycle" not in line]
        assert "gw1" in log and not gw2, gw2

        # -- InfluxDB down for an accelerated hour ----------------------------------------------------------
        errors_before = metric_sum(collector, "gshp_write_errors_total")
        influxd.stop()
        depths = []
        for _ in range(8):
            time.sleep(1.0)
            depths.append(metric_sum(collector, "gshp_outbox_depth"))
        health = requests.get(f"http://127.0.0.1:{api_port}/healthz", timeout=2).json()
        write_errors = metric_sum(collector, "gshp_write_errors_total") - errors_before
        assert depths[-1] > depths[0] > 0, depths  # the outbox grows while the database is away
        assert write_errors >= 1
        assert health["status"] == "degraded" and health["influx"] == "connection", health
        assert "keeping" in (tmp_path / "gshp.log").read_text()  # the log says lines are kept and retried
        outage_depth = int(depths[-1])
        influxd.start()

        # -- mosquitto restarted mid-stream -------------------------------------------------------------------
        time.sleep(1.0)
        broker.restart()
        time.sleep(2.0)
        published = dtus.finish(timeout=180)
        dtus = None
        wait_until(lambda: metric_sum(collector, "gshp_outbox_depth") == 0
                   and flow_count(influxd, influx_db) > 0, timeout=90, interval=0.3)
        wait_until(lambda: {p for p in stored_points(influxd, influx_db) if p[0][0] == "Q"} >= set(published),
                   timeout=90, interval=0.5)
    finally:
        if dtus is not None:
            with contextlib.suppress(Exception):
                dtus.finish(timeout=10)
        code = collector.stop()
        sims.close()
        broker.stop()
    stored = stored_points(influxd, influx_db)
    influxd.stop()
    assert code == 0
    assert {p for p in stored if p[0][0] == "Q"} == set(published)
    figures.update(flaps=flaps, steady_gateway_max_gap_s=round(steady_gap, 2), influx_outage_s=8,
                   influx_outage_data_time_h=round(8 * 150 * 3 / 3600, 2), outbox_depth_at_outage_end=outage_depth,
                   write_errors_during_outage=int(write_errors), mqtt_published=len(published),
                   mqtt_lost=len(set(published) - stored), stored=len(stored))


@contextlib.contextmanager
def _tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_outbox_disk_full_is_a_clear_error_with_no_corruption_and_recovers(
        tmp_path: Path, mosquitto: Mosquitto, influx_db: str, figures: dict[str, Any]) -> None:
    """The disk fills while InfluxDB is away, so the outbox has to grow to keep what arrives.

    (With InfluxDB up, a full disk can go unnoticed for a long time, and rightly so: SQLite reuses the WAL's
    frames and the pages freed by sent lines. The outbox needs new space only when it holds more than before.)
    """
    influxd = Influxd(tmp_path / "influxd").start()  # its own: it is stopped and started
    with _tmpfs(tmp_path / "small", "4m") as disk:
        api_port = free_port()
        config = write_run_config(tmp_path / "gshp.yaml", state_dir=disk / "state", influx_url=influxd.url,
                                  db=influx_db, api_port=api_port, mqtt_port=mosquitto.port, meters=MQTT_ONLY)
        collector = Collector(config, api_port, tmp_path / "gshp.log").start()
        dtus: SteadyDtus | None = None
        filler = disk / "filler"
        try:
            collector.wait_subscribed()
            start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
            dtus = SteadyDtus(mosquitto.port, "faults-diskfull-dtus", ["Q1", "Q2"], start, per_s=200)
            wait_until(lambda: flow_count(influxd, influx_db) > 200, timeout=30)
            influxd.stop()  # from now on every reading that arrives needs room in the outbox
            # take every free byte of the disk
            fill_disk(filler)
            wait_until(lambda: "disk is full" in (tmp_path / "gshp.log").read_text(), timeout=30)
            wait_until(lambda: metric_sum(collector, "gshp_mqtt_pauses_total") > 0, timeout=10)
            pauses = metric_sum(collector, "gshp_mqtt_pauses_total")
            time.sleep(2.0)
            check = sqlite3.connect(f"file:{disk / 'state' / 'outbox.sqlite'}?mode=ro", uri=True)
            integrity = check.execute("PRAGMA integrity_check").fetchone()[0]
            check.close()
            assert integrity == "ok"
            assert collector.proc is not None and collector.proc.poll() is None  # still running
            filler.unlink()  # space returns
            influxd.start()
            published = dtus.finish(timeout=120)
            dtus = None
            wait_until(lambda: {p for p in stored_points(influxd, influx_db)} >= set(published), timeout=90,
                       interval=0.5)
        finally:
            if dtus is not None:
                with contextlib.suppress(Exception):
                    dtus.finish(timeout=10)
            filler.unlink(missing_ok=True)
            code = collector.stop()
        assert code == 0
        stored = stored_points(influxd, influx_db)
        influxd.stop()
        log = (tmp_path / "gshp.log").read_text()
        full_lines = [line for line in log.splitlines() if "disk is full" in line]
        assert "Traceback" not in log
        figures.update(disk="tmpfs 4 MiB", mqtt_published=len(published), lost=len(set(published) - stored),
                       mqtt_pauses=int(pauses), integrity=integrity, disk_full_log_lines=len(full_lines),
                       first_error=full_lines[0][24:220] if full_lines else None)
