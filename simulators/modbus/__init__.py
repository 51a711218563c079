"""Modbus flowmeter simulators: register images encoded from the collector's own profiles."""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from simulators.flow import DayCycleFlow, MeterModel, ScaledFlow, Scenario, ScenarioKind, TrueFlow
from simulators.modbus.meter import ModelClock, SimulatedMeter, image_size
from simulators.modbus.pty import PtyPair
from simulators.modbus.units import parse_units, range_units, site_units

if TYPE_CHECKING:
    from simulators.modbus.server import Framer, ModbusSimServer

_LAZY = {"Framer": "server", "ModbusSimServer": "server"}

__all__ = [
    "DayCycleFlow",
    "Framer",
    "MeterModel",
    "ModbusSimServer",
    "ModelClock",
    "PtyPair",
    "ScaledFlow",
    "Scenario",
    "ScenarioKind",
    "SimulatedMeter",
    "TrueFlow",
    "image_size",
    "parse_units",
    "range_units",
    "site_units",
]


def __getattr__(name: str) -> Any:
    """The server imports pymodbus: the CLI (every command registered in `gshp run` too) imports it when
    a simulator serves."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{module}"), name)
