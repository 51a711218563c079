"""Modbus collection: gateways, register profiles, request planning and polling.

Lifecycle: `plan_collection(gateways, sites, PROFILES)` validates and plans without touching the
network; `ModbusCollector(plan, on_readings, on_event)` polls, scheduled by APScheduler; `on_event`
receives a `collector.model.MeterChange` when a meter's identity registers change.
"""

from typing import TYPE_CHECKING

from collector.lazy import lazy_attributes
from collector.modbus.collection import CollectionPlan, GatewayPlan, MeterPlan, plan_collection
from collector.modbus.errors import ErrorClass, ModbusConfigError, ProfileError, ReadError
from collector.modbus.health import MeterState
from collector.modbus.profile import Profile
from collector.modbus.registry import PROFILES, ProfileRegistry
from collector.modbus.settings import Gateway, Transport

if TYPE_CHECKING:
    from collector.modbus.poller import GatewayPoller, MeterPoll, RawBlock
    from collector.modbus.service import ModbusCollector

_LAZY = {"GatewayPoller": "poller", "MeterPoll": "poller", "RawBlock": "poller", "ModbusCollector": "service"}

__all__ = [
    "PROFILES",
    "CollectionPlan",
    "ErrorClass",
    "Gateway",
    "GatewayPlan",
    "GatewayPoller",
    "MeterPlan",
    "MeterPoll",
    "MeterState",
    "ModbusCollector",
    "ModbusConfigError",
    "Profile",
    "ProfileError",
    "ProfileRegistry",
    "RawBlock",
    "ReadError",
    "Transport",
    "plan_collection",
]


# the poller and the collector import pymodbus (~2 MB of every process): a process imports them when it polls
# a gateway
__getattr__ = lazy_attributes(__name__, _LAZY)
