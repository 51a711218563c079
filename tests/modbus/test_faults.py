"""Fault isolation: dead, slow and refusing units; lost connections; overruns; identity changes."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from prometheus_client import REGISTRY

from collector.modbus import (
    PROFILES,
    ErrorClass,
    MeterPoll,
    MeterState,
    ModbusCollector,
    plan_collection,
)
from collector.model import ChangeKind, MeterChange, Reading
from simulators.modbus import Framer, ModbusSimServer, Scenario, SimulatedMeter, image_size
from tests.modbus.conftest import free_port, gateway, meter, run, site

TUF = PROFILES.get("tuf2000m")


def _failures(site_id: str, meter_id: str, error_class: str) -> float:
    v = REGISTRY.get_sample_value("gshp_modbus_failures_total",
                                  {"site": site_id, "meter": meter_id, "error_class": error_class})
    return v or 0.0


async def _scheduled(sims: dict[int, SimulatedMeter], seconds: float, **gw: object) -> tuple[
        dict[str, list[datetime]], ModbusCollector]:
    async with ModbusSimServer(sims, size=image_size(TUF)) as server:
        seen: dict[str, list[datetime]] = {}

        def sink(readings: list[Reading]) -> None:
            for r in readings:
                seen.setdefault(r.meter, []).append(r.ts)

        plan = plan_collection([gateway(server.port, **gw)], [site(sorted(sims), site_id="iso")])
        collector = ModbusCollector(plan, sink)
        scheduler = AsyncIOScheduler(timezone=UTC)
        collector.schedule(scheduler)
        scheduler.start()
        try:
            await asyncio.sleep(seconds)
        finally:
            await collector.aclose(5)
            scheduler.shutdown(wait=False)
    return seen, collector


def test_one_dead_unit_among_eight_does_not_delay_the_others() -> None:
    sims = {u: meter(TUF, scenario="offline" if u == 4 else "balanced") for u in range(1, 9)}
    interval = 0.4
    seen, collector = run(_scheduled(sims, 3.0, interval=f"{int(interval * 1000)}ms", timeout="150ms",
                                     offline_after=2))
    assert "M4" not in seen
    for u in (1, 2, 3, 5, 6, 7, 8):
        ts = seen[f"M{u}"]
        assert len(ts) >= 6, (u, len(ts))
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(ts)]
        assert max(gaps) < interval * 1.5, (u, gaps)
    assert collector.pollers["gw1"].states["iso/M4"] is MeterState.OFFLINE
    assert collector.overruns == 0 and collector.skipped == 0
    # cool-down: far fewer attempts on the dead unit than cycles
    assert sims[4].requests < collector.pollers["gw1"].cycles / 2 + 1
    assert _failures("iso", "M4", "timeout") >= 2


async def _poll_once(sims: dict[int, SimulatedMeter], **gw: object) -> list[MeterPoll]:
    async with ModbusSimServer(sims, size=image_size(TUF)) as server:
        collector = ModbusCollector(plan_collection([gateway(server.port, **gw)], [site(sorted(sims))]),
                                    lambda r: None)
        try:
            return await collector.poll_once()
        finally:
            collector.close()


def test_exception_response_is_reported_with_its_code() -> None:
    polls = run(_poll_once({1: meter(TUF, scenario="exception"), 2: meter(TUF)}))
    assert polls[0].error is not None and polls[0].error.error_class is ErrorClass.EXCEPTION
    assert polls[0].error.exception_code == 2
    assert "illegal data address" in str(polls[0].error)
    assert polls[1].ok


def test_slow_unit_times_out_and_a_merely_slowish_one_answers() -> None:
    polls = run(_poll_once({1: meter(TUF, scenario="slow:400"), 2: meter(TUF, scenario="slow:20")},
                           timeout="150ms"))
    assert polls[0].error is not None and polls[0].error.error_class is ErrorClass.TIMEOUT
    assert polls[1].ok


async def _restart() -> list[list[MeterPoll]]:
    port = free_port()
    sims = {1: meter(TUF), 2: meter(TUF)}
    plan = plan_collection([gateway(port, reconnect_delay="50ms")], [site([1, 2])])
    collector = ModbusCollector(plan, lambda r: None)
    rounds = []
    try:
        async with ModbusSimServer(sims, size=image_size(TUF), port=port):
            rounds.append(await collector.poll_once())
        rounds.append(await collector.poll_once())  # simulator gone
        async with ModbusSimServer(sims, size=image_size(TUF), port=port):
            await asyncio.sleep(0.15)  # past the reconnect backoff
            rounds.append(await collector.poll_once())
    finally:
        collector.close()
    return rounds


def test_reconnects_after_the_simulator_restarts() -> None:
    before, down, after = run(_restart())
    assert all(p.ok for p in before)
    assert all(p.error is not None and p.error.error_class is ErrorClass.CONNECTION for p in down)
    assert "refused" in str(down[0].error) or "lost" in str(down[0].error)
    assert all(p.ok for p in after)


def test_connection_refused_is_named() -> None:
    async def go() -> list[MeterPoll]:
        collector = ModbusCollector(plan_collection([gateway(free_port())], [site([1])]), lambda r: None)
        try:
            return await collector.poll_once()
        finally:
            collector.close()

    polls = run(go())
    assert polls[0].error is not None and "connection refused" in str(polls[0].error)


def test_overrunning_cycle_is_counted_not_stacked() -> None:
    sims = {u: meter(TUF, scenario="slow:100") for u in (1, 2, 3)}  # ≥ 300 ms per cycle
    seen, collector = run(_scheduled(sims, 2.0, interval="250ms", timeout="200ms"))
    poller = collector.pollers["gw1"]
    assert poller.overruns >= 2
    assert collector.skipped >= 1
    # never two cycles at once: a unit is never asked twice within one cycle's span
    assert all(len(v) <= poller.cycles for v in seen.values())


async def _tamper() -> tuple[list[MeterChange], list[MeterPoll]]:
    sim = meter(TUF, t=3600.0)
    events: list[MeterChange] = []
    async with ModbusSimServer({1: sim}, size=image_size(TUF)) as server:
        collector = ModbusCollector(plan_collection([gateway(server.port)], [site([1])]), lambda r: None,
                                    on_event=events.append)
        try:
            first = await collector.poll_once()
            # the keypad changes the multiplier: the meter rescales N, the physical total stays
            sim.model.identity["total_multiplier"] = 5
            second = await collector.poll_once()
            sim.model.serial_number = 99887766  # meter swapped
            collector.pollers["gw1"]._identity_every = 0.0
            third = await collector.poll_once()
        finally:
            collector.close()
    return events, first + second + third


def test_multiplier_change_is_an_event_not_a_volume_jump() -> None:
    events, polls = run(_tamper())
    kinds = [e.kind for e in events]
    assert kinds == [ChangeKind.MULTIPLIER_CHANGED, ChangeKind.SERIAL_CHANGED]
    assert (events[0].old, events[0].new) == (3, 5)
    assert events[1].new == 99887766
    totals = [p.reading.total_m3 for p in polls if p.reading is not None]
    # n = 5 leaves a 100 m³ resolution in the integer part, the fraction carries the rest
    assert totals[1] == pytest.approx(totals[0], abs=0.01)
    assert polls[1].identity["total_multiplier"] == 5


def test_unknown_unit_gets_no_answer() -> None:
    polls = run(_poll_once({1: meter(TUF)}))
    assert polls[0].ok
    sims = {1: meter(TUF)}

    async def go() -> list[MeterPoll]:
        async with ModbusSimServer(sims, size=image_size(TUF), framer=Framer.TCP) as server:
            plan = plan_collection([gateway(server.port)], [site([1, 9])])
            c = ModbusCollector(plan, lambda r: None)
            try:
                return await c.poll_once()
            finally:
                c.close()

    polls = run(go())
    assert polls[1].error is not None and polls[1].error.error_class is ErrorClass.TIMEOUT
    assert Scenario.parse("offline").kind.value == "offline"
