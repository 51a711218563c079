"""`gshp poll --once --format json` against `gshp sim modbus`, both as real processes."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.modbus.conftest import free_port

GSHP = [sys.executable, "-m", "gshp.cli"]


def _start_sim(args: list[str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([*GSHP, "sim", "modbus", "--duration", "60", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    deadline = time.monotonic() + 20
    line = ""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("serving"):
            return proc, line
        if proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"simulator did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}")


@pytest.fixture
def sim_factory() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


def _config(tmp_path: Path, gateway: str) -> Path:
    cfg = tmp_path / "gshp.yaml"
    cfg.write_text(f"""
gateways: [{gateway}]
sites:
  - id: hehua
    name: 向阳荷花广场
    district: 宛城区
    meters:
      - {{id: E1, role: extraction, modbus: {{gateway: gw1, unit: 1, profile: tuf2000m}}}}
      - {{id: R1, role: reinjection, modbus: {{gateway: gw1, unit: 2, profile: tuf2000m}}}}
      - {{id: R2, role: reinjection, modbus: {{gateway: gw1, unit: 3, profile: tuf2000m}}}}
""", encoding="utf-8")
    return cfg


@pytest.mark.parametrize("framer", ["tcp", "rtu-over-tcp", "serial"])
def test_poll_prints_what_the_simulator_holds(tmp_path: Path, sim_factory: list[subprocess.Popen[str]],
                                              framer: str) -> None:
    port = free_port()
    proc, line = _start_sim(["--profile", "tuf2000m", "--port", str(port), "--units", "1-2",
                             "--framer", framer])
    sim_factory.append(proc)
    if framer == "serial":
        m = re.search(r"connect the collector to (\S+),", line)
        assert m, line
        gw = f"{{id: gw1, transport: serial, device: {m.group(1)}, timeout: 500ms}}"
    else:
        gw = f"{{id: gw1, transport: {framer}, host: 127.0.0.1, port: {port}, timeout: 500ms}}"
    out = subprocess.run([*GSHP, "poll", "--config", str(_config(tmp_path, gw)), "--once", "--format",
                          "json"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out.stderr  # unit 3 is not simulated
    rows = [json.loads(x) for x in out.stdout.splitlines()]
    assert [r["meter"] for r in rows] == ["E1", "R1", "R2"]
    for r, unit in zip(rows[:2], (1, 2), strict=True):
        assert "error" not in r
        assert r["identity"]["serial_number"] == 20240000 + unit
        assert r["identity"]["total_multiplier"] == 3
        # the simulator starts its totalizers at 10 000 m³ and its flow at 40 m³/h ± 10 % day swing
        assert r["total_m3"] == pytest.approx(10_000, abs=0.5)
        expected_rate = 40 * (1 + 0.1 * math.sin(2 * math.pi * 3600 / 86400))  # unit 1's phase
        assert r["rate_m3h"] == pytest.approx(expected_rate, rel=0.05)
        # signal quality wanders around 80 (σ 2); REG92's low byte holds it, the working step (0) above
        assert 70 <= r["signal_pct"] <= 90
        assert int(r["raw"]["holding:0"][91], 16) == r["signal_pct"]
    assert rows[2]["error_class"] == "timeout" and "no answer" in rows[2]["error"]
    assert rows[2]["site"] == "hehua" and rows[2]["rate_m3h"] is None


def test_poll_names_a_refused_connection(tmp_path: Path) -> None:
    gw = f"{{id: gw1, transport: tcp, host: 127.0.0.1, port: {free_port()}, timeout: 1s}}"
    out = subprocess.run([*GSHP, "poll", "--config", str(_config(tmp_path, gw)), "--once"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "FAILED connection: connection refused by 127.0.0.1" in out.stdout


def test_poll_rejects_an_unknown_profile(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "{id: gw1, transport: tcp, host: 127.0.0.1, port: 5020}")
    cfg.write_text(cfg.read_text(encoding="utf-8").replace("unit: 3, profile: tuf2000m",
                                                           "unit: 3, profile: tuf9000"), encoding="utf-8")
    out = subprocess.run([*GSHP, "poll", "--config", str(cfg), "--once"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2
    assert "tuf9000" in out.stderr and "known:" in out.stderr


def test_poll_reads_the_register_profiles_the_config_names(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    shipped = Path(__file__).parents[2] / "collector" / "modbus" / "profiles" / "tuf2000m.yaml"
    (profiles / "plant.yaml").write_text(shipped.read_text(encoding="utf-8").replace("name: tuf2000m",
                                                                                     "name: plant-tuf"),
                                         encoding="utf-8")
    gw = f"{{id: gw1, transport: tcp, host: 127.0.0.1, port: {free_port()}, timeout: 1s}}"
    cfg = _config(tmp_path, gw)
    cfg.write_text(f"modbus_profiles: {profiles}\n" + cfg.read_text(encoding="utf-8").replace(
        "unit: 3, profile: tuf2000m", "unit: 3, profile: plant-tuf"), encoding="utf-8")
    out = subprocess.run([*GSHP, "poll", "--config", str(cfg), "--once"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 1, out.stderr  # every meter tried (nothing listens), none refused as unknown
    assert "hehua/R2  gw1:3  plant-tuf  FAILED connection" in out.stdout
