"""A small, self-contained flow model for one simulated meter, and the named scenarios.

`TrueFlow` is the water that really passes (a rate and its exact integral), so totalizers of meters fed
by the same flow agree exactly: reinjection = extraction × (1 − discharge). A richer site model can drive
the meters by implementing `TrueFlow`. `MeterModel` adds what a meter does on top: noisy instantaneous
rate, totalizer with multiplier, signal quality, error bits, and scenario behaviour (frozen, reset,
reverse).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

__all__ = ["DayCycleFlow", "MeterModel", "ScaledFlow", "Scenario", "ScenarioKind", "SumFlow", "TrueFlow"]

DAY_S = 86_400.0


class ScenarioKind(StrEnum):
    BALANCED = "balanced"
    DISCHARGE = "discharge"  # discharge:<pct> — reinjection carries (100 − pct) % of extraction
    OFFLINE = "offline"      # no answer at all
    EXCEPTION = "exception"  # Modbus exception 2, illegal data address
    SLOW = "slow"            # slow:<ms> — answers after a delay
    FROZEN = "frozen"        # totalizer stops while the rate goes on
    RESET = "reset"          # totalizer starts again from zero
    REVERSE = "reverse"      # flow runs backwards: negative rate, net falls, positive total stalls


_NEEDS_ARG = {ScenarioKind.DISCHARGE: "percent (0-100)", ScenarioKind.SLOW: "milliseconds"}


@dataclass(frozen=True, slots=True)
class Scenario:
    kind: ScenarioKind = ScenarioKind.BALANCED
    value: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Scenario:
        name, _, arg = text.strip().partition(":")
        try:
            kind = ScenarioKind(name)
        except ValueError:
            names = ", ".join(k.value + (":N" if k in _NEEDS_ARG else "") for k in ScenarioKind)
            raise ValueError(f"unknown scenario {text!r}; choose one of {names}") from None
        if kind in _NEEDS_ARG:
            try:
                value = float(arg)
            except ValueError:
                raise ValueError(f"scenario {name} needs a number: {name}:<{_NEEDS_ARG[kind]}>") from None
            if value < 0 or (kind is ScenarioKind.DISCHARGE and value > 100):
                raise ValueError(f"scenario {name}: {_NEEDS_ARG[kind]} out of range: {arg}")
            return cls(kind, value)
        if arg:
            raise ValueError(f"scenario {name} takes no argument")
        return cls(kind)

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.value:g}" if self.kind in _NEEDS_ARG else self.kind.value

    @property
    def reinjection_factor(self) -> float:
        return 1.0 - self.value / 100.0 if self.kind is ScenarioKind.DISCHARGE else 1.0


class TrueFlow(Protocol):
    def rate(self, t: float) -> float:
        """m³/h at model time t (seconds)."""

    def volume(self, t: float) -> float:
        """m³ passed between model time 0 and t."""


@dataclass(frozen=True, slots=True)
class DayCycleFlow:
    """A pump flow with a ±`swing` daily load cycle."""

    nominal_m3h: float
    swing: float = 0.1
    phase_s: float = 0.0

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


class MeterModel:
    """What one meter shows at model time t. Totals only move forward in time (lazy integration)."""

    def __init__(self, flow: TrueFlow, *, scenario: Scenario = Scenario(), seed: int = 0,
                 initial_total_m3: float = 10_000.0, noise_pct: float = 0.5, signal_quality: int = 80,
                 serial_number: int = 20240001) -> None:
        self.flow = flow
        self.scenario = scenario
        self.noise_pct = noise_pct
        self.signal_quality = signal_quality
        self.error_bits = 0
        self.serial_number = serial_number
        self._rng = random.Random(seed)
        reset = scenario.kind is ScenarioKind.RESET
        self.positive_m3 = 0.0 if reset else initial_total_m3
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
        v = self.flow.volume(t)
        dv, self._t, self._v = v - self._v, t, v
        if self.scenario.kind is ScenarioKind.FROZEN:
            return
        if self.reverse:
            self.negative_m3 += dv
        else:
            self.positive_m3 += dv

    def sample(self, t: float) -> dict[str, float]:
        """Advance to t and return the profile values a meter shows."""
        self.advance(t)
        true = self.flow.rate(t) * (-1 if self.reverse else 1)
        rate = true * (1 + self._rng.gauss(0, self.noise_pct / 100)) if true else 0.0
        net = self.positive_m3 - self.negative_m3
        return {
            "rate_m3h": rate, "rate": rate,
            "total_m3": self.positive_m3, "total_m3_f32": self.positive_m3,
            "negative_total_m3": self.negative_m3, "negative_total_m3_f32": self.negative_m3,
            "net_total_m3": net, "net_total_m3_f32": net,
            "signal_pct": self.signal_quality, "quality": self.signal_quality,
            "error_code": self.error_bits,
            "velocity_ms": abs(rate) / 3600.0 / 0.0314,  # DN200 pipe
            "working_timer_s": int(t),
        }
