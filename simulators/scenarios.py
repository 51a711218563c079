"""Named scenarios (reproducible by seed): honest sites with every nuisance, discharge of several sizes,
and evasion by unplugging, freezing or reversing a reinjection meter.

Each scenario builds one site: its config (a `sites:` entry plus rule overrides), its readings and the
truth: when the fault starts and which alert is expected how soon. `SCENARIOS` registers them by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from collector.model import Role
from simulators.physics import (
    Load,
    MeterPhysics,
    MeterSeries,
    Pipes,
    computed,
    pump_flow,
    replayed,
    rescaled,
    simulate_site,
    synthetic,
)

__all__ = ["SCENARIOS", "Expect", "Scenario", "ScenarioData", "build", "build_scenario", "fleet_names",
           "honest_names", "with_days"]

EPOCH = datetime(2026, 5, 4, 16, 0, tzinfo=UTC)  # 00:00 at UTC+8
DAY = 1440


@dataclass(frozen=True, slots=True)
class Expect:
    """What replay must produce: `kind` none → no discharge alert at all; otherwise the first firing alert
    of `kind` (and `rule`, if given) no later than `within` after the onset."""

    kind: str  # "none" | "discharge" | "data_quality" | "compliance"
    rule: str | None = None
    within: timedelta | None = None


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    days: float
    seed: int
    expect: Expect
    make: Callable[[Scenario, np.random.Generator], ScenarioData]


@dataclass(slots=True)
class ScenarioData:
    site: dict[str, Any]
    readings: pd.DataFrame
    onset: datetime | None = None
    rules: dict[str, Any] = field(default_factory=dict)  # rules.sites.<id> override

    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"timezone": "Asia/Shanghai", "sites": [self.site]}
        if self.rules:
            cfg["rules"] = {"sites": {self.site["id"]: self.rules}}
        return cfg


SCENARIOS: dict[str, Scenario] = {}


def scenario(name: str, description: str, days: float, seed: int, expect: Expect
             ) -> Callable[[Callable[[Scenario, np.random.Generator], ScenarioData]], None]:
    def deco(fn: Callable[[Scenario, np.random.Generator], ScenarioData]) -> None:
        if name in SCENARIOS:
            raise ValueError(f"scenario {name!r} defined twice: rename one")
        SCENARIOS[name] = Scenario(name, description, days, seed, expect, fn)
    return deco


def build(name: str) -> ScenarioData:
    return build_scenario(SCENARIOS[name])


def build_scenario(s: Scenario) -> ScenarioData:
    """The site, readings and truth of `s` (a registered scenario, or a copy of one with another length)."""
    return s.make(s, np.random.default_rng(s.seed))


def honest_names() -> list[str]:
    return [n for n, s in SCENARIOS.items() if s.expect.kind == "none"]


# ------------------------------------------------------------------------------------------ building blocks

def _meters(rng: np.random.Generator, bias: float = 0.005) -> tuple[MeterPhysics, ...]:
    def b() -> float:
        return float(rng.uniform(-bias, bias))
    return (
        MeterPhysics("E1", Role.EXTRACTION, 0.55, b(), total_start=float(rng.uniform(1e3, 5e5))),
        MeterPhysics("E2", Role.EXTRACTION, 0.45, b(), total_start=float(rng.uniform(1e3, 5e5))),
        MeterPhysics("R1", Role.REINJECTION, 0.5, b(), total_start=float(rng.uniform(1e3, 5e5))),
        MeterPhysics("R2", Role.REINJECTION, 0.5, b(), total_start=float(rng.uniform(1e3, 5e5))),
    )


def _site_cfg(sc: Scenario, meters: tuple[MeterPhysics, ...]) -> dict[str, Any]:
    return {"id": sc.name, "name": f"模拟站点 {sc.name}", "district": "宛城区",
            "meters": [{"id": m.id, "role": m.role.value, "accuracy_pct": 1.0} for m in meters]}


def _frame(series: dict[str, MeterSeries], site: str, start_s: float) -> pd.DataFrame:
    parts = []
    for mid, s in series.items():
        n = len(s.total_m3)
        parts.append(pd.DataFrame({"ts": (start_s + 60.0 * np.arange(n)).astype(np.int64), "site": site,
                                   "meter": mid, "rate_m3h": s.rate_m3h, "total_m3": s.total_m3}))
    return pd.concat(parts, ignore_index=True)


def _minute(days: float) -> int:
    return round(days * DAY)


def _run(sc: Scenario, rng: np.random.Generator, load: Load, lag: int,
         discharge: np.ndarray | None = None, meters: tuple[MeterPhysics, ...] | None = None,
         pipes: Pipes | None = None) -> tuple[dict[str, Any], dict[str, MeterSeries], float, int]:
    minutes = _minute(sc.days)
    meters = meters or _meters(rng)
    d = discharge if discharge is not None else np.zeros(minutes)
    start = EPOCH.timestamp()
    series = simulate_site(start, minutes, load, meters, lag, d, rng, pipes)
    return _site_cfg(sc, meters), series, start, minutes


def _local_hour(start_s: float, minutes: int) -> np.ndarray:
    return ((start_s + 60.0 * np.arange(minutes)) / 3600.0 + 8.0) % 24.0


def _drop(df: pd.DataFrame, meter: str | None, t0: float, t1: float) -> pd.DataFrame:
    sel = (df["ts"] >= t0) & (df["ts"] < t1)
    if meter is not None:
        sel &= df["meter"] == meter
    return df.loc[~sel].reset_index(drop=True)


# ------------------------------------------------------------------------------------------ honest sites

def _honest(name: str, seed: int, description: str, load: Load, lag: int,
            tweak: Callable[[Scenario, pd.DataFrame, float], pd.DataFrame] | None = None) -> None:
    @scenario(name, description, 6.0, seed, Expect("none"))
    def make(sc: Scenario, rng: np.random.Generator) -> ScenarioData:
        site, series, start, _ = _run(sc, rng, load, lag)
        df = _frame(series, sc.name, start)
        if tweak is not None:
            df = tweak(sc, df, start)
        return ScenarioData(site, df)


def _replace_meter(meter: str, at_day: float) -> Callable[[Scenario, pd.DataFrame, float], pd.DataFrame]:
    def tweak(sc: Scenario, df: pd.DataFrame, start: float) -> pd.DataFrame:
        t = start + at_day * 86400
        df = _drop(df, meter, t, t + 20 * 60)  # 20 minutes without the meter
        sel = (df["meter"] == meter) & (df["ts"] >= t)
        first = df.loc[sel, "total_m3"].min()
        df.loc[sel, "total_m3"] = (df.loc[sel, "total_m3"] - first + 0.0).round(3)  # new meter starts at 0
        return df
    return tweak


Tweak = Callable[[Scenario, pd.DataFrame, float], pd.DataFrame]


def _gap(meter: str | None, at_day: float, minutes: int) -> Tweak:
    def tweak(sc: Scenario, df: pd.DataFrame, start: float) -> pd.DataFrame:
        t = start + at_day * 86400
        return _drop(df, meter, t, t + minutes * 60)
    return tweak


def _chain(*tweaks: Callable[[Scenario, pd.DataFrame, float], pd.DataFrame]
           ) -> Callable[[Scenario, pd.DataFrame, float], pd.DataFrame]:
    def tweak(sc: Scenario, df: pd.DataFrame, start: float) -> pd.DataFrame:
        for t in tweaks:
            df = t(sc, df, start)
        return df
    return tweak


for _i, _seed in enumerate((11, 12)):
    _honest(f"honest-daynight-{_i}", _seed, "day/night load, no shutdown", Load(), lag=4)
    _honest(f"honest-shutdown-{_i}", _seed + 20, "nightly shutdown 23:00–06:00, start-up lag 8 min",
            Load(shutdown=(23.0, 6.0)), lag=8)
    _honest(f"honest-lowflow-{_i}", _seed + 40, "low flow at night (3 m³/h)", Load(day_m3h=60, night_m3h=3),
            lag=5)
    _honest(f"honest-replacement-{_i}", _seed + 60, "extraction meter replaced on day 3 (new meter from 0)",
            Load(shutdown=(0.0, 5.0)), lag=6, tweak=_replace_meter("E1", 3.02))
    _honest(f"honest-gap-all-{_i}", _seed + 80, "DTU outage: all meters silent 40 min on day 2",
            Load(), lag=5, tweak=_gap(None, 2.4, 40))
    _honest(f"honest-gap-one-{_i}", _seed + 100, "one reinjection meter silent 25 min, twice",
            Load(shutdown=(22.0, 5.5)), lag=10,
            tweak=_chain(_gap("R2", 1.6, 25), _gap("R2", 4.3, 25)))
    _honest(f"honest-small-{_i}", _seed + 120, "small household unit, 2 m³/h with stops",
            Load(day_m3h=2.0, night_m3h=1.0, shutdown=(1.0, 6.0)), lag=3)
    _honest(f"honest-nuisance-{_i}", _seed + 140, "shutdowns, a DTU gap and a meter replacement",
            Load(day_m3h=150, night_m3h=20, shutdown=(23.5, 6.5)), lag=12,
            tweak=_chain(_gap(None, 1.3, 30), _replace_meter("R1", 4.55)))


# ------------------------------------------------------------------------------------------ honest fleet

HONEST_FLEET = 100  # sites of 20 days each: 2 000 honest site-days with every nuisance
FLEET_DAYS = 20.0


def _fleet_meters(rng: np.random.Generator) -> tuple[MeterPhysics, ...]:
    """1 to 5 meters per side, uneven shares, each with a fixed bias within ±0.5 %."""
    out: list[MeterPhysics] = []
    for role, prefix in ((Role.EXTRACTION, "E"), (Role.REINJECTION, "R")):
        n = int(rng.integers(1, 6))
        shares = rng.dirichlet(np.full(n, 4.0))
        out += [MeterPhysics(f"{prefix}{i + 1}", role, float(sh), float(rng.uniform(-0.005, 0.005)),
                             total_start=float(rng.uniform(1e3, 5e5))) for i, sh in enumerate(shares)]
    return tuple(out)


def _swap_meter(meter: str, at_day: float, factor: float) -> Tweak:
    """The meter replaced by a new one (total from 0) whose own bias differs by `factor`."""
    def tweak(sc: Scenario, df: pd.DataFrame, start: float) -> pd.DataFrame:
        df = _replace_meter(meter, at_day)(sc, df, start)
        sel = (df["meter"] == meter) & (df["ts"] >= start + at_day * 86400)
        df.loc[sel, "total_m3"] = (df.loc[sel, "total_m3"] * factor).round(3)
        df.loc[sel, "rate_m3h"] = (df.loc[sel, "rate_m3h"] * factor).round(3)
        return df
    return tweak


def _fleet_site(i: int) -> None:
    """One honest site of the fleet: its load, transit and nuisances drawn from its seed."""
    kind = ("daynight", "shutdown", "cycles", "lowflow", "weekend", "seasonal")[i % 6]

    @scenario(f"honest-fleet-{i:03d}", f"honest site ({kind}), 1–5 meters per side, every nuisance", FLEET_DAYS,
              1000 + i, Expect("none"))
    def make(sc: Scenario, rng: np.random.Generator) -> ScenarioData:
        day = float(rng.uniform(40, 200))
        load = {"daynight": Load(day_m3h=day, night_m3h=day * 0.35),
                "shutdown": Load(day_m3h=day, night_m3h=day * 0.3, shutdown=(float(rng.uniform(21, 24)), 6.0)),
                "cycles": Load(day_m3h=day, night_m3h=day * 0.3,
                               cycle=(0.0, 6.0, int(rng.integers(20, 50)), int(rng.integers(10, 30)))),
                "lowflow": Load(day_m3h=day * 0.3, night_m3h=float(rng.uniform(1.0, 4.0))),
                "weekend": Load(day_m3h=day, night_m3h=day * 0.3, weekend=float(rng.uniform(0.3, 0.7))),
                "seasonal": Load(day_m3h=day, night_m3h=day * 0.4, season_per_day=float(rng.uniform(-0.03, 0.03)),
                                 shutdown=(1.0, 5.0))}[kind]
        pipes = Pipes(float(rng.uniform(0.5, 4.0)), float(rng.uniform(15, 60))) if rng.random() < 0.7 else None
        meters = _fleet_meters(rng)
        lag = int(rng.integers(2, 13))
        minutes = _minute(sc.days)
        backwash = None
        d = np.zeros(minutes)
        if rng.random() < 0.3:  # a declared backwash (回扬) of a reinjection well, 90 min, within its cap
            i0 = _minute(float(rng.uniform(2, sc.days - 2)))
            d[i0:i0 + 90] = 0.3
            backwash = i0
        site, series, start, _ = _run(sc, rng, load, lag, d, meters, pipes)
        df = _frame(series, sc.name, start)
        ids = [m.id for m in meters]
        df = _gap(None, float(rng.uniform(1, sc.days - 1)), int(rng.integers(15, 60)))(sc, df, start)
        for _ in range(2):
            df = _gap(str(rng.choice(ids)), float(rng.uniform(1, sc.days - 1)), int(rng.integers(5, 40)))(sc, df, start)
        if rng.random() < 0.5:
            df = _swap_meter(str(rng.choice(ids)), float(rng.uniform(3, sc.days - 1)),
                             float(1.0 + rng.uniform(-0.005, 0.005)))(sc, df, start)
        rules: dict[str, Any] = {}
        if backwash is not None:
            t0 = datetime.fromtimestamp(start + 60 * backwash, UTC)
            rules = {"maintenance": [{"from": (t0 - timedelta(minutes=10)).isoformat(),
                                      "to": (t0 + timedelta(minutes=100)).isoformat(),
                                      "reason": "回扬 R1", "volume_cap_m3": day * 0.3 * 1.5 * 1.2}]}
        return ScenarioData(site, df, None, rules)


for _i in range(HONEST_FLEET):
    _fleet_site(_i)


def fleet_names() -> list[str]:
    """The honest fleet's scenarios (the bulk of the honest site-days)."""
    return [n for n in SCENARIOS if n.startswith("honest-fleet-")]


