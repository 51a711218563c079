"""A simulated city on one clock: the sites, their physics, and the meters the collector reads.

Each site has one pump: its flow follows the local day (more by day, less by night). Extraction meters
share it; reinjection meters share it minus what the operator drains away (a constant fraction, or only
at night). Every meter is a `MeterModel` of that flow (with its own small bias), so the Modbus
simulators (registers encoded from the same profile the collector decodes), the MQTT DTU publisher and
the in-process feed all show the same water. A meter can go silent after some hours — the cheapest way
to hide a discharge — and a site can have a meter fault (`Scenario`: frozen, reset, reverse, swap,
rescale, offline …) on its reinjection meters.

`site_physics(sites, scenario, …)` is the same physics for configured sites: `gshp sim site` serves its
Modbus meters and `gshp sim mqtt` publishes its MQTT meters, so the two show one site's water.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

from collector.model import Reading, Role, Site
from simulators.flow import DayCycleFlow, MeterModel, ScaledFlow, Scenario, ScenarioKind, TrueFlow, local_hour

__all__ = ["CITY", "DIVISIONS", "LOCATIONS", "CityPhysics", "MeterPlan", "SitePlan", "city_config", "meter_plan",
           "site_physics"]


@dataclass(frozen=True, slots=True)
class MeterPlan:
    id: str
    role: Role
    source: str  # "modbus", "mqtt", "hj212" or "szy206" (anything else: simulated, sent by none)
    bias: float = 0.0  # reads this much high (0.003 = +0.3 %)
    silent_after_h: float | None = None  # stops reporting after this many hours


@dataclass(frozen=True, slots=True)
class SitePlan:
    id: str
    name: str
    district: str
    meters: tuple[MeterPlan, ...]
    nominal_m3h: float = 60.0  # the site's pump, shared by its extraction meters
    drain: float = 0.0  # fraction of the water that does not reach reinjection
    night_only: bool = False
    fault: Scenario = field(default_factory=Scenario)  # of the reinjection meters (frozen, reset, offline …)

    @property
    def honest(self) -> bool:
        return (self.drain == 0 and self.fault.kind is ScenarioKind.BALANCED
                and all(m.silent_after_h is None for m in self.meters))

    @property
    def water(self) -> Scenario:
        """The site's water as a scenario: balanced, discharge or night-discharge."""
        if not self.drain:
            return Scenario()
        kind = ScenarioKind.NIGHT_DISCHARGE if self.night_only else ScenarioKind.DISCHARGE
        return Scenario(kind, self.drain * 100.0)

    @classmethod
    def of(cls, site: Site, scenario: Scenario, flow_m3h: float = 40.0, seed: int = 1) -> SitePlan:
        """A configured site under a scenario: `flow_m3h` per extraction meter; each meter with a fixed
        bias within its accuracy (the same for a given seed, site and meter, whichever simulator asks);
        a fault scenario applies to the reinjection meters — the side an operator hiding a discharge
        tampers with."""
        meters = tuple(MeterPlan(m.id, m.role, m.source or "", _bias(seed, site.id, m.id, m.accuracy_pct))
                       for m in site.meters)
        n_extraction = max(1, sum(1 for m in site.meters if m.role is Role.EXTRACTION))
        return cls(site.id, site.name, site.district, meters, flow_m3h * n_extraction, drain=scenario.drain,
                   night_only=scenario.kind is ScenarioKind.NIGHT_DISCHARGE,
                   fault=Scenario() if scenario.water else scenario)


def _bias(seed: int, site: str, meter: str, accuracy_pct: float) -> float:
    """A meter's systematic error: σ a quarter of its accuracy, never more than half of it."""
    limit = accuracy_pct / 100.0 / 2.0
    return max(-limit, min(limit, random.Random(f"{seed}:{site}:{meter}").gauss(0.0, limit / 2.0)))


