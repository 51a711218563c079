"""Simulated SZY 206-2016 terminals: each configured address reports its flow points (instantaneous flow,
cumulative volume) from the shared site physics as self-reported real-time data (AFN C0H, function code
3) and waits for the centre's confirmation, re-sending what is not confirmed (`simulators.datalogger`).

Faults: a fraction of frames with a broken CRC (sent once, not waited for), an outage during which the
terminal buffers and after which it uploads.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo

from collector.model import Reading, Site
from collector.szy206.codec import address_bytes, encode_bcd_signed, encode_frame, encode_time_label
from collector.szy206.plan import FlowUnit
from simulators.datalogger import AnswerReader, Upload

__all__ = ["Szy206Terminal", "szy206_answers", "szy206_terminals"]

_CONTROL_FLOW_UP = 0xB3  # DIR 1 (terminal to centre), FCB 3, function code 3 (flow)


@dataclass(frozen=True, slots=True)
class _Point:
    site: str
    meter: str
    point: int


class Szy206Terminal:
    def __init__(self, address: bytes, points: Sequence[_Point], tz: tzinfo, flow_unit: FlowUnit = FlowUnit.M3H,
                 bad_crc: float = 0.0, seed: int = 1) -> None:
        self.address, self.points, self.tz, self.flow_unit = address, tuple(points), tz, flow_unit
        self.bad_crc = bad_crc
        self._rng = random.Random(f"{seed}:{address.hex()}")

    def uploads(self, readings: Sequence[Reading], at: datetime) -> list[Upload]:
        by_meter = {(r.site, r.meter): r for r in readings}
        n = max(p.point for p in self.points)
        values = [(0.0, 0.0)] * n
        seen = False
        for p in self.points:
            r = by_meter.get((p.site, p.meter))
            if r is None or r.total_m3 is None:
                continue
            seen = True
            values[p.point - 1] = ((r.rate_m3h or 0.0) / self.flow_unit.to_m3h, float(int(r.total_m3)))
        if not seen:
            return []
        data = b"".join(encode_bcd_signed(f, 5, 3) + encode_bcd_signed(v, 5, 0) for f, v in values)
        data += bytes(4) + encode_time_label(at.astimezone(self.tz), 5)
        frame = encode_frame(_CONTROL_FLOW_UP, self.address, 0xC0, data)
        if self.bad_crc and self._rng.random() < self.bad_crc:
            return [Upload(frame[:-2] + bytes([frame[-2] ^ 0xFF, 0x16]), None)]
        return [Upload(frame, self.address + b"\xc0")]


def szy206_terminals(sites: Sequence[Site], tz: tzinfo, flow_unit: FlowUnit = FlowUnit.M3H, bad_crc: float = 0.0,
                     seed: int = 1) -> list[Szy206Terminal]:
    points: dict[bytes, list[_Point]] = {}
    for s in sites:
        for m in s.meters:
            if m.szy206 is not None:
                a = address_bytes(m.szy206.division, m.szy206.station)
                points.setdefault(a, []).append(_Point(s.id, m.id, m.szy206.point))
    return [Szy206Terminal(a, ps, tz, flow_unit, bad_crc, seed) for a, ps in points.items()]


def _split(buf: bytearray) -> list[bytes]:
    out = []
    while len(buf) >= 3:
        start = buf.find(0x68)
        if start < 0:
            buf.clear()
            break
        del buf[:start]
        if len(buf) < 3:
            break
        total = buf[1] + 5
        if len(buf) < total:
            break
        out.append(bytes(buf[:total]))
        del buf[:total]
    return out


def _key(answer: bytes) -> bytes | None:
    if len(answer) < 12 or answer[-1] != 0x16:
        return None
    return answer[4:9] + answer[9:10]  # address + AFN


def szy206_answers() -> AnswerReader:
    """Reads confirmations: each one's key is its address and AFN."""
    return AnswerReader(_split, _key)
