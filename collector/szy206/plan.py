"""Which configured meters an SZY 206 terminal (address) feeds, by flow point (pure, no I/O)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from collector.model import Role, Site
from collector.szy206.codec import address_bytes

__all__ = ["FlowUnit", "Szy206Meter", "Szy206Plan", "plan_szy206"]


class FlowUnit(StrEnum):
    """The unit of the instantaneous flow the terminals send."""

    M3H = "m3/h"
    M3S = "m3/s"

    @property
    def to_m3h(self) -> float:
        return 3600.0 if self is FlowUnit.M3S else 1.0


@dataclass(frozen=True, slots=True)
class Szy206Meter:
    site: str
    meter: str
    role: Role
    point: int  # 1 = the first flow point of the terminal's data


@dataclass(frozen=True, slots=True)
class Szy206Plan:
    meters: Mapping[bytes, tuple[Szy206Meter, ...]]  # address (5 bytes) → its meters
    flow_unit: FlowUnit = FlowUnit.M3H


def plan_szy206(sites: Sequence[Site], flow_unit: FlowUnit = FlowUnit.M3H) -> Szy206Plan:
    by_address: dict[bytes, list[Szy206Meter]] = {}
    for site in sites:
        for m in site.meters:
            if m.szy206 is None:
                continue
            a = address_bytes(m.szy206.division, m.szy206.station)
            by_address.setdefault(a, []).append(Szy206Meter(site.id, m.id, m.role, m.szy206.point))
    return Szy206Plan({a: tuple(ms) for a, ms in by_address.items()}, flow_unit)
