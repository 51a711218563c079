"""Modbus flowmeter simulators: register images encoded from the collector's own profiles."""

from simulators.flow import DayCycleFlow, MeterModel, ScaledFlow, Scenario, ScenarioKind, TrueFlow
from simulators.modbus.meter import ModelClock, SimulatedMeter, image_size
from simulators.modbus.pty import PtyPair
from simulators.modbus.server import Framer, ModbusSimServer
from simulators.modbus.units import parse_units, range_units, site_units

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
