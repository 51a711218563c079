"""Flow-rate and volume units a payload may use, as factors to m³/h and m³."""

from __future__ import annotations

from types import MappingProxyType

__all__ = ["RATE_UNITS", "VOLUME_UNITS", "rate_factor", "volume_factor"]

RATE_UNITS = MappingProxyType({
    "m3/h": 1.0,
    "m3/min": 60.0,
    "m3/s": 3600.0,
    "m3/d": 1 / 24,
    "L/h": 0.001,
    "L/min": 0.06,
    "L/s": 3.6,
})
"""Multiply a value in the unit by the factor to get m³/h."""

VOLUME_UNITS = MappingProxyType({
    "m3": 1.0,
    "L": 0.001,
})
"""Multiply a value in the unit by the factor to get m³."""


def rate_factor(unit: str) -> float:
    try:
        return RATE_UNITS[unit]
    except KeyError:
        raise ValueError(f"unknown flow-rate unit {unit!r} (known: {', '.join(RATE_UNITS)})") from None


def volume_factor(unit: str) -> float:
    try:
        return VOLUME_UNITS[unit]
    except KeyError:
        raise ValueError(f"unknown volume unit {unit!r} (known: {', '.join(VOLUME_UNITS)})") from None