# ------------------------------------------------------------------------------------------ discharge

def _discharging(name: str, seed: int, description: str, days: float, onset_day: float, frac: float,
                 within: timedelta, night_only: bool = False, load: Load | None = None) -> None:
    @scenario(name, description, days, seed, Expect("discharge", None, within))
    def make(sc: Scenario, rng: np.random.Generator) -> ScenarioData:
        minutes = _minute(days)
        start = EPOCH.timestamp()
        d = np.zeros(minutes)
        i0 = _minute(onset_day)
        d[i0:] = frac
        if night_only:
            h = _local_hour(start, minutes)
            d *= _in_night(h)
            i0 = int(np.flatnonzero(d > 0)[0])
        site, series, start, _ = _run(sc, rng, load or Load(), 5, d)
        onset = datetime.fromtimestamp(start + 60 * i0, UTC)
        return ScenarioData(site, _frame(series, sc.name, start), onset)


def _in_night(h: np.ndarray) -> np.ndarray:
    return ((h >= 22.0) | (h < 6.0)).astype(float)


_discharging("discharge-20", 31, "20 % of the water to a drain from day 1.3", 2.5, 1.3137, 0.20,
             timedelta(minutes=45))
_discharging("discharge-40", 32, "40 % to a drain", 2.5, 1.52, 0.40, timedelta(minutes=45))
_discharging("discharge-60", 33, "60 % to a drain, during shutdown-prone load", 2.5, 1.71, 0.60,
             timedelta(minutes=45), load=Load(shutdown=(23.0, 6.0)))
