"""Validate and plan Modbus collection from configuration objects (no I/O, every problem at once)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from collector.modbus.errors import ModbusConfigError, ProfileError
from collector.modbus.plan import ReadRequest, plan_reads
from collector.modbus.profile import Profile
from collector.modbus.registry import PROFILES, ProfileRegistry
from collector.modbus.settings import Gateway, Transport
from collector.model import Meter, Site
from collector.problems import KNOWN_ZH, MeterProblem, ZhEn

__all__ = ["CollectionPlan", "GatewayPlan", "MeterPlan", "plan_collection"]


@dataclass(frozen=True, slots=True)
class MeterPlan:
    site: Site
    meter: Meter
    unit: int
    profile: Profile
    reads: tuple[ReadRequest, ...]           # every poll
    identity_reads: tuple[ReadRequest, ...]  # at start and every identity_interval

    @property
    def key(self) -> str:
        return f"{self.site.id}/{self.meter.id}"


@dataclass(frozen=True, slots=True)
class GatewayPlan:
    gateway: Gateway
    meters: tuple[MeterPlan, ...]


@dataclass(frozen=True, slots=True)
class CollectionPlan:
    gateways: tuple[GatewayPlan, ...]

    @property
    def meter_count(self) -> int:
        return sum(len(g.meters) for g in self.gateways)


def _problem(at: tuple[int, int], site: Site, meter: Meter, field: str, message: str) -> MeterProblem:
    return MeterProblem(f"sites.{site.id}.meters.{meter.id}.{field}: {message}", site=at[0], meter=at[1],
                        field=field, message=message)


def plan_collection(gateways: Iterable[Gateway], sites: Iterable[Site],
                    profiles: ProfileRegistry = PROFILES, only_site: str | None = None) -> CollectionPlan:
    """Plan reads for every Modbus meter (of `only_site` if given); raise `ModbusConfigError` listing all
    problems. Gateways without meters are left out."""
    by_id = {g.id: g for g in gateways}
    problems: list[str] = []
    per_gateway: dict[str, list[MeterPlan]] = {g: [] for g in by_id}
    units: dict[tuple[str, int], str] = {}
    sites = list(sites)
    if only_site is not None and only_site not in {s.id for s in sites}:
        problems.append(f"site {only_site!r} is not in the configuration "
                        f"(known: {', '.join(s.id for s in sites) or 'none'})")
    for i, site in enumerate(sites):
        if only_site is not None and site.id != only_site:
            continue
        for j, meter in enumerate(site.meters):
            src = meter.modbus
            if src is None:
                continue
            gw = by_id.get(src.gateway)
            if gw is None:  # reported, and the meter's other settings checked all the same
                known = sorted(by_id)
                problems.append(_problem((i, j), site, meter, "modbus.gateway", ZhEn(
                    f"没有网关 {src.gateway!r}{KNOWN_ZH}{'、'.join(known) or '无'}）",
                    f"no gateway {src.gateway!r} (known: {', '.join(known) or 'none'})")))
            else:
                if src.unit == 0 and gw.transport is not Transport.TCP:
                    problems.append(_problem((i, j), site, meter, "modbus.unit",
                                             ZhEn("0 是串行线路上的广播地址；请用 1-247",
                                                  "0 is the broadcast address on a serial line; use 1-247")))
                other = units.get((gw.id, src.unit))
                if other is not None:
                    problems.append(_problem((i, j), site, meter, "modbus.unit",
                                             ZhEn(f"网关 {gw.id} 上的从站地址 {src.unit} 已属于 {other}",
                                                  f"unit {src.unit} on gateway {gw.id} is also {other}")))
                units[(gw.id, src.unit)] = f"{site.id}/{meter.id}"
            try:
                profile = profiles.get(src.profile)
            except ProfileError as exc:
                said: str = exc.args[0] if exc.args else str(exc)  # in both languages as raised
                problems.append(_problem((i, j), site, meter, "modbus.profile", said))
                continue
            if gw is None:
                continue
            per_gateway[gw.id].append(MeterPlan(
                site=site, meter=meter, unit=src.unit, profile=profile,
                reads=plan_reads(profile.poll_fields, gw.max_fill),
                identity_reads=plan_reads(profile.identity_fields, gw.max_fill)))
    if problems:
        raise ModbusConfigError(problems)
    return CollectionPlan(tuple(GatewayPlan(by_id[g], tuple(m)) for g, m in per_gateway.items() if m))
