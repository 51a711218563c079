"""Modbus flowmeter simulators: register images encoded from the collector's own profiles."""

from typing import TYPE_CHECKING

from collector.lazy import lazy_attributes
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


# the server imports pymodbus: the CLI (every command registered in `gshp run` too) imports it when a
# simulator serves
__getattr__ = lazy_attributes(__name__, _LAZY)