def meter_plan(spec: str, bias: float = 0.0, silent_after_h: float | None = None) -> MeterPlan:
    """``E1@modbus`` → extraction meter E1 read over Modbus."""
    mid, _, source = spec.partition("@")
    role = {"E": Role.EXTRACTION, "R": Role.REINJECTION, "D": Role.DISCHARGE}[mid[0]]
    return MeterPlan(mid, role, source, bias, silent_after_h)


_m = meter_plan

CITY: tuple[SitePlan, ...] = (
    SitePlan("hehua-plaza", "向阳荷花广场", "宛城区", (_m("E1@modbus", 0.002), _m("R1@mqtt", -0.003),
                                                    _m("R2@mqtt", 0.001)), 80),
    SitePlan("wancheng-hospital", "宛城区人民医院", "宛城区", (_m("E1@modbus"), _m("E2@modbus", 0.003),
                                                         _m("R1@modbus", -0.002), _m("R2@mqtt")), 120, drain=0.35),
    SitePlan("xinhua-mall", "新华城市广场", "宛城区", (_m("E1@mqtt", -0.002), _m("R1@mqtt", 0.002)), 45),
    SitePlan("wolong-school", "卧龙区第一中学", "卧龙区", (_m("E1@modbus", 0.001), _m("R1@modbus"),
                                                       _m("R2@modbus", -0.003)), 50),
    SitePlan("wolong-gov", "卧龙区政务服务中心", "卧龙区", (_m("E1@mqtt"), _m("E2@mqtt", 0.002),
                                                        _m("R1@modbus", -0.001), _m("R2@modbus")), 90,
             drain=0.25, night_only=True),
    SitePlan("zhuge-garden", "诸葛花园小区", "卧龙区", (_m("E1@modbus", -0.003), _m("R1@mqtt", 0.002),
                                                     _m("R2@mqtt"), _m("R3@mqtt", 0.001)), 70),
    SitePlan("gaoxin-park", "高新区创业园", "高新区", (_m("E1@modbus"), _m("E2@modbus", 0.002),
                                                    _m("R1@mqtt", -0.002), _m("R2@mqtt", silent_after_h=3)), 100),
    SitePlan("gaoxin-hotel", "高新假日酒店", "高新区", (_m("E1@mqtt", 0.003), _m("R1@modbus"),
                                                     _m("R2@modbus", -0.002)), 55),
    SitePlan("optics-factory", "光电产业园", "高新区", (_m("E1@modbus", 0.001), _m("E2@mqtt"),
                                                   _m("R1@modbus", -0.002), _m("R2@modbus"),
                                                   _m("R3@mqtt", 0.002)), 110),
    SitePlan("civic-center", "示范区市民中心", "城乡一体化示范区", (_m("E1@mqtt", -0.001), _m("R1@modbus", 0.002),
                                                             _m("R2@mqtt")), 65),
    SitePlan("baihe-villas", "白河湾别墅区", "城乡一体化示范区", (_m("E1@modbus", 0.002), _m("R1@modbus")), 30),
    SitePlan("eco-school", "示范区实验学校", "城乡一体化示范区", (_m("E1@modbus"), _m("R1@mqtt", -0.002),
                                                            _m("R2@mqtt", 0.001)), 45),
    # a data logger speaking HJ 212: real-time totals for extraction, minute volumes (-Cou) for reinjection
    SitePlan("baihe-waterworks", "白河水厂办公楼", "宛城区", (_m("E1@hj212", 0.001), _m("R1@hj212", -0.002)), 50),
    # an RTU of the water-resource monitoring program speaking SZY 206, both flow points on one terminal
    SitePlan("wolong-library", "卧龙区图书馆", "卧龙区", (_m("E1@szy206", -0.001), _m("R1@szy206", 0.002)), 40),
)