_discharging("discharge-night-25", 34, "25 % to a drain at night only (22:00–06:00)", 3.0, 1.2, 0.25,
             timedelta(hours=2), night_only=True)
_discharging("discharge-5", 35, "5 % to a drain", 3.5, 2.05, 0.05, timedelta(hours=6))
_discharging("discharge-3", 36, "3 % to a drain", 4.0, 2.1, 0.03, timedelta(hours=24))


# ------------------------------------------------------------------------------------------ small and slow

NIGHT_STOPS = Load(day_m3h=110, night_m3h=35, cycle=(0.0, 6.0, 40, 20))  # pumps cycle 40 on / 20 off at night
PIPES = Pipes(volume_m3=2.5, drain_m3h=30.0)


def _slow(name: str, seed: int, description: str, days: float, within: timedelta,
          fraction: Callable[[np.ndarray, float], tuple[np.ndarray, int]], load: Load = NIGHT_STOPS,
          lag: int = 7, tweak: Tweak | None = None) -> None:
    """A discharge too small (or too well hidden) for the windows: `fraction(hours since start, start)`
    gives the drained fraction per minute and the onset minute."""
    @scenario(name, description, days, seed, Expect("discharge", None, within))
    def make(sc: Scenario, rng: np.random.Generator) -> ScenarioData:
        minutes = _minute(days)
        start = EPOCH.timestamp()
        d, i0 = fraction(np.arange(minutes) / 60.0, start)
        site, series, start, _ = _run(sc, rng, load, lag, d, pipes=PIPES)
        df = _frame(series, sc.name, start)
        if tweak is not None:
            df = tweak(sc, df, start)
        return ScenarioData(site, df, datetime.fromtimestamp(start + 60 * i0, UTC))


