"""Build simulated units: a numbered range (`gshp sim modbus`) or a configured site (`gshp sim site`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from collector.modbus.profile import Profile
from collector.modbus.registry import PROFILES, ProfileRegistry
from collector.modbus.settings import Gateway
from collector.model import Role, Site
from simulators.modbus.flow import (
    DayCycleFlow,
    MeterModel,
    ScaledFlow,
    Scenario,
    ScenarioKind,
    SumFlow,
    TrueFlow,
)
from simulators.modbus.meter import SimulatedMeter

__all__ = ["parse_units", "range_units", "site_units"]

_PHYSICS = (ScenarioKind.BALANCED, ScenarioKind.DISCHARGE)


def parse_units(text: str) -> list[int]:
    """``1-16`` or ``1,3,5-8`` → unit ids (1-247)."""
    out: list[int] = []
    for part in text.split(","):
        a, _, b = part.strip().partition("-")
        try:
            lo, hi = int(a), int(b or a)
        except ValueError:
            raise ValueError(f"bad unit list {text!r}: write e.g. 1-16 or 1,3,5-8") from None
        if not 1 <= lo <= hi <= 247:
            raise ValueError(f"bad unit range {part!r}: units are 1-247")
        out.extend(range(lo, hi + 1))
    return sorted(set(out))


def range_units(profile: Profile, units: list[int], scenario: Scenario, clock: Callable[[], float], *,
                nominal_m3h: float = 40.0, per_unit: Mapping[int, Scenario] | None = None,
                seed: int = 1, refresh_s: float = 0.0) -> dict[int, SimulatedMeter]:
    """Units for `gshp sim modbus`: odd units are extraction meters, each even unit the reinjection meter
    of the odd unit before it (carrying its flow × (1 − discharge)). Non-physics scenarios apply to every
    unit unless `per_unit` overrides one."""
    per_unit = per_unit or {}
    out: dict[int, SimulatedMeter] = {}
    flows: dict[int, TrueFlow] = {}
    for u in units:
        sc = per_unit.get(u, scenario)
        if u % 2 == 0 and (u - 1) in flows:
            flow: TrueFlow = ScaledFlow(flows[u - 1], scenario.reinjection_factor)
        else:
            flow = DayCycleFlow(nominal_m3h, phase_s=u * 3600.0)
            flows[u] = flow
        meter_scenario = sc if sc.kind not in _PHYSICS else Scenario()
        model = MeterModel(flow, scenario=meter_scenario, seed=seed * 1000 + u, serial_number=20240000 + u)
        out[u] = SimulatedMeter(profile, model, clock, refresh_s)
    return out


def site_units(site: Site, gateways: Mapping[str, Gateway], scenario: Scenario, clock: Callable[[], float],
               *, nominal_m3h: float = 40.0, profiles: ProfileRegistry = PROFILES,
               seed: int = 1) -> dict[str, dict[int, SimulatedMeter]]:
    """Simulated Modbus meters of one site, by gateway id then unit id.

    Each extraction meter carries `nominal_m3h`; the reinjection meters share the total extraction
    × (1 − discharge) equally; discharge-role meters carry the difference. Fault scenarios (offline,
    exception, slow, frozen, reset, reverse) apply to the reinjection meters — the side an operator
    hiding a discharge tampers with.
    """
    modbus = [m for m in site.meters if m.modbus is not None]
    extraction = [m for m in modbus if m.role is Role.EXTRACTION]
    reinjection = [m for m in modbus if m.role is Role.REINJECTION]
    flows: dict[str, TrueFlow] = {m.id: DayCycleFlow(nominal_m3h, phase_s=i * 600.0)
                                  for i, m in enumerate(extraction)}
    # extraction meters read over MQTT are not simulated here, but their water is still pumped
    n_extraction = sum(1 for m in site.meters if m.role is Role.EXTRACTION)
    total: TrueFlow = SumFlow(tuple(flows.values())) if flows else DayCycleFlow(nominal_m3h)
    if n_extraction > len(flows):
        total = ScaledFlow(total, n_extraction / max(len(flows), 1)) if flows else \
            DayCycleFlow(nominal_m3h * n_extraction)
    n_r = max(sum(1 for m in site.meters if m.role is Role.REINJECTION), 1)
    for m in reinjection:
        flows[m.id] = ScaledFlow(total, scenario.reinjection_factor / n_r)
    n_d = max(sum(1 for m in site.meters if m.role is Role.DISCHARGE), 1)
    for m in modbus:
        if m.role is Role.DISCHARGE:
            flows[m.id] = ScaledFlow(total, (1 - scenario.reinjection_factor) / n_d)
    out: dict[str, dict[int, SimulatedMeter]] = {}
    for i, m in enumerate(modbus):
        assert m.modbus is not None
        if m.modbus.gateway not in gateways:
            raise ValueError(f"meter {site.id}/{m.id} names unknown gateway {m.modbus.gateway!r}")
        fault = scenario if (scenario.kind not in _PHYSICS and m.role is Role.REINJECTION) else Scenario()
        model = MeterModel(flows[m.id], scenario=fault, seed=seed * 1000 + i,
                           serial_number=20240100 + i)
        out.setdefault(m.modbus.gateway, {})[m.modbus.unit] = SimulatedMeter(
            profiles.get(m.modbus.profile), model, clock)
    return out
