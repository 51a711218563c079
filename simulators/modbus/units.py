"""Build simulated units: a numbered range (`gshp sim modbus`) or a configured site (`gshp sim site`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, tzinfo

from collector.modbus.profile import Profile
from collector.modbus.registry import PROFILES, ProfileRegistry
from collector.modbus.settings import Gateway
from collector.model import Site
from simulators.city import site_physics
from simulators.flow import DayCycleFlow, MeterModel, Scenario, TrueFlow
from simulators.modbus.meter import SimulatedMeter

__all__ = ["parse_units", "range_units", "site_units"]


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
                seed: int = 1, refresh_s: float = 0.0, start_hour: float = 0.0) -> dict[int, SimulatedMeter]:
    """Units for `gshp sim modbus`: odd units are extraction meters, each even unit the reinjection meter
    of the odd unit before it (carrying what the scenario keeps of its flow). Meter-fault scenarios apply
    to every unit unless `per_unit` overrides one. `start_hour` is the local hour at model time 0 (for
    night-discharge)."""
    per_unit = per_unit or {}
    out: dict[int, SimulatedMeter] = {}
    flows: dict[int, TrueFlow] = {}
    for u in units:
        sc = per_unit.get(u, scenario)
        if u % 2 == 0 and (u - 1) in flows:
            flow = scenario.kept(flows[u - 1], start_hour)
        else:
            flow = DayCycleFlow(nominal_m3h, phase_s=u * 3600.0)
            flows[u] = flow
        meter_scenario = Scenario() if sc.water else sc
        model = MeterModel(flow, scenario=meter_scenario, seed=seed * 1000 + u, serial_number=20240000 + u)
        out[u] = SimulatedMeter(profile, model, clock, refresh_s)
    return out


def site_units(site: Site, gateways: Mapping[str, Gateway], scenario: Scenario, start: datetime, tz: tzinfo,
               clock: Callable[[], float], *, nominal_m3h: float = 40.0, profiles: ProfileRegistry = PROFILES,
               seed: int = 1) -> dict[str, dict[int, SimulatedMeter]]:
    """Simulated Modbus meters of one site, by gateway id then unit id, on model time `clock()` =
    seconds since `start`.

    The site's physics is `simulators.city.site_physics` — the one `gshp sim mqtt` publishes from: each
    extraction meter carries `nominal_m3h` on the local day's load cycle (read over Modbus or not, its
    water is pumped), the reinjection meters share what the scenario keeps of it, discharge-role meters
    the rest; meter faults (offline, exception, slow, frozen, reset, reverse, swap, rescale) apply to the
    reinjection meters.
    """
    physics = site_physics([site], scenario, start, tz, flow_m3h=nominal_m3h, seed=seed)
    out: dict[str, dict[int, SimulatedMeter]] = {}
    for (_, meter_id), model in physics.modbus_meters().items():
        src = site.meter(meter_id).modbus
        assert src is not None
        if src.gateway not in gateways:
            raise ValueError(f"meter {site.id}/{meter_id} names unknown gateway {src.gateway!r}")
        out.setdefault(src.gateway, {})[src.unit] = SimulatedMeter(profiles.get(src.profile), model, clock)
    return out
