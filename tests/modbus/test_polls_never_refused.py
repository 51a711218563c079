"""The index of stored readings never refuses a legitimate Modbus poll: a poll's device time is the poll
time, so every poll is new — through real pymodbus servers and a real influxd with `gshp run`, across a
restart with a short checked horizon."""

from __future__ import annotations

from pathlib import Path

import pytest

from gshp.devstack import Influxd, free_port
from tests.faults.support import ModbusSims, write_run_config
from tests.helpers import wait_until
from tests.mqtt_support import Collector, stored_points

pytestmark = pytest.mark.integration

METERS = """\
      - {id: M1, role: extraction,  modbus: {gateway: gw1, unit: 1, profile: tuf2000m}}
      - {id: M2, role: reinjection, modbus: {gateway: gw1, unit: 2, profile: tuf2000m}}"""


def test_every_poll_is_stored_before_and_after_a_restart(influxd: Influxd, influx_db: str, tmp_path: Path) -> None:
    sims = ModbusSims({"gw1": [1, 2]})
    api_port = free_port()
    config = write_run_config(tmp_path / "gshp.yaml", state_dir=tmp_path / "state", influx_url=influxd.url,
                              db=influx_db, api_port=api_port, gateways=sims.ports, meters=METERS,
                              extra="readings: {horizon: 1m}\n")
    collector = Collector(config, api_port, tmp_path / "gshp.log").start()
    try:
        wait_until(lambda: (collector.metric("gshp_readings_accepted_total") or 0) >= 20, timeout=60, interval=0.2)
        wait_until(lambda: collector.metric("gshp_outbox_depth") == 0.0, timeout=30, interval=0.1)
        assert collector.stop() == 0
        before = stored_points(influxd, influx_db)
        collector.start()
        wait_until(lambda: (collector.metric("gshp_readings_accepted_total") or 0) >= 20, timeout=60, interval=0.2)
        wait_until(lambda: collector.metric("gshp_outbox_depth") == 0.0, timeout=30, interval=0.1)
        for name in ("gshp_readings_duplicate_total", "gshp_readings_conflict_total", "gshp_readings_too_old_total"):
            assert (collector.metric(name) or 0.0) == 0.0, name
        accepted = collector.metric("gshp_readings_accepted_total")
    finally:
        code = collector.stop()
        sims.close()
    assert code == 0
    after = stored_points(influxd, influx_db)
    assert before < after and accepted is not None and len(after) >= len(before) + accepted
