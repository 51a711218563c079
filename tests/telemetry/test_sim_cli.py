"""`gshp sim hj212` and `gshp sim szy206` upload the shared site physics into a running `gshp run`: every
meter's readings arrive, interval volumes as volumes; fault options show in the dead letters; a logger
outage is buffered and uploaded afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gshp.devstack import Influxd
from tests.helpers import wait_until
from tests.telemetry.test_telemetry_e2e import Stack

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def stack(tmp_path: Path, influxd: Influxd, influx_db: str) -> Iterator[Stack]:
    s = Stack(tmp_path, influxd, influx_db).start()
    try:
        yield s
    finally:
        assert s.collector.stop() == 0, s.collector.log.read_text()[-3000:]


def _sim(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gshp.cli", "sim", *args, "--config", str(stack.collector.config),
                           "--hours", "0.25", "--speed", "900"], env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=120)


def _count(stack: Stack, site: str, meter: str, field: str) -> int:
    res = stack.influxd.query(f"SELECT count({field}) FROM flow WHERE site = '{site}' AND meter = '{meter}'",
                              stack.db)
    series = res[0].get("series")
    return int(series[0]["values"][0][1]) if series else 0  # type: ignore[index]


def test_sim_hj212_uploads_totals_and_minute_volumes_and_each_is_answered(stack: Stack) -> None:
    done = _sim(stack, "hj212", "--scenario", "discharge:20", "--window", "4")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 unanswered" in done.stdout
    # 15 minutes of data in 60 s steps: 16 real-time uploads per totalizer meter, 15 minute volumes
    wait_until(lambda: _count(stack, "s1", "E1", "total_m3") == 16 and _count(stack, "s1", "E2", "total_m3") == 16
               and _count(stack, "s1", "R1", "volume_m3") == 15, timeout=30)
    res = stack.influxd.query("SELECT sum(volume_m3) FROM flow WHERE meter = 'R1' AND site = 's1'", stack.db)
    volume = res[0]["series"][0]["values"][0][1]  # type: ignore[index]
    # reinjection = 80 % of the pump's 2 × 40 m³/h over 15 minutes (day-cycle load, noise, bias aside)
    assert 5.0 < volume < 20.0


def test_sim_hj212_faults_are_dead_lettered_and_an_outage_is_uploaded_afterwards(stack: Stack) -> None:
    done = _sim(stack, "hj212", "--wrong-password", "--sites", "s1")
    assert done.returncode == 0, done.stdout + done.stderr
    wait_until(lambda: stack.letters().get("wrong_password", 0) >= 16, timeout=30)
    done = _sim(stack, "hj212", "--bad-crc", "0.5", "--outage", "3:6")
    assert done.returncode == 0, done.stdout + done.stderr
    wait_until(lambda: stack.letters().get("bad_crc", 0) > 0, timeout=30)
    assert 0 < _count(stack, "s1", "E1", "total_m3") < 16


def test_sim_szy206_reports_both_flow_points_through_an_outage(stack: Stack) -> None:
    done = _sim(stack, "szy206", "--outage", "2:5")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 unanswered" in done.stdout
    wait_until(lambda: _count(stack, "s2", "E1", "total_m3") == 16 and _count(stack, "s2", "R1", "total_m3") == 16,
               timeout=30)
