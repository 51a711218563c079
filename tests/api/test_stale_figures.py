"""Stale figures never pass for current: a reinjection meter silent for 19 hours adds nothing to the site's
live reinjection, and the balance windows it holds back say how old they are and that they are not complete.
The service runs in data time (`DataClock`), fed through `Service.accept` as a collector would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from collector.model import Reading, Role
from gshp.clock import DataClock
from gshp.config import parse_config
from gshp.devstack import Influxd, free_port
from tests.api.conftest import TOKENS, serving

T0 = datetime(2026, 5, 5, 0, 0, tzinfo=UTC)
EVERY = timedelta(minutes=5)
SILENT = timedelta(hours=19)


def _reading(meter: str, role: Role, k: int, rate: float) -> Reading:
    return Reading("hehua", meter, role, T0 + k * EVERY, rate, 1000.0 + rate * k * EVERY.total_seconds() / 3600)


def test_a_reinjection_meter_silent_for_19_hours_is_not_summed_and_its_balance_says_stale(
        tmp_path: Path, influxd: Influxd, influx_db: str) -> None:
    config = parse_config(f"""
timezone: Asia/Shanghai
state_dir: {tmp_path / "state"}
influx: {{url: "{influxd.url}", api: v1, bucket: {influx_db}}}
api:
  listen: 127.0.0.1:{free_port()}
  tokens: [{{token: {TOKENS['viewer']}, role: viewer, name: 水利局}}]
sites:
  - id: hehua
    name: 向阳荷花广场
    district: 宛城区
    meters: [{{id: E1, role: extraction}}, {{id: R1, role: reinjection}}]
""", env={})
    both = 5 * 12  # 5 h of both meters, then only the extraction meter for 19 h
    last = both + int(SILENT / EVERY)
    with serving(config, clock=DataClock()) as running:
        for k in range(last + 1):
            batch = [_reading("E1", Role.EXTRACTION, k, 40.0)]
            if k <= both:
                batch.append(_reading("R1", Role.REINJECTION, k, 40.64))
            running.service.accept(batch, "test")

        page = running.get("/api/sites").json()
        (site,) = page["sites"]
        assert site["extraction_m3h"] == 40.0
        assert site["reinjection_m3h"] is None, "the silent meter's last 40.64 m³/h is not current"
        assert site["flows_complete"] is False
        one_hour = site["balance"]["1h"]
        assert one_hour["complete"] is False and one_hour["stale"] is True
        assert abs(one_hour["age_s"] - SILENT.total_seconds()) <= 2 * EVERY.total_seconds()
        assert one_hour["as_of"] == one_hour["end"]
        assert datetime.fromisoformat(one_hour["as_of"]) <= T0 + both * EVERY
        today = site["drained_today"]
        assert today["stale"] is True and today["complete"] is False
        assert today["age_s"] > 15 * 60  # held back at the local midnight: hours old, not current

        detail = running.get("/api/sites/hehua").json()
        assert detail["reinjection_m3h"] is None and detail["balance"]["1h"]["stale"] is True
        assert detail["history"][-1]["reinjection_m3h"] == 0.0  # the chart: no meter of the side online

        # the meter reports again: its rate counts, and the figures are complete and current once more
        running.service.accept([_reading("E1", Role.EXTRACTION, last + 1, 40.0),
                                _reading("R1", Role.REINJECTION, last + 1, 40.64)], "test")
        site = running.get("/api/sites").json()["sites"][0]
        assert site["reinjection_m3h"] == 40.64 and site["flows_complete"] is True
        assert datetime.fromisoformat(site["flows_as_of"]) == T0 + (last + 1) * EVERY
        assert site["flows_age_s"] == 0.0