def _step(frac: float, onset_day: float) -> Callable[[np.ndarray, float], tuple[np.ndarray, int]]:
    def f(hours: np.ndarray, start: float) -> tuple[np.ndarray, int]:
        return np.where(hours >= onset_day * 24.0, frac, 0.0), _minute(onset_day)
    return f


def _ramp(top: float, onset_day: float, over_days: float) -> Callable[[np.ndarray, float], tuple[np.ndarray, int]]:
    def f(hours: np.ndarray, start: float) -> tuple[np.ndarray, int]:
        x = np.clip((hours - onset_day * 24.0) / (over_days * 24.0), 0.0, 1.0)
        return top * x, _minute(onset_day)
    return f


def _weekend_nights(frac: float, onset_day: float) -> Callable[[np.ndarray, float], tuple[np.ndarray, int]]:
    def f(hours: np.ndarray, start: float) -> tuple[np.ndarray, int]:
        local = (start / 3600.0 + hours + 8.0)
        weekend = np.floor(local / 24.0 + 3.0) % 7.0 >= 5.0
        d = np.where((hours >= onset_day * 24.0) & weekend & _in_night(local % 24.0).astype(bool), frac, 0.0)
        return d, int(np.flatnonzero(d > 0)[0])
    return f


_slow("discharge-2", 61, "2 % to a drain, night stop/start cycles and pipes refilling", 4.5,
      timedelta(hours=36), _step(0.02, 2.1))
