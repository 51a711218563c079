"""`gshp backtest --from-influx` raises what `gshp backtest --readings` raises for the same data."""

from __future__ import annotations

import json
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


def test_backtest_from_influx_matches_backtest_from_csv(influxd: Influxd, influx_db: str, tmp_path: Path) -> None:
    discharge, honest = build("discharge-20"), build("honest-small-0")
    raw = discharge.config()
    raw["sites"] += honest.config()["sites"]
    raw["influx"] = {"url": influxd.url, "api": "v1", "bucket": influx_db}
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    config = parse_config(config_path.read_text(encoding="utf-8"))
    (tmp_path / "data").mkdir()
    discharge.readings.to_csv(tmp_path / "data" / "discharge.csv", index=False)
    honest.readings.to_csv(tmp_path / "data" / "honest.csv", index=False)
    roles = {(s.id, m.id): m.role for s in config.sites for m in s.meters}
    schema = FlowSchema(config.sites)
    writer = V1Writer(config.influx)
    writer.ensure_target()
    for data in (discharge, honest):
        lines = [schema.line(Reading(r.site, r.meter, roles[(r.site, r.meter)],
                                     datetime.fromtimestamp(r.ts, UTC), r.rate_m3h, r.total_m3))
                 for r in data.readings.itertuples(index=False)]
        for i in range(0, len(lines), 5000):
            writer.write(lines[i:i + 5000])
    first = datetime.fromtimestamp(int(discharge.readings.ts.min()), UTC).isoformat()
    last = datetime.fromtimestamp(int(honest.readings.ts.max()) + 1, UTC).isoformat()
    against = tmp_path / "against.yaml"
    against.write_text("rules:\n  balance:\n    windows: [{name: day, window: 24h, threshold_pct: 50}]\n",
                       encoding="utf-8")

    def backtest(*args: str) -> list[dict[str, object]]:
        r = subprocess.run([sys.executable, "-m", "gshp.cli", "backtest", "--config", str(config_path),
                            "--against", str(against), "--jobs", "2", *args],
                           capture_output=True, text=True, env=ENV, timeout=300)
        assert r.returncode == 0, r.stderr
        assert "回测 backtest" in r.stderr
        return [json.loads(line) for line in r.stdout.splitlines()]

    from_csv = backtest("--readings", str(tmp_path / "data"))
    from_influx = backtest("--from-influx", "--start", first, "--stop", last)
    assert from_influx[:-1] == from_csv[:-1]
    assert from_influx[0]["difference"]["alerts_only_rules"]
    assert from_influx[-1]["summary"]["rows"] == len(discharge.readings) + len(honest.readings)


def test_backtest_from_influx_needs_a_time_range(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(build("honest-small-0").config(), allow_unicode=True), encoding="utf-8")
    r = subprocess.run([sys.executable, "-m", "gshp.cli", "backtest", "--config", str(config), "--from-influx",
                        "--start", "2026-05-01T00:00:00+08:00"], capture_output=True, text=True, env=ENV)
    assert r.returncode == 2 and "--stop is required with --from-influx" in r.stderr and r.stdout == ""
