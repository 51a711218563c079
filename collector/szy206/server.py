"""SZY 206-2016 for the telemetry server: a link frame in, readings and the confirmation out.

Supported: AFN 02H (link check: log in, log out, keep alive; confirmed at once) and AFN C0H (self-reported
real-time data) with function code 3 (flow and water volume): per flow point the instantaneous flow (5
bytes BCD, 3 decimals) and the cumulative volume (5 bytes BCD, m³), then the alarm and status words (4
bytes) and the time label (5 bytes, the reading's time). The confirmation (same AFN, DIR cleared) goes
back once the readings are committed. Rejected: bad_crc, malformed, split_frame, unknown_station,
unsupported_command, bad_value, bad_timestamp, ts_future, ts_past.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo

from collector.model import ModelError, Reading
from collector.szy206.codec import (
    AFN_LINK,
    AFN_REALTIME,
    FN_FLOW,
    Frame,
    FrameError,
    Szy206Framing,
    address_text,
    bcd_signed,
    confirmation,
    parse_frame,
    parse_time_label,
    resolve_time,
)
from collector.szy206.plan import Szy206Plan
from collector.telemetry.server import Decoded, Rejected

__all__ = ["Szy206Protocol"]

_POINT = 10  # flow 5 bytes + volume 5 bytes
_TRAILER = 4 + 5  # alarm and status words, time label


class Szy206Protocol:
    name = "szy206"

    def __init__(self, plan: Szy206Plan, tz: tzinfo, max_clock_skew: timedelta, max_age: timedelta) -> None:
        self.plan = plan
        self.tz = tz
        self.max_skew = max_clock_skew
        self.max_age = max_age

    def framing(self, max_buffer: int) -> Szy206Framing:
        return Szy206Framing(max_buffer)

    def decode(self, raw: bytes, received: float) -> Decoded:
        try:
            frame = parse_frame(raw)
        except FrameError as err:
            return Decoded(reject=Rejected(err.reason, err.detail, raw))
        station = address_text(frame.address)
        meters = self.plan.meters.get(frame.address)
        if meters is None:
            return Decoded(reject=Rejected("unknown_station", f"address {station} belongs to no configured meter",
                                           raw), station=station)
        if not frame.uplink:
            return Decoded(reject=Rejected("malformed", "a downlink frame (DIR 0) sent to the centre", raw),
                           station=station)
        if frame.afn == AFN_LINK:
            return Decoded(answer=confirmation(frame, frame.data[:1] or b"\x00"), station=station)
        if frame.afn != AFN_REALTIME or frame.function != FN_FLOW:
            return Decoded(reject=Rejected("unsupported_command", f"AFN {frame.afn:02X}H with function code "
                                           f"{frame.function} carries no flow data", raw), station=station)
        try:
            readings = self._readings(frame, received)
        except FrameError as err:
            return Decoded(reject=Rejected(err.reason, err.detail, raw), station=station)
        return Decoded(tuple(readings), confirmation(frame), station=station)

    def _readings(self, frame: Frame, received: float) -> list[Reading]:
        data = frame.data
        points, rest = divmod(len(data) - _TRAILER, _POINT)
        if points < 1 or rest:
            raise FrameError("malformed", f"{len(data)} data bytes are not flow points of 10 bytes, the alarm "
                                          "and status words and a time label")
        now = datetime.fromtimestamp(received, UTC)
        tp = parse_time_label(data[-5:])
        ts = resolve_time(tp, now, self.tz, self.max_skew)
        if now - ts > self.max_age:
            raise FrameError("ts_past", f"time label {ts.isoformat()} is older than max_age")
        out = []
        for m in self.plan.meters[frame.address]:
            if m.point > points:
                raise FrameError("malformed", f"meter {m.site}/{m.meter} is flow point {m.point}, the frame "
                                              f"has {points}")
            item = data[(m.point - 1) * _POINT:m.point * _POINT]
            rate = bcd_signed(item[:5], 3) * self.plan.flow_unit.to_m3h
            total = bcd_signed(item[5:], 0)
            try:
                out.append(Reading(m.site, m.meter, m.role, ts, round(rate, 6), total))
            except ModelError as err:
                raise FrameError("bad_value", str(err)) from None
        return out