_slow("discharge-1.5", 62, "1.5 % to a drain, night stop/start cycles", 8.0, timedelta(days=5), _step(0.015, 2.2))
_slow("discharge-8-from-start", 63, "8 % to a drain from the very first reading (nothing honest to learn)", 2.0,
      timedelta(hours=24), _step(0.08, 0.0), load=Load(shutdown=(23.0, 6.0)), lag=5)
# 0 → 12 % over three weeks: caught before it passes 5 %, i.e. within 5/12 of 21 days of the onset
_slow("ramp-12", 64, "a discharge growing from 0 to 12 % over three weeks", 12.0,
      timedelta(days=21 * 5 / 12), _ramp(0.12, 2.0, 21.0))
_slow("replacement-cover-3", 65, "reinjection meter R1 replaced (total from 0) while 3 % starts to drain", 6.0,
      timedelta(hours=48), _step(0.03, 3.0), load=Load(shutdown=(0.0, 5.0)), lag=6,
      tweak=_replace_meter("R1", 3.0))
# the week starts on Monday 2026-05-04: day 5 is Saturday; weekend nights run at 40 % of the load
_slow("weekend-night-30", 66, "30 % to a drain on weekend nights only, at low weekend-night load", 7.0,
      timedelta(minutes=30), _weekend_nights(0.30, 4.0), load=Load(day_m3h=80, night_m3h=30, weekend=0.4), lag=6)