LOCATIONS: dict[str, tuple[float, float, str]] = {
    "hehua-plaza": (33.000, 112.560, "南阳市宛城区向阳路"),
    "wancheng-hospital": (32.990, 112.575, "南阳市宛城区新华东路"),
    "xinhua-mall": (33.010, 112.545, "南阳市宛城区新华路"),
    "baihe-waterworks": (32.975, 112.590, "南阳市宛城区白河大道"),
    "wolong-school": (32.985, 112.480, "南阳市卧龙区卧龙路"),
    "wolong-gov": (33.000, 112.515, "南阳市卧龙区中州路"),
    "zhuge-garden": (32.965, 112.500, "南阳市卧龙区武侯路"),
    "wolong-library": (33.040, 112.515, "南阳市卧龙区车站路"),
    "gaoxin-park": (33.045, 112.455, "南阳市高新区雪枫路"),
    "gaoxin-hotel": (33.035, 112.480, "南阳市高新区长江路"),
    "optics-factory": (33.055, 112.430, "南阳市高新区光电路"),
    "civic-center": (32.945, 112.600, "南阳市城乡一体化示范区光武大道"),
    "baihe-villas": (32.925, 112.580, "南阳市城乡一体化示范区滨河路"),
    "eco-school": (32.935, 112.630, "南阳市城乡一体化示范区文化路"),
}
"""Where the demo's sites are drawn on its map: (lat, lon, address); the districts' outlines beside the demo
are simplified shapes around them, not surveyed boundaries."""

DIVISIONS = {"宛城区": "411302", "卧龙区": "411303", "高新区": "411371", "城乡一体化示范区": "411372"}
"""Administrative division codes the demo's SZY 206 terminals report (the last two: development zones)."""


def city_config(plans: Sequence[SitePlan], *, influx_url: str, mqtt_port: int, gateway_ports: dict[str, int],
                state_dir: str, listen: str, interval: str, timeout: str, hj212_port: int = 9212,
                szy206_port: int = 9206) -> dict[str, Any]:
    """A config for the city: one Modbus TCP gateway per district, one DTU topic per MQTT meter, one HJ 212
    logger (MN) per meter — a reinjection meter reporting minute volumes — and one SZY 206 terminal per
    site, its meters as flow points."""
    districts = sorted({p.district for p in plans})
    gw_id = {d: f"gw-{i + 1}" for i, d in enumerate(districts)}
    units: dict[str, int] = {}
    sites = []
    stations = []
    for i, p in enumerate(plans):
        meters = []
        points = 0
        for m in p.meters:
            entry: dict[str, Any] = {"id": m.id, "role": m.role.value, "accuracy_pct": 1.0}
            if m.source == "modbus":
                gw = gw_id[p.district]
                units[gw] = units.get(gw, 0) + 1
                entry["modbus"] = {"gateway": gw, "unit": units[gw], "profile": "tuf2000m"}
            elif m.source == "hj212":
                mn = f"GSHP{i + 1:04d}{m.id}"
                stations.append({"mn": mn, "password": f"pw{i + 1:04d}"})
                entry["hj212"] = ({"mn": mn, "rate": "w00000-Avg", "volume": "w00000-Cou"}
                                  if m.role is Role.REINJECTION else {"mn": mn})
            elif m.source == "szy206":
                points += 1
                entry["szy206"] = {"division": DIVISIONS.get(p.district, "411300"), "station": i + 1,
                                   "point": points}
            else:
                entry["mqtt"] = {"topic": f"dtu/{p.id}/{m.id}", "profile": "dtu-json"}
            meters.append(entry)
        site: dict[str, Any] = {"id": p.id, "name": p.name, "district": p.district, "meters": meters}
        if p.id in LOCATIONS:
            lat, lon, address = LOCATIONS[p.id]
            site["location"] = {"lat": lat, "lon": lon, "address": address}
        sites.append(site)
    telemetry: dict[str, Any] = {}
    if stations:
        telemetry["hj212"] = {"listen": f"127.0.0.1:{hj212_port}", "stations": stations}
    if any(m.source == "szy206" for p in plans for m in p.meters):
        telemetry["szy206"] = {"listen": f"127.0.0.1:{szy206_port}"}
    return {
        "timezone": "Asia/Shanghai",
        "state_dir": state_dir,
        "influx": {"url": influx_url, "api": "v1", "bucket": "gshp"},
        "mqtt": {"host": "127.0.0.1", "port": mqtt_port, "client_id": "gshp-demo"},
        "outbox": {"max_batch_age": "500ms"},
        "gateways": [{"id": gw_id[d], "transport": "tcp", "host": "127.0.0.1", "port": gateway_ports[d],
                      "interval": interval, "timeout": timeout, "retries": 0} for d in districts],
        **telemetry,
        "sites": sites,
        "api": {"listen": listen},
    }


