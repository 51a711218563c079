"""Regression cases as data: tests/cases/modbus/<case>/ holds config.yaml (with ${PORT}), registers.yaml
(a register dump per unit, hex words by "function:start") and expected.yaml (the readings `gshp poll` must
produce). A real pymodbus server serves the dump; the collector reads it over TCP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.modbus import MeterPoll, ModbusCollector, plan_collection
from gshp.config import load_config
from simulators.modbus import ModbusSimServer
from tests.modbus.conftest import free_port, run

CASES = sorted(p for p in (Path(__file__).parent.parent / "cases" / "modbus").iterdir() if p.is_dir())


class DumpUnit:
    """Answers from a fixed register dump; registers not in the dump read 0."""

    def __init__(self, dump: dict[str, str]) -> None:
        self.image: dict[tuple[int, int], int] = {}
        for key, words in dump.items():
            function, _, start = key.partition(":")
            code = 3 if function == "holding" else 4
            for i, w in enumerate(words.split()):
                self.image[(code, int(start) + i)] = int(w, 16)

    async def __call__(self, function_code: int, address: int, count: int) -> list[int]:
        return [self.image.get((function_code, a), 0) for a in range(address, address + count)]


async def _poll(case: Path) -> list[MeterPoll]:
    port = free_port()
    config = load_config(case / "config.yaml", env={"PORT": str(port)})
    dumps = yaml.safe_load((case / "registers.yaml").read_text())
    units = {int(u): DumpUnit(d) for u, d in dumps.items()}
    size = max(a for u in units.values() for _, a in u.image) + 1
    async with ModbusSimServer(units, size=size, port=port):
        collector = ModbusCollector(plan_collection(config.gateways, config.sites), lambda r: None)
        try:
            return await collector.poll_once()
        finally:
            collector.close()


def _same(got: Any, want: Any) -> bool:
    if want is None or isinstance(want, str):
        return bool(got == want)
    return bool(got == pytest.approx(want, rel=1e-6))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_register_dump_decodes_to_expected_readings(case: Path) -> None:
    expected = yaml.safe_load((case / "expected.yaml").read_text())
    polls = {p.meter: p for p in run(_poll(case))}
    for want in expected:
        poll = polls[want["meter"]]
        if "error_class" in want:
            assert poll.error is not None and poll.error.error_class.value == want["error_class"]
            continue
        assert poll.error is None, poll.error
        got = poll.as_dict()
        for key in ("rate_m3h", "total_m3", "signal_pct", "error_code"):
            if key in want:
                assert _same(got[key], want[key]), (key, got[key], want[key])
        for key, value in want.get("values", {}).items():
            assert _same(poll.values[key], value), (key, poll.values[key], value)
        for key, value in want.get("identity", {}).items():
            assert _same(poll.identity[key], value), (key, poll.identity[key], value)
