"""The alert store's disk fills while a discharge starts: nothing moves before it is written, and once space
returns every alert transition, incident change and notification is the one a run without the fault has.

An hour balanced, the disk of `state_dir` (a 6 MB tmpfs) filled, an hour at 40 % discharge, space freed,
then the discharge goes on an hour and stops. The service runs in data time (`DataClock`), drains its outbox
into the session's influxd and notifies a webhook on loopback.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from collector.model import Reading, Role
from collector.outbox import OutboxError
from gshp.clock import DataClock
from gshp.config import parse_config
from gshp.devstack import Influxd, free_port
from gshp.service import Service
from tests.faults.test_outages import _tmpfs
from tests.helpers import fill_disk, wait_until
from tests.notify_peers import HttpPeer

START = datetime(2026, 11, 2, 0, 0, tzinfo=UTC)
PHASES = ((0, 60, 0.0), (60, 120, 0.4), (120, 180, 0.4), (180, 360, 0.0))  # minutes, fraction drained
FILL_AT, FREE_AT = 60, 120


@dataclass
class Outcome:
    transitions: list[tuple[str, str, str]]
    incidents: list[dict[str, Any]]
    changes: dict[str, list[str]]
    delivered: list[str]  # idempotency keys the webhook got, in order
    problems_during: list[str] = field(default_factory=list)
    store_errors: int = 0
    health_during: str = "ok"


def _readings(minute: int, drained: float) -> list[Reading]:
    ts = START + timedelta(minutes=minute)
    e, r = 60.0, 60.0 * (1 - drained)
    return [Reading("hehua", "E1", Role.EXTRACTION, ts, e, 1000 + minute),
            Reading("hehua", "R1", Role.REINJECTION, ts, r, 2000 + _reinjected(minute))]


def _reinjected(minute: int) -> float:
    total = 0.0
    for a, b, drained in PHASES:
        total += max(0, min(minute, b) - a) * (1 - drained)
    return total


def _accept(service: Service, readings: list[Reading]) -> None:
    """As a source does: a reading the outbox refuses (disk full) is offered again."""
    deadline = time.monotonic() + 30
    while True:
        try:
            service.accept(readings, "test")
            return
        except OutboxError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _give_the_outbox_room(outbox: Path, mb: float = 0.5) -> None:
    """An outbox that has run a while at load holds free pages and a WAL it cycles through, so it keeps
    taking readings on a full disk while InfluxDB drains it (as in the field); a fresh one has neither.
    One transaction that writes and removes `mb` of rows gives it that room (its content is unchanged)."""
    db = sqlite3.connect(outbox, isolation_level=None, timeout=30)
    try:
        db.execute("BEGIN IMMEDIATE")
        db.execute("CREATE TABLE IF NOT EXISTS room (b BLOB)")
        db.executemany("INSERT INTO room VALUES (?)", [(b"\0" * 4000,) for _ in range(int(mb * 256))])
        db.execute("COMMIT")
        db.execute("DROP TABLE room")
        db.execute("PRAGMA wal_checkpoint(FULL)")  # the free pages are in the database file now
    finally:
        db.close()


def _run(state_dir: Path, influxd: Influxd, db: str, disk: Path | None) -> Outcome:
    hook = HttpPeer().start()
    config = parse_config(f"""
timezone: Asia/Shanghai
state_dir: {state_dir}
influx: {{url: '{influxd.url}', api: v1, bucket: {db}}}
outbox: {{max_batch_age: 50ms}}
api: {{listen: 127.0.0.1:{free_port()}, public_url: "https://board.example.gov.cn"}}
sites:
  - {{id: hehua, name: 宛城区人民医院, district: 宛城区,
      meters: [{{id: E1, role: extraction}}, {{id: R1, role: reinjection}}]}}
notify:
  - {{name: case, type: webhook, url: "{hook.url}/in", group_wait: 0s, group_interval: 0s,
      retry: {{backoff_base: 50ms, backoff_cap: 200ms}}}}
""", env={})
    service = Service(config, clock=DataClock())
    service.drainer.prepare()
    service.drainer.start()
    service.notifier.start()
    filler: Path | None = None
    outcome = Outcome([], [], {}, [])
    try:
        for a, b, drained in PHASES:
            for minute in range(a, b):
                if disk is not None and minute == FILL_AT:
                    _give_the_outbox_room(state_dir / "outbox.sqlite")
                    filler = fill_disk(disk / "filler")
                if filler is not None and minute == FREE_AT:
                    outcome.problems_during = service.engine.problems()
                    outcome.health_during = service.health()["status"]
                    filler.unlink()
                    filler = None
                _accept(service, _readings(minute, drained))
        store = service.store
        outcome.store_errors = service.engine.stats.store_errors
        assert service.engine.problems() == []
        for alert in store.history():
            outcome.transitions += [(alert.rule, t["state"], t["at"]) for t in store.transitions(alert.id)]
        outcome.transitions.sort()
        outcome.incidents = [i.to_dict() for i in store.incidents()]
        outcome.changes = {i["id"]: [c["change"] for c in store.incident_changes(i["id"])] for i in outcome.incidents}
        expected = sum(len(v) for v in outcome.changes.values())
        wait_until(lambda: len(hook.received) >= expected, 60)
        time.sleep(0.5)  # nothing more arrives
        outcome.delivered = [r.headers["x-gshp-idempotency-key"] for r in hook.received]
    finally:
        if filler is not None:
            filler.unlink(missing_ok=True)
        service.notifier.stop()
        service.drainer.stop()
        service.writer.close()
        service.reader.close()
        service.store.close()
        service.seen.close()
        service.deadletters.close()
        service.outbox.close()
        hook.stop()
    return outcome


@pytest.mark.timeout(300)
def test_a_full_disk_under_the_alert_store_loses_no_transition_and_no_notification(
        tmp_path: Path, influxd: Influxd, influx_db: str, figures: dict[str, Any]) -> None:
    reference = _run(tmp_path / "reference", influxd, influx_db + "_ref", None)
    with _tmpfs(tmp_path / "small", "6m") as disk:
        faulty = _run(disk / "state", influxd, influx_db, disk)
    assert reference.store_errors == 0
    # the fault bit: transitions were held, health said so
    assert faulty.store_errors > 0 and faulty.health_during == "degraded"
    assert any("alert store not writable" in p for p in faulty.problems_during)
    # … and once space returned, everything is as without it
    assert faulty.transitions == reference.transitions
    assert [t for t in faulty.transitions if t[0] == "meter_offline"] == []
    assert faulty.incidents == reference.incidents
    assert faulty.changes == reference.changes
    (incident,) = faulty.incidents
    assert incident["kind"] == "discharge" and faulty.changes[incident["id"]][0] == "opened"
    assert incident["started_at"] == (START + timedelta(minutes=FILL_AT)).astimezone(
        datetime.fromisoformat(incident["started_at"]).tzinfo).isoformat(timespec="seconds")
    volume = incident["volume_m3"]  # two hours at 40 % of 60 m³/h went to the drain
    assert volume["low"] <= 48.0 <= volume["high"] and incident["state"] == "resolved"
    # every incident change notified exactly once, in the same order
    assert faulty.delivered == reference.delivered
    assert len(set(faulty.delivered)) == len(faulty.delivered) == sum(len(c) for c in faulty.changes.values())
    figures.update(store_errors=faulty.store_errors, transitions=len(faulty.transitions),
                   incident_changes=sum(len(c) for c in faulty.changes.values()),
                   notifications=len(faulty.delivered), volume_m3=incident["volume_m3"])
