"""Collector ↔ simulator over Modbus TCP, RTU framed over TCP, and serial RTU on a pty pair."""

from __future__ import annotations

import struct

import pytest

from collector.modbus import PROFILES, ModbusCollector, plan_collection
from collector.model import Reading
from simulators.modbus import Framer, ModbusSimServer, PtyPair, SimulatedMeter, image_size
from tests.modbus.conftest import gateway, meter, run, site

TUF = PROFILES.get("tuf2000m")


def f32(x: float) -> float:
    return float(struct.unpack(">f", struct.pack(">f", x))[0])


def _check(reading: Reading, sim: SimulatedMeter) -> None:
    t = sim.clock()
    assert reading.rate_m3h == pytest.approx(f32(sim.model.flow.rate(t)), rel=1e-7)
    assert reading.total_m3 == pytest.approx(sim.model.positive_m3, abs=1e-6)
    assert reading.signal_pct == 80
    assert reading.error_code == 0
    assert reading.ts.utcoffset() is not None and reading.ts.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


async def _poll_all(framer: Framer, transport: str) -> None:
    sims = {u: meter(TUF, t=600.0 * u, serial=20240000 + u) for u in (1, 2, 3)}
    pty = PtyPair() if framer is Framer.RTU else None
    if pty is not None:
        pty.start()
    server = ModbusSimServer(sims, size=image_size(TUF), framer=framer,
                             device=pty.server_path if pty else None)
    await server.start()
    try:
        gw = gateway(server.port, transport, **({"device": pty.client_path} if pty else {}))
        got: list[Reading] = []
        collector = ModbusCollector(plan_collection([gw], [site([1, 2, 3])]), got.extend)
        polls = await collector.poll_once()
        collector.close()
    finally:
        await server.stop()
        if pty is not None:
            pty.close()
    assert [p.error for p in polls] == [None, None, None]
    for p in polls:
        assert p.reading is not None
        _check(p.reading, sims[p.unit])
        assert p.identity["serial_number"] == 20240000 + p.unit
        assert [b.address for b in p.raw] == [1436, 1528, 0]
    assert len(got) == 3


@pytest.mark.parametrize(("framer", "transport"), [(Framer.TCP, "tcp"), (Framer.RTU_OVER_TCP, "rtu-over-tcp"),
                                                   (Framer.RTU, "serial")])
def test_collector_reads_what_the_simulator_holds(framer: Framer, transport: str) -> None:
    run(_poll_all(framer, transport))


def test_simulated_site_reinjection_follows_extraction_with_discharge() -> None:
    from datetime import UTC, datetime

    from simulators.modbus import Scenario, site_units

    s = site([1, 2])
    clock_t = [0.0]
    units = site_units(s, {"gw1": gateway(1)}, Scenario.parse("discharge:20"), datetime(2026, 5, 5, tzinfo=UTC),
                       UTC, lambda: clock_t[0])
    e, r = units["gw1"][1], units["gw1"][2]
    e0, r0 = e.model.sample(0)["total_m3"], r.model.sample(0)["total_m3"]
    clock_t[0] = 86_400.0
    de = e.model.sample(clock_t[0])["total_m3"] - e0
    dr = r.model.sample(clock_t[0])["total_m3"] - r0
    # a whole day of the load cycle is the nominal flow; each meter reads within half its 1 % accuracy
    assert de == pytest.approx(40 * 24, rel=0.005)
    assert dr / de == pytest.approx(0.8, rel=0.01)
