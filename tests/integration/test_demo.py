"""`gshp demo` runs the simulated city into its own InfluxDB and Ctrl-C leaves no process behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from gshp.devstack import free_port
from tests.helpers import wait_until

pytestmark = pytest.mark.integration


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    # a zombie still answers kill(0); it no longer runs
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_demo_writes_readings_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gshp.cli", "demo", "--speed", "600", "--listen",
                             f"127.0.0.1:{port}", "--dir", str(tmp_path / "demo")],
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    banner = ""
    for line in proc.stdout:
        banner += line
        if "Ctrl-C" in line:
            break
    influx_url = re.search(r"InfluxDB\s+(http://\S+)", banner)
    assert influx_url, banner
    pids = [int((tmp_path / "demo" / name / f"{name}.pid").read_text()) for name in ("influxd", "mosquitto")]

    def stored() -> int:
        q = {"db": "gshp", "q": "SELECT count(total_m3) FROM flow"}
        r = requests.post(f"{influx_url.group(1)}/query", params=q, timeout=5).json()
        series = r["results"][0].get("series")
        return int(series[0]["values"][0][1]) if series else 0

    try:
        wait_until(lambda: stored() >= 200, timeout=60, interval=0.5)
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()["status"] == "ok"
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "demo stopped" in out
    assert not any(_alive(pid) for pid in pids), "the demo's servers must stop with it"
