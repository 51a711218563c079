"""A reading dated after the clock cannot hold back the genuine readings that follow it: not in the rule
engine's windows, not on the live board."""

from __future__ import annotations

from datetime import timedelta

from collector.model import Reading, Role, Site
from gshp.live import LiveState
from rules.engine import Engine
from tests.unit.conftest import T0, flow


def test_the_engine_takes_the_readings_after_one_dated_ahead_of_the_clock(engine: Engine) -> None:
    now = T0 + timedelta(minutes=30)
    engine.ingest([r for r in flow(30) if r.meter == "R1"])
    engine.ingest([r for r in flow(30) if r.meter == "E1"], now=now)
    fake = Reading("hehua", "E1", Role.EXTRACTION, now + timedelta(seconds=590), 0.0, 1060.0)
    engine.ingest([fake], now=now)
    genuine = [r for r in flow(40, start=now + timedelta(minutes=1), totals={"E1": 1062.0, "R1": 2062.0})]
    for r in genuine:  # each as it arrives, the clock a moment later
        engine.ingest([r], now=r.ts + timedelta(seconds=1))
    assert engine.stats.late == 0, "no genuine reading was taken for older than the fake"
    b = engine.balance("hehua", timedelta(minutes=30))
    assert b is not None and b["complete"] and b["extracted_m3"] == 60.0 and b["reinjected_m3"] == 60.0


def test_without_the_clock_the_device_time_decides_as_in_replay(engine: Engine) -> None:
    engine.ingest([Reading("hehua", "E1", Role.EXTRACTION, T0 + timedelta(minutes=10), 120.0, 1020.0)])
    engine.ingest([Reading("hehua", "E1", Role.EXTRACTION, T0 + timedelta(minutes=1), 120.0, 1002.0)])
    assert engine.stats.late == 1


def test_the_board_follows_genuine_readings_after_one_dated_ahead_of_the_clock(site: Site) -> None:
    clock = [T0]
    live = LiveState([site], now=lambda: clock[0])
    live.on_readings([Reading("hehua", "E1", Role.EXTRACTION, T0, 120.0, 1000.0),
                      Reading("hehua", "R1", Role.REINJECTION, T0, 120.0, 2000.0)])
    clock[0] = T0 + timedelta(seconds=1)
    live.on_readings([Reading("hehua", "E1", Role.EXTRACTION, T0 + timedelta(seconds=590), 0.0, 1000.0)])
    assert live.history("hehua")[-1].extraction_m3h == 0.0, "shown, as taken now"
    for i in range(1, 4):
        clock[0] = T0 + timedelta(seconds=10 * i)
        live.on_readings([Reading("hehua", "E1", Role.EXTRACTION, clock[0], 118.0 + i, 1000.0 + i),
                          Reading("hehua", "R1", Role.REINJECTION, clock[0], 118.0 + i, 2000.0 + i)])
        assert live.latest("hehua")["E1"].rate_m3h == 118.0 + i
        point = live.history("hehua")[-1]
        assert (point.ts, point.extraction_m3h) == (clock[0], 118.0 + i), "the live flow is not frozen"
    live.on_readings([Reading("hehua", "E1", Role.EXTRACTION, T0 + timedelta(seconds=5), 1.0, 999.0)])
    assert live.latest("hehua")["E1"].rate_m3h == 121.0, "a late reading still does not replace a newer one"
