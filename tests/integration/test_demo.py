"""`gshp demo`: the simulated city runs end to end; alerts fire for the troubled sites and none for the
honest ones; Ctrl-C (here: the end of --hours, then SIGINT for a second run) leaves no process behind."""

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
from simulators.city import CITY
from tests.helpers import wait_until

pytestmark = pytest.mark.integration

ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
NAMES = {p.name: p for p in CITY}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie still answers kill(0); it no longer runs
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_demo_city_alerts_for_the_troubled_sites_only(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gshp.cli", "demo", "--speed", "600", "--hours", "7",
                             "--listen", f"127.0.0.1:{port}", "--dir", str(tmp_path / "demo")], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: _get(f"http://127.0.0.1:{port}/healthz"), timeout=60, interval=0.5)
        # the demo's API is readable without a token on loopback
        wait_until(lambda: len(_firing(port)) >= 2, timeout=90, interval=1)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    printed = re.findall(r"^\[\d\d-\d\d \d\d:\d\d\] (\S+) \S+ \S+ (\S+) (.*)$", out, re.M)
    fired = {site for state, site, _ in printed if state == "告警"}
    assert "宛城区人民医院" in fired  # drains 35 %
    assert "卧龙区政务服务中心" in fired  # drains at night
    assert any(site == "高新区创业园" and "回灌流量计无数据（R2）" in text  # R2 goes silent after 3 h
               for state, site, text in printed if state == "告警")
    assert not [site for site in fired if NAMES[site].honest], f"alerts for honest sites: {printed}"
    assert "demo stopped" in out


def test_ctrl_c_stops_the_demo_and_its_servers(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gshp.cli", "demo", "--speed", "300", "--listen",
                             f"127.0.0.1:{port}", "--dir", str(tmp_path / "demo")], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: _get(f"http://127.0.0.1:{port}/healthz"), timeout=60, interval=0.5)
        wait_until(lambda: bool(requests.get(f"http://127.0.0.1:{port}/api/sites", timeout=5).json()["sites"][0]
                                ["last_seen"]), timeout=30)
        pids = [int((tmp_path / "demo" / name / f"{name}.pid").read_text()) for name in ("influxd", "mosquitto")]
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out[-3000:]
    assert "demo stopped" in out
    assert not any(_alive(pid) for pid in pids), "the demo's servers must stop with it"


def _firing(port: int) -> list[object]:
    return list(requests.get(f"http://127.0.0.1:{port}/api/alerts", params={"state": "firing"}, timeout=5)
                .json()["alerts"])


def _get(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False
