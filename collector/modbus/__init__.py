"""Modbus collection: gateways, register profiles, request planning and polling.

Lifecycle: `plan_collection(gateways, sites, PROFILES)` validates and plans without touching the
network; `ModbusCollector(plan, on_readings, on_event)` polls, scheduled by APScheduler.
"""

from collector.modbus.collection import CollectionPlan, GatewayPlan, MeterPlan, plan_collection
from collector.modbus.errors import ErrorClass, ModbusConfigError, ProfileError, ReadError
from collector.modbus.events import EventKind, MeterEvent
from collector.modbus.health import MeterState
from collector.modbus.poller import GatewayPoller, MeterPoll, RawBlock
from collector.modbus.profile import Profile
from collector.modbus.registry import PROFILES, ProfileRegistry
from collector.modbus.service import ModbusCollector
from collector.modbus.settings import Gateway, Transport

__all__ = [
    "PROFILES",
    "CollectionPlan",
    "ErrorClass",
    "EventKind",
    "Gateway",
    "GatewayPlan",
    "GatewayPoller",
    "MeterEvent",
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
