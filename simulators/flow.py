"""The live simulators' physics: true flows in continuous model time, what a meter shows of them, and the
named scenarios. One model for every simulator that answers in real time — the Modbus servers (`gshp sim
modbus|site`), the MQTT DTUs (`gshp sim mqtt`), the demo city and the in-process feed — so a site read
partly over Modbus and partly over MQTT shows one water.

`TrueFlow` is the water that really passes (a rate and its exact integral), so totalizers of meters fed
by the same flow agree exactly: reinjection = extraction × (1 − discharge). `DayCycleFlow` is a pump's
daily load cycle; `NightDrain` removes a share of it at night. `MeterModel` adds what a meter does on
top: noisy instantaneous rate, totalizer with multiplier, signal quality with noise, error bits, and the
fault scenarios (frozen, reset, reverse, swap, rescale).

The detection scenario set (`simulators.physics`, `simulators.scenarios`) is generated offline, in
one-minute steps, with start-up lag and shutdowns; it is replayed, not served.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime, tzinfo
from enum import StrEnum
from typing import Protocol

__all__ = ["DTU_SCENARIOS", "DayCycleFlow", "MeterModel", "NightDrain", "ScaledFlow", "Scenario", "ScenarioKind",
           "SumFlow", "TrueFlow", "local_hour"]

DAY_S = 86_400.0


class ScenarioKind(StrEnum):
    BALANCED = "balanced"
    DISCHARGE = "discharge"  # discharge:<pct> — reinjection carries (100 − pct) % of extraction
    NIGHT_DISCHARGE = "night-discharge"  # night-discharge:<pct> — the same, 22:00–06:00 local time only
    OFFLINE = "offline"      # no answer at all (a DTU: publishes nothing)
    EXCEPTION = "exception"  # Modbus exception 2, illegal data address
    SLOW = "slow"            # slow:<ms> — answers after a delay
    FROZEN = "frozen"        # totalizer stops while the rate goes on
    RESET = "reset"          # reset[:<min>] — totalizer drops to zero every <min> minutes (default 60)
    REVERSE = "reverse"      # flow runs backwards: negative rate, net falls, positive total stalls
    SWAP = "swap"            # swap[:<min>] — meter replaced after <min> minutes: new serial, total from 0
    RESCALE = "rescale"      # rescale[:<min>] — totalizer multiplier ×10 after <min> minutes, count kept


@dataclass(frozen=True, slots=True)
class _Arg:
    what: str
    default: float | None = None  # None: the argument is required
    upper: float | None = None


_ARGS = {
    ScenarioKind.DISCHARGE: _Arg("percent (0-100)", upper=100.0),
    ScenarioKind.NIGHT_DISCHARGE: _Arg("percent (0-100)", upper=100.0),
    ScenarioKind.SLOW: _Arg("milliseconds"),
    ScenarioKind.RESET: _Arg("minutes", 60.0),
    ScenarioKind.SWAP: _Arg("minutes", 60.0),
    ScenarioKind.RESCALE: _Arg("minutes", 60.0),
}
_WATER = (ScenarioKind.BALANCED, ScenarioKind.DISCHARGE, ScenarioKind.NIGHT_DISCHARGE)

DTU_SCENARIOS = frozenset(ScenarioKind) - {ScenarioKind.EXCEPTION, ScenarioKind.SLOW}
"""Scenarios that mean something for a DTU publishing readings (the others are Modbus answers)."""


@dataclass(frozen=True, slots=True)
class Scenario:
    kind: ScenarioKind = ScenarioKind.BALANCED
    value: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Scenario:
        name, sep, arg = text.strip().partition(":")
        try:
            kind = ScenarioKind(name)
        except ValueError:
            raise ValueError(f"unknown scenario {text!r}; choose one of {cls.names()}") from None
        spec = _ARGS.get(kind)
        if spec is None:
            if sep:
                raise ValueError(f"scenario {name} takes no argument")
            return cls(kind)
        if not sep and spec.default is not None:
            return cls(kind, spec.default)
        try:
            value = float(arg)
        except ValueError:
            raise ValueError(f"scenario {name} needs a number: {name}:<{spec.what}>") from None
        if not math.isfinite(value) or value < 0 or (spec.upper is not None and value > spec.upper) or (
                spec.default is not None and value == 0):
            raise ValueError(f"scenario {name}: {spec.what} out of range: {arg}")
        return cls(kind, value)

    @staticmethod
    def names(kinds: frozenset[ScenarioKind] | None = None) -> str:
        """The scenario syntax, for help and error texts."""
        def one(k: ScenarioKind) -> str:
            spec = _ARGS.get(k)
            if spec is None:
                return k.value
            return f"{k.value}[:N]" if spec.default is not None else f"{k.value}:N"
        return ", ".join(one(k) for k in ScenarioKind if kinds is None or k in kinds)

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.value:g}" if self.kind in _ARGS else self.kind.value

    @property
    def water(self) -> bool:
        """A site-wide water scenario (how much reaches reinjection), not a meter fault."""
        return self.kind in _WATER

    @property
    def drain(self) -> float:
        """Fraction of the water that does not reach reinjection (at night only for night-discharge)."""
        return self.value / 100.0 if self.kind in (ScenarioKind.DISCHARGE, ScenarioKind.NIGHT_DISCHARGE) else 0.0

    @property
    def reinjection_factor(self) -> float:
        return 1.0 - self.value / 100.0 if self.kind is ScenarioKind.DISCHARGE else 1.0

    def kept(self, pump: TrueFlow, start_hour: float) -> TrueFlow:
        """The water that reaches reinjection when `pump` is extracted (`start_hour`: local hour at t = 0)."""
        if self.kind is ScenarioKind.NIGHT_DISCHARGE:
            return NightDrain(pump, self.drain, start_hour)
        if self.kind is ScenarioKind.DISCHARGE:
            return ScaledFlow(pump, 1.0 - self.drain)
        return pump

    def drained(self, pump: TrueFlow, start_hour: float) -> TrueFlow:
        """The water that goes to a drain instead: extraction minus what is kept."""
        return SumFlow((pump, ScaledFlow(self.kept(pump, start_hour), -1.0)))


def local_hour(t: datetime, tz: tzinfo) -> float:
    """Hour of the local day (0 ≤ h < 24) at `t`."""
    local = t.astimezone(tz)
    return local.hour + local.minute / 60 + local.second / 3600 + local.microsecond / 3.6e9


class TrueFlow(Protocol):
    def rate(self, t: float) -> float:
        """m³/h at model time t (seconds)."""

    def volume(self, t: float) -> float:
        """m³ passed between model time 0 and t."""


@dataclass(frozen=True, slots=True)
class DayCycleFlow:
    """A pump flow with a ±`swing` daily load cycle: ``nominal × (1 + swing·sin(2π(t + phase)/day))``."""

    nominal_m3h: float
    swing: float = 0.1
    phase_s: float = 0.0

    @classmethod
    def local(cls, nominal_m3h: float, start_hour: float, swing: float = 0.25) -> DayCycleFlow:
        """Highest at 14:00 and lowest at 02:00 local time; `start_hour` is the local hour at t = 0."""
        return cls(nominal_m3h, swing, (start_hour - 8.0) * 3600.0)

    def rate(self, t: float) -> float:
        return self.nominal_m3h * (1 + self.swing * math.sin(2 * math.pi * (t + self.phase_s) / DAY_S))

    def volume(self, t: float) -> float:
        w = 2 * math.pi / DAY_S
        c = math.cos(w * self.phase_s) - math.cos(w * (t + self.phase_s))
        return self.nominal_m3h / 3600.0 * (t + self.swing * c / w)


@dataclass(frozen=True, slots=True)
class SumFlow:
    parts: tuple[TrueFlow, ...]

    def rate(self, t: float) -> float:
        return sum(p.rate(t) for p in self.parts)

    def volume(self, t: float) -> float:
        return sum(p.volume(t) for p in self.parts)


@dataclass(frozen=True, slots=True)
class ScaledFlow:
    source: TrueFlow
    factor: float

    def rate(self, t: float) -> float:
        return self.source.rate(t) * self.factor

    def volume(self, t: float) -> float:
        return self.source.volume(t) * self.factor


@dataclass(frozen=True, slots=True)
class NightDrain:
    """`source` minus `fraction` of it between 22:00 and 06:00 local time (a night-only discharge);
    `start_hour` is the local hour at t = 0."""

    source: TrueFlow
    fraction: float
    start_hour: float
    night: tuple[float, float] = (22.0, 6.0)

    def _is_night(self, t: float) -> bool:
        h = (self.start_hour + t / 3600.0) % 24.0
        lo, hi = self.night
        return h >= lo or h < hi

    def rate(self, t: float) -> float:
        return self.source.rate(t) * (1 - self.fraction if self._is_night(t) else 1.0)

    def volume(self, t: float) -> float:
        # exact: the source integrated, minus the drained fraction over each night interval up to t
        drained = 0.0
        start_s = self.start_hour * 3600.0  # seconds since local midnight of day 0 at t = 0
        lo, hi = self.night[0] * 3600.0, self.night[1] * 3600.0
        for d in range(-1, int((start_s + t) // DAY_S) + 1):
            a, b = d * DAY_S + lo - start_s, (d + 1) * DAY_S + hi - start_s  # night d: lo → hi next day
            a, b = max(a, 0.0), min(b, t)
            if b > a:
                drained += self.source.volume(b) - self.source.volume(a)
        return self.source.volume(t) - self.fraction * drained


class MeterModel:
    """What one meter shows at model time t. Totals only move forward in time (lazy integration)."""

    def __init__(self, flow: TrueFlow, *, scenario: Scenario = Scenario(), seed: int = 0,
                 initial_total_m3: float = 10_000.0, noise_pct: float = 0.5, signal_quality: int = 80,
                 signal_noise: float = 2.0, serial_number: int = 20240001) -> None:
        """`signal_noise` is the standard deviation of the signal quality around `signal_quality` (a slow
        AR(1) wander, as a meter's Q drifts with air and fines in the water); 0 keeps it constant."""
        self.flow = flow
        self.scenario = scenario
        self.noise_pct = noise_pct
        self.signal_quality = signal_quality
        self.signal_noise = signal_noise
        self.error_bits = 0
        self.serial_number = serial_number
        self.decades = 0  # totalizer multiplier steps added by `rescale` (the meter shows them in its register)
        self.resets = 0
        self._rng = random.Random(seed)
        self._signal_rng = random.Random(seed + 1_000_003)  # its own stream: the rate noise stays as it was
        self._signal_dev = 0.0
        self.positive_m3 = initial_total_m3
        self.negative_m3 = 0.0
        self._t = 0.0
        self._v = flow.volume(0.0)
        self.identity: dict[str, float] = {}  # overrides of identity fields (multiplier, unit, serial…)

    @property
    def reverse(self) -> bool:
        return self.scenario.kind is ScenarioKind.REVERSE

    def advance(self, t: float) -> None:
        if t <= self._t:
            return
        edge = self._edge(self._t, t)
        if edge is not None:
            self._integrate(edge)
            self._at_edge()
        self._integrate(t)

    def _edge(self, t0: float, t1: float) -> float | None:
        """The model time in (t0, t1] at which the scenario acts on the totalizer (the last one, for a
        periodic reset: what came before it is wiped anyway)."""
        kind = self.scenario.kind
        if kind not in (ScenarioKind.RESET, ScenarioKind.SWAP, ScenarioKind.RESCALE):
            return None
        every = self.scenario.value * 60.0
        if kind is ScenarioKind.RESET:
            k0, k1 = math.floor(t0 / every), math.floor(t1 / every)
            if k1 > k0:
                self.resets += k1 - k0
                return k1 * every
            return None
        return every if t0 < every <= t1 else None

    def _at_edge(self) -> None:
        kind = self.scenario.kind
        if kind is ScenarioKind.RESCALE:
            # the multiplier goes up one step and the count stays: the total the meter shows jumps ×10
            self.decades += 1
            self.positive_m3 *= 10.0
            self.negative_m3 *= 10.0
            return
        if kind is ScenarioKind.SWAP:
            self.serial_number = (self.serial_number + 10_000_000) % 100_000_000
        self.positive_m3 = self.negative_m3 = 0.0

    def _integrate(self, t: float) -> None:
        v = self.flow.volume(t)
        dv, self._t, self._v = v - self._v, t, v
        if self.scenario.kind is ScenarioKind.FROZEN:
            return
        if self.reverse:
            self.negative_m3 += dv
        else:
            self.positive_m3 += dv

    def _signal(self) -> int:
        if self.signal_noise <= 0:
            return self.signal_quality
        # stationary standard deviation `signal_noise`: innovations of σ·√(1 − 0.8²)
        self._signal_dev = 0.8 * self._signal_dev + self._signal_rng.gauss(0.0, 0.6 * self.signal_noise)
        return max(0, min(99, round(self.signal_quality + self._signal_dev)))

    def sample(self, t: float) -> dict[str, float]:
        """Advance to t and return the profile values a meter shows."""
        self.advance(t)
        true = self.flow.rate(t) * (-1 if self.reverse else 1)
        rate = true * (1 + self._rng.gauss(0, self.noise_pct / 100)) if true else 0.0
        net = self.positive_m3 - self.negative_m3
        signal = self._signal()
        return {
            "rate_m3h": rate, "rate": rate,
            "total_m3": self.positive_m3, "total_m3_f32": self.positive_m3,
            "negative_total_m3": self.negative_m3, "negative_total_m3_f32": self.negative_m3,
            "net_total_m3": net, "net_total_m3_f32": net,
            "signal_pct": signal, "quality": signal,
            "error_code": self.error_bits,
            "velocity_ms": abs(rate) / 3600.0 / 0.0314,  # DN200 pipe
            "working_timer_s": int(t),
        }