@dataclass
class _Meter:
    site: str
    plan: MeterPlan
    model: MeterModel


@dataclass
class CityPhysics:
    """Every meter of the city as a `MeterModel` on model time t = seconds since `start`."""

    plans: Sequence[SitePlan]
    start: datetime
    tz: tzinfo
    seed: int = 1
    meters: dict[tuple[str, str], _Meter] = field(init=False)

    def __post_init__(self) -> None:
        start_hour = local_hour(self.start, self.tz)
        self.meters = {}
        for i, p in enumerate(self.plans):
            pump = DayCycleFlow.local(p.nominal_m3h, start_hour)
            water = p.water
            sides: dict[Role, TrueFlow] = {Role.EXTRACTION: pump, Role.REINJECTION: water.kept(pump, start_hour),
                                           Role.DISCHARGE: _drained(water, pump, start_hour)}
            counts = {r: sum(1 for m in p.meters if m.role is r) for r in Role}
            for j, m in enumerate(p.meters):
                flow = ScaledFlow(sides[m.role], (1 + m.bias) / counts[m.role])
                fault = p.fault if m.role is Role.REINJECTION else Scenario()
                model = MeterModel(flow, scenario=fault, seed=self.seed * 10_000 + i * 100 + j, noise_pct=0.3,
                                   initial_total_m3=10_000.0 + 7_919.0 * (i * 7 + j) % 90_000,
                                   serial_number=20240000 + i * 100 + j)
                self.meters[(p.id, m.id)] = _Meter(p.id, m, model)

    def t(self, now: datetime) -> float:
        return max(0.0, (now - self.start).total_seconds())

    def model_clock(self, now: Callable[[], datetime]) -> Callable[[], float]:
        """Model seconds for the Modbus simulators, from the service's clock."""
        return lambda: self.t(now())

    def silent(self, key: tuple[str, str], now: datetime) -> bool:
        m = self.meters[key]
        after = m.plan.silent_after_h
        return m.model.scenario.kind is ScenarioKind.OFFLINE or (
            after is not None and self.t(now) >= after * 3600.0)

    def readings(self, now: datetime, source: str | None = None) -> list[Reading]:
        """What the (non-silent) meters of a source show at `now`."""
        t = self.t(now)
        out = []
        for key, m in self.meters.items():
            if (source is not None and m.plan.source != source) or self.silent(key, now):
                continue
            v = m.model.sample(t)
            out.append(Reading(m.site, m.plan.id, m.plan.role, now, round(v["rate_m3h"], 4),
                               round(v["total_m3"], 4), signal_pct=float(v["signal_pct"])))
        return out

    def modbus_meters(self, site_ids: Iterable[str] | None = None) -> dict[tuple[str, str], MeterModel]:
        wanted = set(site_ids) if site_ids is not None else None
        return {k: m.model for k, m in self.meters.items()
                if m.plan.source == "modbus" and (wanted is None or k[0] in wanted)}


def _drained(water: Scenario, pump: TrueFlow, start_hour: float) -> TrueFlow:
    return water.drained(pump, start_hour) if water.drain else ScaledFlow(pump, 0.0)


def site_physics(sites: Sequence[Site], scenario: Scenario, start: datetime, tz: tzinfo, *,
                 flow_m3h: float = 40.0, seed: int = 1) -> CityPhysics:
    """Configured sites under one scenario, as every live simulator shows them (`SitePlan.of`)."""
    return CityPhysics([SitePlan.of(s, scenario, flow_m3h, seed) for s in sites], start, tz, seed)
