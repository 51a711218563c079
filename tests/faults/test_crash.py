"""Crash safety: `gshp run` under a steady Modbus + MQTT load, killed with SIGKILL at 20 seeded random
moments and restarted each time, ends with InfluxDB holding exactly what the sources produced and acked.

How we know what was committed: the outbox file is created before the first start with an audit table
filled by a trigger inside the same SQLite transaction as every outbox commit. A commit that survives
the kill is in the audit; one that does not is in neither. So:

- MQTT: the stored set equals the set the broker confirmed to the DTUs (QoS 1), exactly;
- Modbus: the stored set equals the set of committed polls, exactly (polls the dead process did not take
  are simply absent), and every committed total is one the simulated meter served (non-decreasing);
- nothing else is stored: no point InfluxDB holds was never committed.
"""

from __future__ import annotations

import itertools
import random
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gshp.devstack import Influxd, Mosquitto, free_port
from tests.faults.support import ModbusSims, SteadyDtus, audited, install_audit, write_run_config
from tests.helpers import wait_until
from tests.mqtt_support import Collector, flow_count, stored_points

KILLS = 20
SEED = 9

METERS = """\
      - {id: M1, role: extraction,  modbus: {gateway: gw1, unit: 1, profile: tuf2000m}}
      - {id: M2, role: reinjection, modbus: {gateway: gw1, unit: 2, profile: tuf2000m}}
      - {id: Q1, role: extraction,  mqtt: {topic: dtu/Q1/up, profile: dtu-json}}
      - {id: Q2, role: reinjection, mqtt: {topic: dtu/Q2/up, profile: dtu-json}}"""


def test_twenty_sigkills_under_modbus_and_mqtt_load_lose_and_invent_nothing(
        influxd: Influxd, mosquitto: Mosquitto, influx_db: str, tmp_path: Path, figures: dict[str, Any]) -> None:
    rng = random.Random(SEED)
    state = tmp_path / "state"
    install_audit(state / "outbox.sqlite")
    sims = ModbusSims({"gw1": [1, 2]})
    api_port = free_port()
    config = write_run_config(tmp_path / "gshp.yaml", state_dir=state, influx_url=influxd.url, db=influx_db,
                              api_port=api_port, mqtt_port=mosquitto.port, gateways=sims.ports, meters=METERS)
    collector = Collector(config, api_port, tmp_path / "gshp.log").start()
    dtus: SteadyDtus | None = None
    moments = []
    started = time.monotonic()
    try:
        collector.wait_subscribed()  # the persistent session exists: from here the broker keeps messages
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
        dtus = SteadyDtus(mosquitto.port, "faults-crash-dtus", ["Q1", "Q2"], start, per_s=300)
        for _ in range(KILLS):
            moment = rng.uniform(1.0, 6.0)  # from start-up (~3-4 s: imports, outbox recovery) to steady work
            moments.append(round(moment, 2))
            time.sleep(moment)
            collector.kill()
            time.sleep(rng.uniform(0.0, 0.3))
            collector.start()
        collector.wait_subscribed()
        published = dtus.finish()
        dtus = None
        wait_until(lambda: flow_count(influxd, influx_db) >= len(set(published)), timeout=90, interval=0.2)
        time.sleep(1.0)
    finally:
        if dtus is not None:
            dtus.finish()
        code = collector.stop()
        sims.close()
    elapsed = time.monotonic() - started
    assert code == 0, (tmp_path / "gshp.log").read_text()[-3000:]

    stored = stored_points(influxd, influx_db)
    committed = audited(state / "outbox.sqlite")
    committed_set = set(committed)
    mqtt_pub = set(published)
    modbus_committed = {p for p in committed_set if p[0].startswith("M")}

    # MQTT: exactly the confirmed publishes; Modbus: exactly the committed polls; nothing else
    assert {p for p in stored if p[0].startswith("Q")} == mqtt_pub
    assert {p for p in stored if p[0].startswith("M")} == modbus_committed
    assert stored == committed_set
    # one point per (series, ts): no two committed values for the same meter and time
    assert len({(m, ts) for m, ts, _ in stored}) == len(stored)
    # every committed Modbus total is a served one: per meter, non-decreasing in time
    by_meter: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for m, ts, total in modbus_committed:
        by_meter[m].append((ts, total))
    for series in by_meter.values():
        totals = [t for _, t in sorted(series)]
        assert all(b >= a for a, b in itertools.pairwise(totals))
    log = (tmp_path / "gshp.log").read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
    assert "rejected a payload" not in log
    figures.update(kills=KILLS, kill_moments_s=moments, mqtt_published=len(mqtt_pub),
                   modbus_committed=len(modbus_committed), commits_incl_repeats=len(committed),
                   stored=len(stored), lost=len(mqtt_pub - stored) + len(modbus_committed - stored),
                   invented=len(stored - committed_set), wall_s=round(elapsed, 1),
                   starts_that_reached_running=log.count("gshp running"))
