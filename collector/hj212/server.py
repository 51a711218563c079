"""HJ 212-2017 for the telemetry server: a packet in, readings and the data answer out.

A packet is checked in the order a receiver must: framing (length, CR LF), CRC, the data segment's
fields, the station (MN) and its password (PW), the upload (CN), the data time; then each meter of the
station takes its factor fields. Anything that fails is a `Rejected` with its reason: bad_crc, malformed,
unknown_station, wrong_password, split_packet, unsupported_command, bad_timestamp, ts_future, ts_past,
bad_value. The data answer (CN 9014 with the upload's QN) goes back only when the upload's Flag asks for
one, and only after its readings are committed. A rejected packet is kept with its password masked. The
data flag of the factor a meter takes its volume from (``-Flag``) becomes the reading's error code
(`DATA_FLAGS`): a logger that marks its data as faulty or under maintenance raises the meter-quality rule.
"""

from __future__ import annotations

import hmac
import math
import re
from datetime import UTC, datetime, timedelta, tzinfo

from collector.hj212.codec import (
    DATA_FLAGS,
    Hj212Framing,
    Packet,
    PacketError,
    crc16,
    data_answer,
    parse_datatime,
    parse_segment,
)
from collector.hj212.plan import DATA_CNS, Hj212Meter, Hj212Plan
from collector.model import ModelError, Reading
from collector.telemetry.server import Decoded, Rejected

__all__ = ["Hj212Protocol"]


class Hj212Protocol:
    name = "hj212"

    def __init__(self, plan: Hj212Plan, tz: tzinfo, max_clock_skew: timedelta, max_age: timedelta) -> None:
        self.plan = plan
        self.tz = tz
        self.max_skew_s = max_clock_skew.total_seconds()
        self.max_age_s = max_age.total_seconds()

    def framing(self, max_buffer: int) -> Hj212Framing:
        return Hj212Framing(max_buffer)

    def decode(self, frame: bytes, received: float) -> Decoded:
        segment = frame[6:-6]
        sent_crc = frame[-6:-2]
        try:
            ok = int(sent_crc, 16) == crc16(segment)
        except ValueError:
            ok = False
        if not ok:
            return _reject("bad_crc", f"CRC {sent_crc.decode('ascii', 'replace')!r} does not match the data "
                                      f"segment ({crc16(segment):04X})", frame)
        try:
            packet = parse_segment(segment.decode("ascii"))
        except UnicodeDecodeError:
            return _reject("malformed", "the data segment is not ASCII", frame)
        except PacketError as err:
            return _reject(err.reason, err.detail, frame)
        password = self.plan.passwords.get(packet.mn)
        if password is None:
            return _reject("unknown_station", f"MN {packet.mn[:24]!r} is not under hj212.stations", frame,
                           packet.mn[:24])
        if not hmac.compare_digest(packet.pw.encode(), password.encode()):
            return _reject("wrong_password", "PW does not match the station's password", frame, packet.mn)
        if packet.split:
            return _reject("split_packet", "split packets (PNUM/PNO) are not supported", frame, packet.mn)
        if packet.cn not in DATA_CNS:
            return _reject("unsupported_command", f"CN {packet.cn[:8]!r} carries no data this service takes",
                           frame, packet.mn)
        try:
            readings = self._readings(packet, received)
        except PacketError as err:
            return _reject(err.reason, err.detail, frame, packet.mn)
        return Decoded(tuple(readings), data_answer(packet) if packet.wants_answer else None, station=packet.mn)

    def _readings(self, packet: Packet, received: float) -> list[Reading]:
        text = packet.cp.get("DataTime")
        if text is None:
            raise PacketError("malformed", "no DataTime in CP")
        data_time = parse_datatime(text, self.tz).astimezone(UTC)
        out = []
        for m in self.plan.meters.get(packet.mn, ()):
            reading = self._reading(m, packet, data_time)
            if reading is not None:
                out.append(reading)
        for r in out:
            age = received - r.ts.timestamp()
            if age < -self.max_skew_s:
                raise PacketError("ts_future", f"DataTime {text} is {-age:.0f}s ahead of this server's clock")
            if age > self.max_age_s:
                raise PacketError("ts_past", f"DataTime {text} is older than max_age")
        return out

    def _reading(self, m: Hj212Meter, packet: Packet, data_time: datetime) -> Reading | None:
        cp = packet.cp
        if m.volume is not None:  # an interval-volume meter: only the uploads that carry its volumes
            if packet.cn != m.volume_cn or m.volume not in cp:
                return None
            ts = data_time + timedelta(seconds=m.period_s)  # DataTime opens the interval
            return _build(m, ts, _number(cp, m.rate), None, _number(cp, m.volume), m.period_s,
                          _flag(cp, m.volume))
        rate, total = _number(cp, m.rate), _number(cp, m.total)
        if rate is None and total is None:
            return None
        return _build(m, data_time, rate, total, None, None, _flag(cp, m.total or m.rate))


def _flag(cp: dict[str, str], field: str | None) -> int | None:
    """The data flag of the factor `field` belongs to, as an error code (None when it has none)."""
    if field is None:
        return None
    flag = cp.get(field.split("-", 1)[0] + "-Flag")
    return None if flag is None else DATA_FLAGS.get(flag, 99)


def _build(m: Hj212Meter, ts: datetime, rate: float | None, total: float | None, volume: float | None,
           period: float | None, error: int | None) -> Reading:
    try:
        return Reading(m.site, m.meter, m.role, ts, rate, total, error_code=error, volume_m3=volume,
                       period_s=period)
    except ModelError as err:
        raise PacketError("bad_value", str(err)) from None


def _number(cp: dict[str, str], field: str | None) -> float | None:
    if field is None or field not in cp:
        return None
    text = cp[field]
    try:
        value = float(text)
    except ValueError:
        raise PacketError("bad_value", f"{field}={text[:20]!r} is not a number") from None
    if not math.isfinite(value):
        raise PacketError("bad_value", f"{field}={text[:20]!r} is not a finite number")
    return value


_PW = re.compile(rb"PW=[^;&]*")


def _reject(reason: str, detail: str, frame: bytes, station: str = "") -> Decoded:
    """A reject keeps the packet aside with its password masked: dead letters are shown to people."""
    return Decoded(reject=Rejected(reason, detail, _PW.sub(b"PW=******", frame)), station=station)
