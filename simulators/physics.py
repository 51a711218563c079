"""Site physics (pure, seedable): one pump flow split over extraction wells; reinjection is extraction,
delayed by the tank and pipes, minus whatever is discharged; meters add their own bias and noise.

Everything works on 1-minute steps. `simulate_site` returns per-meter arrays of the instantaneous rate and
the forward totalizer *as the meter shows them*, at timestamps `start + i·60 s`; scenario faults (gaps,
frozen or reversed meters, replacements) are applied afterwards by `simulators.scenarios`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from collector.model import Role

__all__ = [
    "Load",
    "MeterPhysics",
    "MeterSeries",
    "computed",
    "pump_flow",
    "replayed",
    "rescaled",
    "simulate_site",
    "synthetic",
]


@dataclass(frozen=True, slots=True)
class Load:
    """The pump's flow over the local day."""

    day_m3h: float = 100.0
    night_m3h: float = 40.0
    shutdown: tuple[float, float] | None = None  # local hours (from, to) when the pumps stop, e.g. (23, 6)
    wobble: float = 0.03  # slow random variation of the flow (fraction)
    utc_offset_h: float = 8.0


@dataclass(frozen=True, slots=True)
class MeterPhysics:
    id: str
    role: Role
    share: float  # fraction of its side's flow through this meter
    bias: float = 0.0  # systematic relative error (0.005 = reads 0.5 % high)
    noise: float = 0.002  # repeatability: σ of the per-minute relative error
    total_start: float = 1000.0
    resolution_m3: float = 0.01


@dataclass(frozen=True, slots=True)
class MeterSeries:
    rate_m3h: np.ndarray = field(repr=False)
    total_m3: np.ndarray = field(repr=False)


def _in_hours(h: np.ndarray, lo: float, hi: float) -> np.ndarray:
    out: np.ndarray = (h >= lo) & (h < hi) if lo <= hi else (h >= lo) | (h < hi)
    return out


def pump_flow(start_s: float, minutes: int, load: Load, rng: np.random.Generator) -> np.ndarray:
    """True extraction flow (m³/h), one value per minute: day/night load, slow wobble, shutdowns with
    a two-minute ramp at start-up and stop."""
    t = start_s + 60.0 * np.arange(minutes)
    h = ((t / 3600.0 + load.utc_offset_h) % 24.0)
    shape = np.clip(np.sin(np.pi * (h - 6.0) / 16.0), 0.0, None)
    q = load.night_m3h + (load.day_m3h - load.night_m3h) * shape
    walk = np.cumsum(rng.normal(0.0, 1.0, minutes))
    walk = walk - np.convolve(walk, np.ones(120) / 120, mode="same")
    q = q * (1.0 + load.wobble * np.tanh(walk / 10.0))
    if load.shutdown is not None:
        on = ~_in_hours(h, *load.shutdown)
        ramp = np.convolve(on.astype(float), np.ones(3) / 3, mode="same")
        q = q * np.clip(ramp, 0.0, 1.0) * on
    out: np.ndarray = np.clip(q, 0.0, None)
    return out


def _ar1(rng: np.random.Generator, n: int, sigma: float, rho: float = 0.9) -> np.ndarray:
    e = rng.normal(0.0, sigma * np.sqrt(1 - rho * rho), n)
    out = np.empty(n)
    acc = rng.normal(0.0, sigma)
    for i in range(n):  # n is at most a few 10⁵: fine
        acc = rho * acc + e[i]
        out[i] = acc
    return out


def simulate_site(start_s: float, minutes: int, load: Load, meters: tuple[MeterPhysics, ...], lag_min: int,
                  discharge: np.ndarray, rng: np.random.Generator) -> dict[str, MeterSeries]:
    """Meter readings at `start + i·60 s`, i = 0 … minutes: `discharge[i]` is the fraction of the water
    arriving for reinjection during minute i that goes to a drain instead."""
    q = pump_flow(start_s, minutes, load, rng)
    arriving = np.concatenate([np.zeros(lag_min), q[: minutes - lag_min]]) if lag_min else q
    reinjected = arriving * (1.0 - np.clip(discharge, 0.0, 1.0))
    out: dict[str, MeterSeries] = {}
    for m in meters:
        true = (q if m.role is Role.EXTRACTION else reinjected if m.role is Role.REINJECTION
                else arriving * np.clip(discharge, 0.0, 1.0)) * m.share
        measured = true * (1.0 + m.bias) * (1.0 + _ar1(rng, minutes, m.noise))
        exact = m.total_start + np.concatenate([[0.0], np.cumsum(measured / 60.0)])
        total = np.floor(exact / m.resolution_m3) * m.resolution_m3
        rate = np.concatenate([measured[:1], measured]) * (1.0 + rng.normal(0.0, m.noise, minutes + 1))
        out[m.id] = MeterSeries(np.round(rate, 3), np.round(total, 3))
    return out


def replayed(series: MeterSeries, from_i: int, shift: int) -> MeterSeries:
    """The meter as a replay shows it from reading `from_i` on: the rates and totalizer steps it showed
    `shift` readings before, the total rising on from where it stood (what forged data looks like)."""
    if not 0 < shift <= from_i:
        raise ValueError(f"shift {shift} must be in 1 … {from_i} (readings before the replay starts)")
    rate, total = series.rate_m3h.copy(), series.total_m3.copy()
    for i in range(from_i, len(total)):
        rate[i] = rate[i - shift]
        total[i] = total[i - 1] + (total[i - shift] - total[i - shift - 1])
    return MeterSeries(np.round(rate, 3), np.round(total, 3))


def rescaled(series: MeterSeries, from_i: int, factor: float) -> MeterSeries:
    """The meter with its totalizer and rate both multiplied by `factor` from reading `from_i` on (a
    touched scale factor or a swapped register map)."""
    rate, total = series.rate_m3h.copy(), series.total_m3.copy()
    rate[from_i:] *= factor
    total[from_i:] *= factor
    return MeterSeries(np.round(rate, 3), np.round(total, 3))


def synthetic(series: MeterSeries, from_i: int, rate_m3h: np.ndarray, resolution_m3: float = 0.01) -> MeterSeries:
    """The meter as a generator shows it from reading `from_i` on: the given noise-free rate (one per reading),
    and a totalizer integrating it on from where it stood."""
    rate, total = series.rate_m3h.copy(), series.total_m3.copy()
    rate[from_i:] = rate_m3h[from_i:]
    exact = total[from_i - 1] + np.cumsum(rate_m3h[from_i:] / 60.0)
    total[from_i:] = np.floor(exact / resolution_m3) * resolution_m3
    return MeterSeries(np.round(rate, 3), np.round(total, 3))


def computed(target: MeterSeries, sources: list[MeterSeries], from_i: int, share: float,
             resolution_m3: float = 0.01) -> MeterSeries:
    """The meter as forged from other meters from reading `from_i` on: `share` of their summed rates and
    totalizer steps (reinjection computed from extraction), its total rising on from where it stood."""
    rate, total = target.rate_m3h.copy(), target.total_m3.copy()
    rate[from_i:] = share * sum(s.rate_m3h[from_i:] for s in sources)
    steps = share * sum(np.diff(s.total_m3)[from_i - 1:] for s in sources)
    total[from_i:] = np.floor((total[from_i - 1] + np.cumsum(steps)) / resolution_m3) * resolution_m3
    return MeterSeries(np.round(rate, 3), np.round(total, 3))