# ------------------------------------------------------------------------------------------ evasion

def _evading(name: str, seed: int, description: str, rule: str, within: timedelta,
             fault: Callable[[pd.DataFrame, float], pd.DataFrame]) -> None:
    @scenario(name, description, 2.0, seed, Expect("data_quality", rule, within))
    def make(sc: Scenario, rng: np.random.Generator) -> ScenarioData:
        site, series, start, _ = _run(sc, rng, Load(), 5)
        onset = start + 1.27 * 86400 + 17
        df = fault(_frame(series, sc.name, start), onset)
        return ScenarioData(site, df, datetime.fromtimestamp(onset, UTC))


def _unplug(df: pd.DataFrame, t: float) -> pd.DataFrame:
    return _drop(df, "R1", t, float("inf"))


def _freeze(df: pd.DataFrame, t: float) -> pd.DataFrame:
    sel = (df["meter"] == "R1") & (df["ts"] >= t)
    df.loc[sel, "total_m3"] = df.loc[sel, "total_m3"].iloc[0]
    return df


def _reverse(df: pd.DataFrame, t: float) -> pd.DataFrame:
    sel = (df["meter"] == "R1") & (df["ts"] >= t)
    df.loc[sel, "rate_m3h"] = -df.loc[sel, "rate_m3h"]
    df.loc[sel, "total_m3"] = df.loc[sel, "total_m3"].iloc[0]
    return df


_evading("unplugged-reinjection", 41, "reinjection meter R1 unplugged while extraction runs",
         "reinjection_silent", timedelta(minutes=20), _unplug)
_evading("frozen-reinjection", 42, "reinjection totalizer R1 frozen while its rate is normal",
         "totalizer_frozen", timedelta(minutes=60), _freeze)
_evading("reversed-reinjection", 43, "reinjection meter R1 reversed (negative rate)", "reverse_flow",
         timedelta(minutes=30), _reverse)


# ------------------------------------------------------------------------------------------ maintenance

def _backwash(name: str, seed: int, volume_frac: float, cap_m3: float, expect: Expect) -> None:
    @scenario(name, f"declared backwash (回扬) 2 h, cap {cap_m3:g} m³", 3.0, seed, expect)
    def make(sc: Scenario, rng: np.random.Generator) -> ScenarioData:
        minutes = _minute(sc.days)
        start = EPOCH.timestamp()
        i0 = _minute(1.45)
        d = np.zeros(minutes)
        d[i0:i0 + 120] = volume_frac
        site, series, start, _ = _run(sc, rng, Load(night_m3h=80), 5, d)
        t0 = datetime.fromtimestamp(start + 60 * i0, UTC)
        rules = {"maintenance": [{"from": (t0 - timedelta(minutes=10)).isoformat(),
                                  "to": (t0 + timedelta(minutes=130)).isoformat(),
                                  "reason": "回扬 R1", "volume_cap_m3": cap_m3}]}
        return ScenarioData(site, _frame(series, sc.name, start), t0, rules)


