"""`gshp replay --from-influx` gives exactly the transitions `gshp replay --readings` gives for the same data."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from collector.influx.lineproto import FlowSchema
from collector.influx.writer import V1Writer
from collector.model import Reading
from gshp.config import parse_config
from gshp.devstack import Influxd
from simulators.scenarios import build

pytestmark = pytest.mark.integration

ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}


def test_replay_from_influx_matches_replay_from_csv(influxd: Influxd, influx_db: str, tmp_path: Path) -> None:
    data = build("discharge-20")
    raw = data.config()
    raw["influx"] = {"url": influxd.url, "api": "v1", "bucket": influx_db}
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    config = parse_config(config_path.read_text(encoding="utf-8"))
    csv_path = tmp_path / "readings.csv"
    data.readings.to_csv(csv_path, index=False)
    roles = {(s.id, m.id): m.role for s in config.sites for m in s.meters}
    schema = FlowSchema(config.sites)
    lines = [schema.line(Reading(r.site, r.meter, roles[(r.site, r.meter)], datetime.fromtimestamp(r.ts, UTC),
                                 r.rate_m3h, r.total_m3))
             for r in data.readings.itertuples(index=False)]
    writer = V1Writer(config.influx)
    writer.ensure_target()
    for i in range(0, len(lines), 5000):
        writer.write(lines[i:i + 5000])
    first = datetime.fromtimestamp(int(data.readings.ts.min()), UTC).isoformat()
    last = datetime.fromtimestamp(int(data.readings.ts.max()) + 1, UTC).isoformat()

    def replay(*args: str) -> list[str]:
        r = subprocess.run([sys.executable, "-m", "gshp.cli", "replay", "--config", str(config_path), *args],
                           capture_output=True, text=True, env=ENV, timeout=120)
        assert r.returncode == 0, r.stderr
        return r.stdout.splitlines()

    from_csv = replay("--readings", str(csv_path))
    from_influx = replay("--from-influx", "--start", first, "--stop", last)
    assert from_csv and from_influx == from_csv
    assert replay("--from-influx", "--start", first, "--stop", last, "--site", "discharge-20") == from_csv


def test_replay_from_influx_needs_a_time_range(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(build("honest-small-0").config(), allow_unicode=True), encoding="utf-8")
    r = subprocess.run([sys.executable, "-m", "gshp.cli", "replay", "--config", str(config), "--from-influx",
                        "--start", "2026-05-01T00:00:00+08:00"], capture_output=True, text=True, env=ENV)
    assert r.returncode == 2 and "--stop is required with --from-influx" in r.stderr and r.stdout == ""
