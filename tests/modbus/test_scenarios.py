"""Simulator scenarios through the real collector into the rule engine: a pymodbus server on loopback
serving an extraction/reinjection pair (`gshp sim modbus` units 1 and 2), the reinjection meter under a
fault scenario, polled by `ModbusCollector` once per data minute on a stepped clock (so the test is
deterministic and fast), each cycle's readings and meter changes handed to the engine as the service
does, the engine evaluated every 5 data minutes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from alerting.model import Alert
from collector.modbus import PROFILES, MeterPoll, ModbusCollector, plan_collection
from collector.model import MeterChange, Reading
from rules.engine import Engine
from rules.settings import RulesSettings
from simulators.modbus import ModbusSimServer, Scenario, image_size, range_units
from tests.modbus.conftest import gateway, run, site

TUF = PROFILES.get("tuf2000m")
T0 = datetime(2026, 5, 5, 2, 0, tzinfo=UTC)
STEP = timedelta(minutes=1)


@dataclass
class Run:
    engine: Engine
    events: list[Alert] = field(default_factory=list)
    readings: list[Reading] = field(default_factory=list)
    changes: list[MeterChange] = field(default_factory=list)
    polls: list[MeterPoll] = field(default_factory=list)

    def first(self, rule: str, state: str = "firing") -> timedelta | None:
        """Data time from the start to the first `state` transition of `rule`."""
        return next((e.at - T0 for e in self.events if e.rule == rule and e.state == state), None)

    def fired(self, kind: str) -> set[str]:
        return {e.rule for e in self.events if e.kind.value == kind and e.state == "firing"}

    def totals(self, meter: str) -> list[float]:
        return [r.total_m3 for r in self.readings if r.meter == meter and r.total_m3 is not None]


async def _collect(fault: str, minutes: int) -> Run:
    t = [0.0]  # model seconds; data time is T0 + t
    units = range_units(TUF, [1, 2], Scenario(), lambda: t[0], per_unit={2: Scenario.parse(fault)})
    engine = Engine([site([1, 2])], RulesSettings(), UTC)
    out = Run(engine)

    def readings(batch: list[Reading]) -> None:
        out.readings.extend(batch)
        engine.ingest(batch)

    def change(c: MeterChange) -> None:
        out.changes.append(c)
        engine.note_changes([c])

    async with ModbusSimServer(units, size=image_size(TUF)) as server:
        collector = ModbusCollector(plan_collection([gateway(server.port)], [site([1, 2])]), readings,
                                    on_event=change, clock=lambda: T0 + timedelta(seconds=t[0]))
        try:
            for i in range(minutes + 1):
                t[0] = i * STEP.total_seconds()
                out.polls += await collector.poll_once()
                if i % 5 == 0:
                    out.events += engine.evaluate(T0 + i * STEP)
        finally:
            collector.close()
    assert all(p.ok for p in out.polls), [p.error for p in out.polls if not p.ok]
    return out


def test_frozen_reinjection_totalizer_is_reported_and_suppresses_the_balance() -> None:
    r = run(_collect("frozen", 90))
    assert len(set(r.totals("M2"))) == 1  # the simulator's totalizer stands still …
    assert all(x.rate_m3h and x.rate_m3h > 30 for x in r.readings if x.meter == "M2")  # … while water flows
    delay = r.first("totalizer_frozen")
    assert delay is not None and delay <= timedelta(minutes=60)
    assert not r.fired("discharge")  # the reinjected volume is unknown, not zero


def test_reset_drops_the_running_totalizer_and_is_reported_as_a_reset() -> None:
    r = run(_collect("reset:30", 75))
    totals = r.totals("M2")
    drops = [(a, b) for a, b in pairwise(totals) if b < a]
    assert len(drops) == 2 and all(a > 9_000 or a < 30 for a, _ in drops)  # at 30 and 60 minutes
    assert all(b < 1.0 for _, b in drops)
    assert r.first("totalizer_reset") == timedelta(minutes=30)
    # the collector re-reads identity when a total drops (at start, then at each reset): no change
    identity_reads = [p for p in r.polls if p.meter == "M2" and any(b.address == 1436 for b in p.raw)]
    assert len(identity_reads) == 3 and not r.changes
    assert not r.fired("discharge")
    assert r.engine.balance("s1", timedelta(minutes=60))["complete"]  # counted on from zero


def test_reverse_flow_is_a_negative_rate_and_a_data_quality_alert() -> None:
    r = run(_collect("reverse", 40))
    assert all(x.rate_m3h is not None and x.rate_m3h < -30 for x in r.readings if x.meter == "M2")
    delay = r.first("reverse_flow")
    assert delay is not None and delay <= timedelta(minutes=30)
    assert not r.fired("discharge")


@pytest.mark.parametrize(("fault", "kind", "field", "old", "new"), [
    ("swap:30", "serial_changed", "serial_number", 20240002, 30240002),
    ("rescale:30", "multiplier_changed", "total_multiplier", 3, 4),
])
def test_a_swapped_or_rescaled_meter_is_a_meter_change_not_a_reset_nor_a_volume_jump(
        fault: str, kind: str, field: str, old: int, new: int) -> None:
    r = run(_collect(fault, 120))
    assert [(c.meter, c.kind.value, c.field, c.old, c.new) for c in r.changes] == [("M2", kind, field, old, new)]
    totals = r.totals("M2")
    jump = max(abs(b - a) for a, b in pairwise(totals))
    assert jump > 9_000  # the meter's total did step at the change (to 0, or ×10) …
    fired = [e for e in r.events if e.rule == "meter_changed" and e.state == "firing"]
    assert len(fired) == 1 and fired[0].at - T0 == timedelta(minutes=30)
    ev = fired[0].evidence
    assert (ev["meter"], ev["field"], ev["old"], ev["new"]) == ("M2", field, old, new)
    assert 0.5 < ev["changes"][0]["bridged_m3"] < 1.0  # one data minute of ~40 m³/h, from the rate
    # … yet it is neither a reset nor volume: every window across it is complete and balanced
    assert "totalizer_reset" not in r.fired("data_quality")
    assert not r.fired("discharge")
    balance = r.engine.balance("s1", timedelta(hours=1))
    assert balance["complete"] and abs(balance["deficit_pct"]) < 1.5
