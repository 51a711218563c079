"""Which configured meters an HJ 212 station (MN) feeds, and with which factor fields (pure, no I/O)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from collector.model import Hj212Source, Role, Site

__all__ = ["DataKind", "Hj212Meter", "Hj212Plan", "plan_hj212"]


class DataKind(StrEnum):
    """The uploads (CN) an interval-volume meter takes its volumes from."""

    MINUTE = "minute"  # CN 2051
    HOUR = "hour"  # CN 2061
    DAY = "day"  # CN 2031

    @property
    def cn(self) -> str:
        return {"minute": "2051", "hour": "2061", "day": "2031"}[self.value]


DATA_CNS = frozenset({"2011", "2051", "2061", "2031"})
"""Uploads that carry data: real-time, minute, hour and day data."""


@dataclass(frozen=True, slots=True)
class Hj212Meter:
    site: str
    meter: str
    role: Role
    rate: str | None
    total: str | None  # a totalizer field, or None for an interval-volume meter
    volume: str | None
    volume_cn: str | None  # the CN whose uploads carry the volumes
    period_s: float  # the span one volume covers


@dataclass(frozen=True, slots=True)
class Hj212Plan:
    passwords: Mapping[str, str]  # MN → PW
    meters: Mapping[str, tuple[Hj212Meter, ...]]  # MN → the meters it feeds


def plan_hj212(passwords: Mapping[str, str], sites: Sequence[Site], minute_interval: timedelta,
               volume_data: DataKind = DataKind.MINUTE) -> Hj212Plan:
    """Every HJ 212 meter of `sites` under its station's MN; `minute_interval` is the span of a minute-data
    upload (the loggers' MinInterval), `volume_data` which uploads carry the interval volumes."""
    period = {DataKind.MINUTE: minute_interval.total_seconds(), DataKind.HOUR: 3600.0, DataKind.DAY: 86400.0}
    by_mn: dict[str, list[Hj212Meter]] = {}
    for site in sites:
        for m in site.meters:
            src: Hj212Source | None = m.hj212
            if src is None:
                continue
            by_mn.setdefault(src.mn, []).append(Hj212Meter(
                site.id, m.id, m.role, src.rate, src.totalizer, src.volume,
                volume_data.cn if src.volume is not None else None, period[volume_data]))
    return Hj212Plan(dict(passwords), {mn: tuple(ms) for mn, ms in by_mn.items()})
