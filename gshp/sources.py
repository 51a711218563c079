"""The sources `gshp run` starts, by explicit registration: each factory looks at the config and returns
a ready `Source` (validated and planned, not yet connected) or None when the config has nothing for it.

Factories validate everything before any network I/O and raise `SourceConfigError` with every problem.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from collector.deadletter import DeadLetterStore
from collector.fanout import plan_fanout_routes
from collector.hj212 import Hj212Protocol, plan_hj212
from collector.modbus import PROFILES, ModbusConfigError, plan_collection
from collector.modbus import ProfileError as RegisterProfileError
from collector.modbus.dtu import ProfileCodec
from collector.modbus.registry import ProfileRegistry
from collector.modbus.source import ModbusSource
from collector.mqtt.decode import DecodeContext
from collector.mqtt.errors import PlanError, ProfileError
from collector.mqtt.ingester import MqttSource
from collector.mqtt.profile import load_profiles
from collector.mqtt.registers import RegisterCodec
from collector.mqtt.topics import plan_routes
from collector.problems import ZhEn
from collector.szy206 import Szy206Protocol, plan_szy206
from collector.telemetry import TelemetryServer
from gshp.clock import Clock, SystemClock
from gshp.config import Config
from gshp.service import Source

__all__ = ["REGISTER_CODEC", "SOURCES", "SourceConfigError", "build_sources", "deadletter_path", "fanout_source",
           "register_source"]

SourceFactory = Callable[[Config, Clock], Source | None]

SOURCES: dict[str, SourceFactory] = {}

REGISTER_CODEC: RegisterCodec = ProfileCodec(PROFILES)
"""Decodes raw register blocks from transparent DTUs with the packaged Modbus register profiles."""


def register_profiles(config: Config) -> ProfileRegistry:
    """The packaged register profiles plus the config's `modbus_profiles` directory, if any."""
    if config.modbus_profiles is None:
        return PROFILES
    profiles = PROFILES.copy()
    profiles.load_dir(config.modbus_profiles)
    return profiles


class SourceConfigError(Exception):
    """A source cannot run as configured; `problems` lists every reason."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def register_source(name: str) -> Callable[[SourceFactory], SourceFactory]:
    def deco(factory: SourceFactory) -> SourceFactory:
        SOURCES[name] = factory
        return factory
    return deco


def build_sources(config: Config, clock: Clock | None = None) -> list[Source]:
    """Every registered source the config asks for; all problems of all sources at once. `clock` stamps
    Modbus readings and judges MQTT device times (the service's clock: real, or accelerated in the demo)."""
    clock = clock or SystemClock()
    out: list[Source] = []
    problems: list[str] = []
    for factory in SOURCES.values():
        try:
            source = factory(config, clock)
        except SourceConfigError as err:
            problems += err.problems
            continue
        if source is not None:
            out.append(source)
    if problems:
        raise SourceConfigError(problems)
    return out


def deadletter_path(config: Config) -> Path:
    return config.state_dir / "deadletter.sqlite"


@register_source("mqtt")
def mqtt_source(config: Config, clock: Clock) -> Source | None:
    settings = config.mqtt
    if settings is None or not any(m.mqtt for s in config.sites for m in s.meters):
        return None
    try:
        codec = ProfileCodec(register_profiles(config)) if config.modbus_profiles else REGISTER_CODEC
        profiles = load_profiles(settings.profiles_dir)
        router = plan_routes(config.sites, profiles, codec)
    except ProfileError as err:
        raise SourceConfigError([f"mqtt: {line}" for line in str(err).splitlines()]) from None
    except PlanError as err:
        raise SourceConfigError([f"mqtt: {p}" for p in err.problems]) from None
    except RegisterProfileError as err:
        raise SourceConfigError([f"modbus_profiles: {err}"]) from None
    context = DecodeContext(tz=config.tz, max_clock_skew=settings.max_clock_skew, max_age=settings.max_age,
                            max_payload=settings.max_payload, codec=codec)
    store = DeadLetterStore(deadletter_path(config), max_rows=settings.deadletter_max_rows,
                            max_bytes=settings.deadletter_max_bytes)
    return MqttSource(settings, router, context, store, clock=lambda: clock.now().timestamp())


@register_source("modbus")
def modbus_source(config: Config, clock: Clock) -> Source | None:
    if not any(m.modbus for s in config.sites for m in s.meters):
        return None
    try:
        plan = plan_collection(config.gateways, config.sites, register_profiles(config))
    except RegisterProfileError as err:
        raise SourceConfigError([f"modbus_profiles: {err}"]) from None
    except ModbusConfigError as err:
        raise SourceConfigError([f"modbus: {p}" for p in err.problems]) from None
    # meter changes (identity registers) go to the service's change sink: `Service` sets `on_change`
    return ModbusSource(plan, clock=clock.now)


@register_source("hj212")
def hj212_source(config: Config, clock: Clock) -> Source | None:
    """The HJ 212 listener, when the config has one (stations may upload before their meters are added:
    their packets are answered and dead-lettered as unknown until then)."""
    settings = config.hj212
    if settings is None:
        return None
    plan = plan_hj212(settings.passwords(), config.sites, settings.minute_interval, settings.volume_data)
    protocol = Hj212Protocol(plan, config.tz, settings.max_clock_skew, settings.max_age)
    store = DeadLetterStore(deadletter_path(config), max_rows=settings.deadletter_max_rows)
    return TelemetryServer(protocol, settings, store, clock=lambda: clock.now().timestamp())


@register_source("szy206")
def szy206_source(config: Config, clock: Clock) -> Source | None:
    """The SZY 206 listener, when the config has one."""
    settings = config.szy206
    if settings is None:
        return None
    protocol = Szy206Protocol(plan_szy206(config.sites, settings.flow_unit), config.tz, settings.max_clock_skew,
                              settings.max_age)
    store = DeadLetterStore(deadletter_path(config), max_rows=settings.deadletter_max_rows)
    return TelemetryServer(protocol, settings, store, clock=lambda: clock.now().timestamp())


def fanout_source(config: Config, client_id: str) -> Source:
    """A rule worker's only source: its shard's readings as the collectors publish them.

    The MQTT source (persistent session, QoS 1, batches, manual ack) with one route per site of the shard,
    ``{fanout.topic_prefix}/{shard}/{site}/{meter}``, decoded by the `gshp-reading` profile; a message is
    acknowledged once its readings went into the rule engine. The collector already judged the device
    time (skew, age), so old readings — a backlog after an outage — are taken as they come.
    """
    if config.mqtt is None:
        raise SourceConfigError(["mqtt: " + ZhEn("规则进程需要 `mqtt:`（消息服务器）一节",
                                                 "a rules process needs the `mqtt:` broker section")])
    settings = config.mqtt.model_copy(update={"client_id": client_id, "shared_group": None})
    try:
        router = plan_fanout_routes(config.sites, config.fanout.topic_prefix, config.shard.index)
    except PlanError as err:
        raise SourceConfigError([f"fanout: {p}" for p in err.problems]) from None
    context = DecodeContext(tz=config.tz, max_clock_skew=settings.max_clock_skew + timedelta(hours=1),
                            max_age=timedelta(days=3650), max_payload=settings.max_payload)
    store = DeadLetterStore(deadletter_path(config), max_rows=settings.deadletter_max_rows,
                            max_bytes=settings.deadletter_max_bytes)
    source = MqttSource(settings, router, context, store)
    source.name = "fanout"
    return source
