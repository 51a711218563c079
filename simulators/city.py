"""A simulated city on one clock: the sites, their physics, and the meters the collector reads.

Each site has one pump: its flow follows the local day (more by day, less by night). Extraction meters
share it; reinjection meters share it minus what the operator drains away (a constant fraction, or only
at night). Every meter is a `MeterModel` of that flow (with its own small bias), so the Modbus
simulators (registers encoded from the same profile the collector decodes), the MQTT DTU publisher and
the in-process feed all show the same water. A meter can go silent after some hours — the cheapest way
to hide a discharge.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

from collector.model import Reading, Role
from simulators.modbus.flow import MeterModel, ScaledFlow, TrueFlow

__all__ = ["CITY", "CityPhysics", "LocalDayFlow", "MeterPlan", "NightDrain", "SitePlan", "city_config", "meter_plan"]

DAY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class LocalDayFlow:
    """A pump flow peaking at 14:00 local time and lowest at 02:00 (±`swing`)."""

    nominal_m3h: float
    start_hour: float  # local hour of day at model time 0
    swing: float = 0.25

    def _phase(self, t: float) -> float:
        return 2 * math.pi * ((self.start_hour - 14.0) * 3600.0 + t) / DAY_S

    def rate(self, t: float) -> float:
        return self.nominal_m3h * (1 + self.swing * math.cos(self._phase(t)))

    def volume(self, t: float) -> float:
        w = 2 * math.pi / DAY_S
        return self.nominal_m3h / 3600.0 * (t + self.swing * (math.sin(self._phase(t)) - math.sin(self._phase(0))) / w)


@dataclass(frozen=True, slots=True)
class NightDrain:
    """`source` minus `fraction` of it between 22:00 and 06:00 local time (a night-only discharge)."""

    source: LocalDayFlow
    fraction: float
    night: tuple[float, float] = (22.0, 6.0)

    def _is_night(self, t: float) -> bool:
        h = (self.source.start_hour + t / 3600.0) % 24.0
        lo, hi = self.night
        return h >= lo or h < hi

    def rate(self, t: float) -> float:
        return self.source.rate(t) * (1 - self.fraction if self._is_night(t) else 1.0)

    def volume(self, t: float) -> float:
        # exact: the day flow integrated, minus the drained fraction over each night interval up to t
        drained = 0.0
        start_s = self.source.start_hour * 3600.0  # seconds since local midnight of day 0 at t = 0
        lo, hi = self.night[0] * 3600.0, self.night[1] * 3600.0
        for d in range(-1, int((start_s + t) // DAY_S) + 1):
            a, b = d * DAY_S + lo - start_s, (d + 1) * DAY_S + hi - start_s  # night d: lo → hi next day
            a, b = max(a, 0.0), min(b, t)
            if b > a:
                drained += self.source.volume(b) - self.source.volume(a)
        return self.source.volume(t) - self.fraction * drained


@dataclass(frozen=True, slots=True)
class MeterPlan:
    id: str
    role: Role
    source: str  # "modbus" or "mqtt"
    bias: float = 0.0  # reads this much high (0.003 = +0.3 %)
    silent_after_h: float | None = None  # stops reporting after this many hours


@dataclass(frozen=True, slots=True)
class SitePlan:
    id: str
    name: str
    district: str
    meters: tuple[MeterPlan, ...]
    nominal_m3h: float = 60.0
    drain: float = 0.0  # fraction of the water that does not reach reinjection
    night_only: bool = False

    @property
    def honest(self) -> bool:
        return self.drain == 0 and all(m.silent_after_h is None for m in self.meters)


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
)


def city_config(plans: Sequence[SitePlan], *, influx_url: str, mqtt_port: int, gateway_ports: dict[str, int],
                state_dir: str, listen: str, interval: str, timeout: str) -> dict[str, Any]:
    """A config for the city: one Modbus TCP gateway per district, one DTU topic per MQTT meter."""
    districts = sorted({p.district for p in plans})
    gw_id = {d: f"gw-{i + 1}" for i, d in enumerate(districts)}
    units: dict[str, int] = {}
    sites = []
    for p in plans:
        meters = []
        for m in p.meters:
            entry: dict[str, Any] = {"id": m.id, "role": m.role.value, "accuracy_pct": 1.0}
            if m.source == "modbus":
                gw = gw_id[p.district]
                units[gw] = units.get(gw, 0) + 1
                entry["modbus"] = {"gateway": gw, "unit": units[gw], "profile": "tuf2000m"}
            else:
                entry["mqtt"] = {"topic": f"dtu/{p.id}/{m.id}", "profile": "dtu-json"}
            meters.append(entry)
        sites.append({"id": p.id, "name": p.name, "district": p.district, "meters": meters})
    return {
        "timezone": "Asia/Shanghai",
        "state_dir": state_dir,
        "influx": {"url": influx_url, "api": "v1", "bucket": "gshp"},
        "mqtt": {"host": "127.0.0.1", "port": mqtt_port, "client_id": "gshp-demo"},
        "outbox": {"max_batch_age": "500ms"},
        "gateways": [{"id": gw_id[d], "transport": "tcp", "host": "127.0.0.1", "port": gateway_ports[d],
                      "interval": interval, "timeout": timeout, "retries": 0} for d in districts],
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
        local = self.start.astimezone(self.tz)
        start_hour = local.hour + local.minute / 60 + local.second / 3600
        self.meters = {}
        for i, p in enumerate(self.plans):
            pump = LocalDayFlow(p.nominal_m3h, start_hour)
            kept: TrueFlow = NightDrain(pump, p.drain) if p.night_only else ScaledFlow(pump, 1 - p.drain)
            sides = {Role.EXTRACTION: pump, Role.REINJECTION: kept,
                     Role.DISCHARGE: ScaledFlow(pump, p.drain)}
            counts = {r: sum(1 for m in p.meters if m.role is r) for r in Role}
            for j, m in enumerate(p.meters):
                flow = ScaledFlow(sides[m.role], (1 + m.bias) / counts[m.role])
                model = MeterModel(flow, seed=self.seed * 10_000 + i * 100 + j, noise_pct=0.3,
                                   initial_total_m3=10_000.0 + 7_919.0 * (i * 7 + j) % 90_000,
                                   serial_number=20240000 + i * 100 + j)
                self.meters[(p.id, m.id)] = _Meter(p.id, m, model)

    def t(self, now: datetime) -> float:
        return max(0.0, (now - self.start).total_seconds())

    def model_clock(self, now: Callable[[], datetime]) -> Callable[[], float]:
        """Model seconds for the Modbus simulators, from the service's clock."""
        return lambda: self.t(now())

    def silent(self, key: tuple[str, str], now: datetime) -> bool:
        after = self.meters[key].plan.silent_after_h
        return after is not None and self.t(now) >= after * 3600.0

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

