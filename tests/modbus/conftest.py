"""Fixtures for the Modbus suite: real pymodbus servers on free loopback ports, never mocks."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from collector.modbus import Gateway
from collector.model import Site
from simulators.modbus import DayCycleFlow, MeterModel, Scenario, SimulatedMeter

T = TypeVar("T")


@pytest.fixture(autouse=True)
def _quiet_pymodbus() -> None:
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


def run(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    """Run one test coroutine with a hard bound."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def gateway(port: int = 0, transport: str = "tcp", **kw: Any) -> Gateway:
    base: dict[str, Any] = {"id": "gw1", "transport": transport, "timeout": "200ms", "retries": 0,
                            "interval": "1s", "reconnect_delay": "50ms"}
    if transport == "serial":
        base["device"] = kw.pop("device")
    else:
        base.update(host="127.0.0.1", port=port)
    base.update(kw)
    return Gateway.model_validate(base)


def site(units: list[int], gw: str = "gw1", profile: str = "tuf2000m", site_id: str = "s1") -> Site:
    meters = [{"id": f"M{u}", "role": "extraction" if u % 2 else "reinjection",
               "modbus": {"gateway": gw, "unit": u, "profile": profile}} for u in units]
    roles = {m["role"] for m in meters}
    for role in ("extraction", "reinjection"):
        if role not in roles:  # a site needs both; the other side is read over MQTT here
            meters.append({"id": f"Q-{role}", "role": role, "mqtt": {"topic": f"t/{role}"}})
    return Site.model_validate({"id": site_id, "name": "测试站", "district": "d", "meters": meters})


def meter(profile: Any, t: float = 3600.0, scenario: str = "balanced", nominal: float = 40.0,
          serial: int = 20240001) -> SimulatedMeter:
    """A noise-free simulated meter frozen at model time `t` (deterministic values)."""
    model = MeterModel(DayCycleFlow(nominal), scenario=Scenario.parse(scenario), noise_pct=0.0,
                       signal_noise=0.0, serial_number=serial)
    return SimulatedMeter(profile, model, clock=lambda: t)
