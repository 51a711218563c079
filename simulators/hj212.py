"""Simulated HJ 212-2017 data loggers: each configured station (MN) uploads its meters' readings from the
shared site physics — real-time data (CN 2011) with rate and totalizer fields, or, for an interval-volume
meter, minute data (CN 2051) whose ``-Cou`` is the volume the meter counted over the interval — and waits
for the data answer, re-sending what is not answered (`simulators.datalogger`).

Faults: a fraction of packets with a broken CRC, a wrong password (both sent once, not waited for: the
centre answers neither), an outage during which the logger buffers and after which it uploads.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from collector.hj212.codec import encode_packet
from collector.model import Reading, Site
from simulators.datalogger import AnswerReader, Upload

__all__ = ["Hj212Faults", "Hj212Station", "hj212_answers", "hj212_stations"]


@dataclass(frozen=True, slots=True)
class Hj212Faults:
    bad_crc: float = 0.0  # fraction of packets whose CRC is broken
    wrong_password: bool = False


@dataclass(frozen=True, slots=True)
class _Field:
    site: str
    meter: str
    rate: str | None
    total: str | None
    volume: str | None


class Hj212Station:
    """One logger: its MN, password and meters; `uploads(readings, at)` encodes one step's packets."""

    def __init__(self, mn: str, password: str, fields: Sequence[_Field], tz: tzinfo, period: timedelta,
                 faults: Hj212Faults = Hj212Faults(), seed: int = 1) -> None:
        self.mn, self.password, self.fields, self.tz, self.period = mn, password, tuple(fields), tz, period
        self.faults = faults
        self._rng = random.Random(f"{seed}:{mn}")
        self._last_total: dict[tuple[str, str], float] = {}
        self._qn = 0

    def _packet(self, cn: str, data_time: datetime, items: list[str]) -> Upload:
        self._qn = (self._qn + 1) % 1000
        qn = data_time.astimezone(self.tz).strftime("%Y%m%d%H%M%S") + f"{self._qn:03d}"
        pw = self.password + "x" if self.faults.wrong_password else self.password
        when = data_time.astimezone(self.tz).strftime("%Y%m%d%H%M%S")
        segment = (f"QN={qn};ST=32;CN={cn};PW={pw};MN={self.mn};Flag=5;CP=&&DataTime={when};"
                   + ";".join(items) + "&&")
        frame = encode_packet(segment)
        broken = self.faults.bad_crc and self._rng.random() < self.faults.bad_crc
        if broken:
            frame = frame[:-6] + (b"0000" if frame[-6:-2] != b"0000" else b"FFFF") + b"\r\n"
        faulty = broken or self.faults.wrong_password
        return Upload(frame, None if faulty else f"QN={qn}".encode())

    def uploads(self, readings: Sequence[Reading], at: datetime) -> list[Upload]:
        """This step's packets: real-time data for totalizer meters, minute data (the interval that ends at
        `at`) for interval-volume meters."""
        by_meter = {(r.site, r.meter): r for r in readings}
        realtime: list[tuple[str, str]] = []  # (factor field, value)
        minute: list[tuple[str, str]] = []
        for f in self.fields:
            r = by_meter.get((f.site, f.meter))
            if r is None:
                continue
            if f.volume is not None:
                assert r.total_m3 is not None
                prev = self._last_total.get((f.site, f.meter))
                self._last_total[(f.site, f.meter)] = r.total_m3
                if prev is None:
                    continue
                minute.append((f.volume, f"{max(0.0, r.total_m3 - prev):.4f}"))
                if f.rate is not None and r.rate_m3h is not None:
                    minute.append((f.rate, f"{r.rate_m3h:.3f}"))
                continue
            if f.rate is not None and r.rate_m3h is not None:
                realtime.append((f.rate, f"{r.rate_m3h:.3f}"))
            if f.total is not None and r.total_m3 is not None:
                realtime.append((f.total, f"{r.total_m3:.3f}"))
        out = []
        if realtime:
            out.append(self._packet("2011", at, _factors(realtime)))
        if minute:
            out.append(self._packet("2051", at - self.period, _factors(minute)))
        return out


def _factors(fields: list[tuple[str, str]]) -> list[str]:
    """The CP items: one per factor (``w00000-Rtd=…,w00000-Flag=N``), its fields joined by ','."""
    by_code: dict[str, list[str]] = {}
    for name, value in fields:
        by_code.setdefault(name.split("-", 1)[0], []).append(f"{name}={value}")
    return [",".join([*items, f"{code}-Flag=N"]) for code, items in by_code.items()]


def hj212_stations(sites: Sequence[Site], passwords: dict[str, str], tz: tzinfo, period: timedelta,
                   faults: Hj212Faults = Hj212Faults(), seed: int = 1) -> list[Hj212Station]:
    """One simulated logger per MN of the configured HJ 212 meters."""
    fields: dict[str, list[_Field]] = {}
    for s in sites:
        for m in s.meters:
            if m.hj212 is not None:
                fields.setdefault(m.hj212.mn, []).append(
                    _Field(s.id, m.id, m.hj212.rate, m.hj212.totalizer, m.hj212.volume))
    return [Hj212Station(mn, passwords.get(mn, ""), fs, tz, period, faults, seed) for mn, fs in fields.items()]


def _split(buf: bytearray) -> list[bytes]:
    out: list[bytes] = []
    while True:
        end = buf.find(b"\r\n")
        if end < 0:
            return out
        out.append(bytes(buf[:end + 2]))
        del buf[:end + 2]


def _key(answer: bytes) -> bytes | None:
    start = answer.find(b"QN=")
    if start < 0 or b"CN=9014" not in answer:
        return None
    end = answer.find(b";", start)
    return answer[start:end] if end > 0 else None


def hj212_answers() -> AnswerReader:
    """Reads data answers (CN 9014): each one's key is its QN."""
    return AnswerReader(_split, _key)