_backwash("backwash-under-cap", 51, 0.3, 80.0, Expect("none"))
_backwash("backwash-over-cap", 52, 0.6, 20.0, Expect("discharge", None, timedelta(hours=2)))


# ------------------------------------------------------------------------------------------ permits

def _permit(status: str, quota_m3: float = 300_000.0, max_rate_m3h: float = 150.0) -> dict[str, Any]:
    return {"number": "取水(宛)字[2024]第0012号", "holder": "向阳荷花广场物业", "annual_quota_m3": quota_m3,
            "max_rate_m3h": max_rate_m3h, "wells": {"extraction": 2, "reinjection": 4},
            "valid_from": "2024-01-01", "valid_to": "2028-12-31", "status": status}


def _dry_until(df: pd.DataFrame, t: float) -> pd.DataFrame:
    """Every meter standing still before `t` (rate 0, totalizer at its value at `t`): the pumps start at `t`."""
    before = df["ts"] < t
    for meter in df["meter"].unique():
        sel = df["meter"] == meter
        at_t = df.loc[sel & ~before, "total_m3"].iloc[0]
        df.loc[sel & before, "total_m3"] = at_t
        df.loc[sel & before, "rate_m3h"] = 0.0
    return df


def _scale_after(df: pd.DataFrame, t: float, factor: float) -> pd.DataFrame:
    """Every meter's flow times `factor` from `t` on (both sides alike: the site stays balanced)."""
    after = df["ts"] >= t
    for meter in df["meter"].unique():
        sel = (df["meter"] == meter) & after
        base = df.loc[sel, "total_m3"].iloc[0]
        df.loc[sel, "total_m3"] = (base + (df.loc[sel, "total_m3"] - base) * factor).round(3)
        df.loc[sel, "rate_m3h"] = df.loc[sel, "rate_m3h"] * factor
    return df


@scenario("sealed-pumping", "sealed site (自备井封停) dry for a day, then pumping, perfectly balanced", 1.5, 61,
          Expect("compliance", "sealed_pumping", timedelta(minutes=15)))
def _sealed(sc: Scenario, rng: np.random.Generator) -> ScenarioData:
    site, series, start, _ = _run(sc, rng, Load(), 5, meters=_meters(rng, bias=0.0))
    onset = start + 1.0 * 86400 + 17
    df = _dry_until(_frame(series, sc.name, start), onset)
    return ScenarioData({**site, "permit": _permit("sealed")}, df, datetime.fromtimestamp(onset, UTC))


@scenario("over-rate", "extraction doubles to ~200 m³/h against a permitted 150 m³/h (balanced)", 2.0, 62,
          Expect("compliance", "over_rate", timedelta(minutes=30)))
def _over_rate(sc: Scenario, rng: np.random.Generator) -> ScenarioData:
    site, series, start, _ = _run(sc, rng, Load(), 5)
    onset = start + 1.6 * 86400 + 17  # 14:24 local, day-time load
    df = _scale_after(_frame(series, sc.name, start), onset, 2.0)
    return ScenarioData({**site, "permit": _permit("operating")}, df, datetime.fromtimestamp(onset, UTC))


@scenario("quota-projection", "~70 m³/h on average against 300 000 m³ a year: over the quota by autumn", 2.0, 63,
          Expect("compliance", "quota_projection", timedelta(minutes=30)))
def _quota(sc: Scenario, rng: np.random.Generator) -> ScenarioData:
    site, series, start, _ = _run(sc, rng, Load(), 5)
    onset = start + 86400  # the projection is judged once the year ledger spans a day
    return ScenarioData({**site, "permit": _permit("operating")}, _frame(series, sc.name, start),
                        datetime.fromtimestamp(onset, UTC), {"compliance": {"quota_min_span": "1d"}})


