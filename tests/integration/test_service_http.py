"""`gshp run` serves health and Prometheus metrics while it drains the outbox into InfluxDB."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from gshp.devstack import Influxd, free_port
from tests.helpers import count, wait_until

pytestmark = pytest.mark.integration


def test_run_serves_healthz_and_metrics_and_stops_cleanly_on_sigterm(
        influxd: Influxd, influx_db: str, state_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "gshp.yaml"
    config.write_text(f"""
state_dir: {state_dir}
influx: {{url: "{influxd.url}", api: v1, bucket: {influx_db}}}
api: {{listen: "127.0.0.1:{port}"}}
sites:
  - id: hehua
    name: 向阳荷花广场
    district: 宛城区
    meters: [{{id: E1, role: extraction}}, {{id: R1, role: reinjection}}]
""", encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "gshp.cli", "run", "--config", str(config)],
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: _get(f"http://127.0.0.1:{port}/healthz") is not None, timeout=20)
        # the API answers while the rule windows are back-filled; ok once that is done
        wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()["status"] == "ok",
                   timeout=20)
        health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()
        assert health["status"] == "ok" and "outbox_depth" in health and health["backfill"]["state"] == "done"
        # the site metadata point is written at start
        wait_until(lambda: count(influxd, influx_db, "site", '"name"') == 1, timeout=20)
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        for name in ("gshp_outbox_depth", "gshp_outbox_oldest_age_seconds", "gshp_points_written_total",
                     "gshp_write_errors_total", "gshp_points_dropped_total"):
            assert name in text
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "stopped;" in err
    # v1: the database is created at start, before the rules back-fill their windows from it
    assert "database not found" not in err, err


def _get(url: str) -> requests.Response | None:
    try:
        return requests.get(url, timeout=1)
    except requests.RequestException:
        return None
