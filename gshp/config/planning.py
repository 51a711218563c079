"""The collector's planning and the map's outline file as a config check: what `gshp run` and `gshp poll`
would refuse to start with (an unknown register or payload profile, two meters on one unit of a gateway,
topics that cannot tell their meters apart, an outline file that is not GeoJSON …), found by the same
planners and loader, reported at the setting in the file.

It reads the profile directories and the outline file the config names (`modbus_profiles`,
`mqtt.profiles_dir`, `map.districts`), so it is a
check `gshp check-config` passes to the loader rather than part of every load.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import cache

from collector.modbus import ModbusConfigError, plan_collection
from collector.modbus import ProfileError as RegisterProfileError
from collector.modbus.dtu import ProfileCodec
from collector.mqtt.errors import PlanError, ProfileError
from collector.mqtt.profile import PayloadProfile, load_profiles
from collector.mqtt.topics import plan_routes
from collector.problems import MeterProblem
from gshp.citymap import outline_problems
from gshp.config.schema import Config
from gshp.sources import REGISTER_CODEC, register_profiles

__all__ = ["planning_problems"]

Path_ = tuple[str | int, ...]


@cache
def _shipped_payload_profiles() -> Mapping[str, PayloadProfile]:
    return load_profiles(None)


def planning_problems(config: Config) -> Iterator[tuple[Path_, str]]:
    """Every problem the Modbus and MQTT planners and the outline file's validation find, as (data path,
    message)."""
    def located(problems: list[str], where: Path_) -> Iterator[tuple[Path_, str]]:
        for p in problems:
            if isinstance(p, MeterProblem):
                yield ("sites", p.site, "meters", p.meter, *p.field.split(".")), p.message
            else:
                yield where, p

    yield from outline_problems(config.map)
    try:
        registers = register_profiles(config)
    except RegisterProfileError as err:
        yield from located(str(err).splitlines(), ("modbus_profiles",))
        return  # both planners need the register profiles
    try:
        plan_collection(config.gateways, config.sites, registers)
    except ModbusConfigError as err:
        yield from located(err.problems, ("sites",))
    profiles_dir = config.mqtt.profiles_dir if config.mqtt is not None else None
    try:
        payloads = load_profiles(profiles_dir) if profiles_dir is not None else _shipped_payload_profiles()
    except ProfileError as err:
        yield from located(str(err).splitlines(), ("mqtt", "profiles_dir"))
        return
    try:
        plan_routes(config.sites, payloads, ProfileCodec(registers) if config.modbus_profiles else REGISTER_CODEC)
    except PlanError as err:
        yield from located(err.problems, ("sites",))