def with_days(name: str, days: float) -> Scenario:
    """A copy of a scenario with another length (benchmarks)."""
    return replace(SCENARIOS[name], days=days)


# ------------------------------------------------------------------------------------------ forged data

def _drain_from(sc: Scenario, share: float, day: float = 1.27) -> tuple[int, np.ndarray]:
    """The minute a forensic scenario's drain opens and the drained share of each minute."""
    i0 = _minute(day)
    d = np.zeros(_minute(sc.days))
    d[i0:] = share
    return i0, d


@scenario("replayed-reinjection", "40 % to a drain while both reinjection meters replay the previous day's "
          "readings (rates and steps shifted by 24 h, totals rising on)", 1.6, 61,
          Expect("data_quality", "data_replayed", timedelta(hours=2)))
def _replayed_reinjection(sc: Scenario, rng: np.random.Generator) -> ScenarioData:
    i0, d = _drain_from(sc, 0.40)
    site, series, start, _ = _run(sc, rng, Load(), 5, d)
    for mid in ("R1", "R2"):
        series[mid] = replayed(series[mid], i0, DAY)
    return ScenarioData(site, _frame(series, sc.name, start), datetime.fromtimestamp(start + 60 * i0, UTC))


@scenario("rescaled-across-gap", "the reinjection DTU silent 12 min, back with both totalizers and rates "
          "rescaled +25 % while 20 % drains", 2.0, 62,
          Expect("data_quality", "meter_changed", timedelta(minutes=30)))
def _rescaled_across_gap(sc: Scenario, rng: np.random.Generator) -> ScenarioData:
    i0, d = _drain_from(sc, 0.20)
    meters = tuple(replace(m, total_start=20_000.0 + 1000 * n) if m.role is Role.REINJECTION else m
                   for n, m in enumerate(_meters(rng)))
    site, series, start, _ = _run(sc, rng, Load(), 5, d, meters)
    for mid in ("R1", "R2"):
        series[mid] = rescaled(series[mid], i0 + 12, 1.25)
    df = _frame(series, sc.name, start)
    for mid in ("R1", "R2"):
        df = _drop(df, mid, start + 60 * i0, start + 60 * (i0 + 12))
    return ScenarioData(site, df, datetime.fromtimestamp(start + 60 * i0, UTC))


@scenario("synthetic-reinjection", "40 % to a drain while both reinjection meters report a computed, noise-free "
          "load curve", 1.5, 63, Expect("data_quality", "data_synthetic", timedelta(hours=2)))
def _synthetic_reinjection(sc: Scenario, rng: np.random.Generator) -> ScenarioData:
    i0, d = _drain_from(sc, 0.40)
    load = Load()
    meters = _meters(rng)
    site, series, start, _ = _run(sc, rng, load, 5, d, meters)
    curve = pump_flow(start, len(d) + 1, replace(load, wobble=0.0), np.random.default_rng(0))
    for m in meters:
        if m.role is Role.REINJECTION:
            series[m.id] = synthetic(series[m.id], i0, curve * m.share)
    return ScenarioData(site, _frame(series, sc.name, start), datetime.fromtimestamp(start + 60 * i0, UTC))


@scenario("computed-reinjection", "30 % to a drain while the reinjection meters report 55 % and 45 % of the "
          "extraction meters' readings (computed, not measured)", 2.5, 64,
          Expect("data_quality", "exact_balance", timedelta(hours=16)))
def _computed_reinjection(sc: Scenario, rng: np.random.Generator) -> ScenarioData:
    i0, d = _drain_from(sc, 0.30)
    site, series, start, _ = _run(sc, rng, Load(), 5, d)
    sources = [series["E1"], series["E2"]]
    series["R1"] = computed(series["R1"], sources, i0, 0.55)
    series["R2"] = computed(series["R2"], sources, i0, 0.45)
    return ScenarioData(site, _frame(series, sc.name, start), datetime.fromtimestamp(start + 60 * i0, UTC))
