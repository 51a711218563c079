"""SZY 206-2016 link frames as pure functions: framing, CRC, address, BCD values, time label, answers.

A frame is ``68H L 68H`` + the user data area (control byte C, address A, application function code AFN,
data) + CS + ``16H``; L counts the user data area, CS is its CRC-8 (polynomial x⁷+x⁶+x⁵+x²+1, 0xE5,
initial value 0, most significant bit first). C holds DIR (bit 7: 1 = from the terminal), DIV (bit 6:
split frame, a DIVS byte follows C), FCB (bits 5–4) and the function code (bits 3–0: 3 = flow and water
volume). A is the administrative division code (3 bytes BCD, as written) and the station number (2 bytes,
low byte first). Numbers are BCD, low byte first; the top bit of the last byte is the sign.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from collector.telemetry.server import FrameReject, Rejected

__all__ = ["AFN_LINK", "AFN_REALTIME", "Frame", "FrameError", "Szy206Framing", "TimeLabel", "address_bytes",
           "address_text", "bcd_signed", "confirmation", "crc8", "encode_bcd_signed", "encode_frame",
           "encode_time_label", "parse_frame", "parse_time_label", "resolve_time"]

START, END = 0x68, 0x16
AFN_LINK = 0x02  # link check: log in (F0), log out (F1), keep alive (F2)
AFN_REALTIME = 0xC0  # self-reported real-time data
FN_FLOW = 3  # function code of flow (water volume) parameters
_DIR_UP = 0x80
_DIV = 0x40


class FrameError(FrameReject):
    """An SZY 206 frame that does not follow the standard."""


def _shifted(v: int) -> int:
    for _ in range(8):
        v = ((v << 1) ^ 0xE5) & 0xFF if v & 0x80 else (v << 1) & 0xFF
    return v


_TABLE = bytes(_shifted(v) for v in range(256))


def crc8(data: bytes) -> int:
    """CRC-8 over the user data area: polynomial 0xE5, initial value 0, most significant bit first (per
    byte: XOR it in, then eight shifts, looked up)."""
    crc = 0
    for b in data:
        crc = _TABLE[crc ^ b]
    return crc


def encode_frame(control: int, address: bytes, afn: int, data: bytes) -> bytes:
    """68H L 68H C A AFN data CS 16H."""
    user = bytes([control]) + address + bytes([afn]) + data
    if len(user) > 255:
        raise ValueError(f"an SZY 206 user data area holds at most 255 bytes, got {len(user)}")
    return bytes([START, len(user), START]) + user + bytes([crc8(user), END])


def address_bytes(division: str, station: int) -> bytes:
    """A: the six-digit division code as three BCD bytes, then the station number, low byte first."""
    if len(division) != 6 or not division.isdigit():
        raise ValueError(f"division {division!r} must be six digits")
    if not 0 <= station <= 0xFFFF:
        raise ValueError(f"station {station} must be 0-65535")
    return bytes.fromhex(division) + station.to_bytes(2, "little")


def address_text(address: bytes) -> str:
    """``DDDDDD-SSSSS`` for logs and dead letters."""
    return f"{address[:3].hex()}-{int.from_bytes(address[3:5], 'little'):05d}"


def _bcd_digits(data: bytes) -> str:
    return "".join(f"{b:02x}" for b in reversed(data))


def bcd_signed(data: bytes, decimals: int) -> float:
    """A signed BCD number, low byte first, the sign in the top bit of the last byte."""
    negative = bool(data[-1] & 0x80)
    digits = _bcd_digits(data[:-1] + bytes([data[-1] & 0x7F]))
    if not digits.isdigit():
        raise FrameError("bad_value", f"{data.hex()} is not BCD")
    value = int(digits) / float(10**decimals)
    return -value if negative else value


def encode_bcd_signed(value: float, size: int, decimals: int) -> bytes:
    n = round(abs(value) * 10**decimals)
    digits = f"{n:0{size * 2}d}"
    if len(digits) > size * 2 or int(digits[0]) > 7:
        raise ValueError(f"{value} does not fit {size} BCD bytes with {decimals} decimals")
    out = bytearray(bytes.fromhex(digits)[::-1])
    if value < 0:
        out[-1] |= 0x80
    return bytes(out)


@dataclass(frozen=True, slots=True)
class TimeLabel:
    """TP: second, minute, hour, day of month (BCD) and the allowed transmission delay in minutes."""

    second: int
    minute: int
    hour: int
    day: int
    delay_min: int


def parse_time_label(data: bytes) -> TimeLabel:
    try:
        s, mi, h, d, delay = (int(f"{b:02x}") for b in data[:5])
    except ValueError:
        raise FrameError("bad_timestamp", f"time label {data.hex()} is not BCD") from None
    if not (s < 60 and mi < 60 and h < 24 and 1 <= d <= 31):
        raise FrameError("bad_timestamp", f"time label {data.hex()} is not a valid time")
    return TimeLabel(s, mi, h, d, delay)


def encode_time_label(ts: datetime, delay_min: int = 0) -> bytes:
    return bytes(int(str(v), 16) for v in (ts.second, ts.minute, ts.hour, ts.day, delay_min))


def resolve_time(tp: TimeLabel, received: datetime, tz: tzinfo, skew: timedelta) -> datetime:
    """The time a label names: its day of month in the receive month, or the month before when that lies
    ahead of the receive time (plus `skew`)."""
    local = received.astimezone(tz)
    year, month = local.year, local.month
    for _ in range(3):
        try:
            t = datetime(year, month, tp.day, tp.hour, tp.minute, tp.second, tzinfo=tz)
        except ValueError:
            t = None  # no such day in that month
        if t is not None and t <= received + skew:
            return t
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    raise FrameError("bad_timestamp", f"time label day {tp.day} fits no recent month")


@dataclass(frozen=True, slots=True)
class Frame:
    control: int
    address: bytes
    afn: int
    data: bytes

    @property
    def uplink(self) -> bool:
        return bool(self.control & _DIR_UP)

    @property
    def function(self) -> int:
        return self.control & 0x0F


def parse_frame(frame: bytes) -> Frame:
    """The fields of one frame (framing already checked): CRC, then C, A, AFN, data."""
    user = frame[3:-2]
    if crc8(user) != frame[-2]:
        raise FrameError("bad_crc", f"CS {frame[-2]:02X} does not match the user data area ({crc8(user):02X})")
    if len(user) < 7:
        raise FrameError("malformed", f"a user data area of {len(user)} bytes has no room for C, A and AFN")
    control = user[0]
    if control & _DIV:
        raise FrameError("split_frame", "split frames (DIV) are not supported")
    return Frame(control, bytes(user[1:6]), user[6], bytes(user[7:]))


def confirmation(frame: Frame, data: bytes = b"\x00") -> bytes:
    """The centre's answer to an uplink frame: same address, AFN and function code, DIR cleared."""
    return encode_frame(frame.control & ~_DIR_UP & 0xFF, frame.address, frame.afn, data)


class Szy206Framing:
    """One connection's bytes cut into frames (both start bytes, length and end byte checked, CRC not
    yet); bytes that are not a frame come out as `Rejected`, skipped up to the next 68H."""

    def __init__(self, max_buffer: int) -> None:
        self.max_buffer = max_buffer
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes | Rejected]:
        buf = self._buf
        buf += data
        out: list[bytes | Rejected] = []
        while buf:
            start = buf.find(bytes([START]))
            if start < 0:
                out.append(Rejected("garbage", "bytes outside any 68H frame", bytes(buf)))
                buf.clear()
                break
            if start > 0:
                out.append(Rejected("garbage", "bytes before 68H skipped", bytes(buf[:start])))
                del buf[:start]
            if len(buf) < 3:
                break
            if buf[2] != START:
                out.append(Rejected("malformed", "no second 68H after the length", bytes(buf[:3])))
                del buf[:1]
                continue
            total = buf[1] + 5
            if len(buf) < total:
                break
            if buf[total - 1] != END:
                out.append(Rejected("bad_length", f"length {buf[1]} does not end at 16H", bytes(buf[:total])))
                del buf[:1]
                continue
            out.append(bytes(buf[:total]))
            del buf[:total]
        return out
