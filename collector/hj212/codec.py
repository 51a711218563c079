"""HJ 212-2017 packets as pure functions: framing, CRC, the data segment's fields, the data answer.

A packet is ``##`` + the data segment's length as four decimal digits + the data segment + its CRC as
four hex digits + CR LF. The data segment is ``QN=…;ST=…;CN=…;PW=…;MN=…;Flag=…;CP=&&…&&``; inside CP,
factors are separated by ``;`` and a factor's fields (``w00000-Rtd=12.5``, ``w00000-Flag=N``) by ``,``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo

from collector.telemetry.server import FrameReject, Rejected

__all__ = [
    "MAX_SEGMENT",
    "Hj212Framing",
    "Packet",
    "PacketError",
    "crc16",
    "data_answer",
    "encode_packet",
    "parse_datatime",
    "parse_segment",
]

MAX_SEGMENT = 9999  # four decimal digits
_OVERHEAD = 12  # ## + length + CRC + CR LF
_HEADER = ("QN", "ST", "CN", "PW", "MN", "Flag", "PNUM", "PNO")


DATA_FLAGS = {"N": 0, "F": 1, "M": 2, "S": 3, "D": 4, "C": 5, "T": 6, "B": 7}
"""A factor's data flag (``-Flag``) as the reading's error code: N normal (0), F stopped, M maintenance,
S set by hand, D fault, C calibration, T over the range, B communication fault; any other flag is 99."""


class PacketError(FrameReject):
    """An HJ 212 data segment that does not follow the standard."""


def _crc16_bitwise(data: bytes) -> int:
    """The standard's CRC over the data segment: start 0xFFFF; per byte, crc = (crc >> 8) ^ byte, then
    eight right shifts, XOR 0xA001 after each shift that drops a 1."""
    crc = 0xFFFF
    for b in data:
        crc = (crc >> 8) ^ b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def _shifted(v: int) -> int:
    for _ in range(8):
        v = (v >> 1) ^ 0xA001 if v & 1 else v >> 1
    return v


_TABLE = tuple(_shifted(v) for v in range(256))  # the eight shifts of the low byte, done once


def crc16(data: bytes) -> int:
    """The standard's CRC (`_crc16_bitwise`) with the eight shifts looked up: crc >> 8 drops the low byte,
    so after the XOR with the input byte the state fits one byte and the table holds its eight shifts."""
    crc = 0xFFFF
    table = _TABLE
    for b in data:
        crc = table[(crc >> 8) ^ b]
    return crc


def encode_packet(segment: str) -> bytes:
    """A data segment framed as a packet."""
    body = segment.encode("ascii")
    if len(body) > MAX_SEGMENT:
        raise ValueError(f"an HJ 212 data segment holds at most {MAX_SEGMENT} bytes, got {len(body)}")
    return b"##%04d%s%04X\r\n" % (len(body), body, crc16(body))


@dataclass(frozen=True, slots=True)
class Packet:
    qn: str
    st: str
    cn: str
    pw: str
    mn: str
    flag: int
    cp: dict[str, str]
    split: bool = False  # PNUM/PNO: one of several packets

    @property
    def wants_answer(self) -> bool:
        return bool(self.flag & 1)


def parse_segment(segment: str) -> Packet:
    """The fields of a data segment (its CRC already checked)."""
    head, sep, rest = segment.partition("CP=&&")
    if not sep or not rest.endswith("&&"):
        raise PacketError("malformed", "no CP=&&…&& data area")
    fields: dict[str, str] = {}
    for part in head.split(";"):
        if not part:
            continue
        key, eq, value = part.partition("=")
        if not eq or key not in _HEADER:
            raise PacketError("malformed", f"unexpected header field {part[:40]!r}")
        fields[key] = value
    for needed in ("ST", "CN", "MN"):
        if needed not in fields:
            raise PacketError("malformed", f"no {needed}= field")
    try:
        flag = int(fields.get("Flag", "4"))
    except ValueError:
        raise PacketError("malformed", f"Flag={fields['Flag'][:8]!r} is not a number") from None
    cp: dict[str, str] = {}
    body = rest[:-2]
    for item in body.replace(",", ";").split(";"):
        if not item:
            continue
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise PacketError("malformed", f"CP item {item[:40]!r} is not KEY=VALUE")
        cp[key] = value
    return Packet(fields.get("QN", ""), fields["ST"], fields["CN"], fields.get("PW", ""), fields["MN"], flag, cp,
                  split="PNUM" in fields or bool(flag & 2))


def parse_datatime(text: str, tz: tzinfo) -> datetime:
    """``YYYYMMDDhhmmss`` (some loggers add milliseconds: ``…sszzz``) in the logger's local time (the
    configured zone) as an aware datetime."""
    if len(text) not in (14, 17) or not text.isdigit():
        raise PacketError("bad_timestamp", f"DataTime={text[:20]!r} is not YYYYMMDDhhmmss")
    try:
        t = datetime.strptime(text[:14], "%Y%m%d%H%M%S").replace(tzinfo=tz)
    except ValueError:
        raise PacketError("bad_timestamp", f"DataTime={text!r} is not a valid time") from None
    return t.replace(microsecond=int(text[14:]) * 1000) if len(text) == 17 else t


def data_answer(packet: Packet) -> bytes:
    """The data answer (CN 9014, ST 91) to an upload that asked for one, carrying the upload's QN."""
    return encode_packet(f"QN={packet.qn};ST=91;CN=9014;PW={packet.pw};MN={packet.mn};Flag=4;CP=&&&&")


class Hj212Framing:
    """One connection's bytes cut into packets: a packet's bytes (length and trailer checked, CRC not
    yet), or `Rejected` for bytes that are not a packet (skipped up to the next ``##``)."""

    def __init__(self, max_buffer: int) -> None:
        self.max_buffer = max_buffer
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes | Rejected]:
        buf = self._buf
        buf += data
        out: list[bytes | Rejected] = []
        while buf:
            start = buf.find(b"##")
            if start < 0:
                if len(buf) > 1:  # keep a last '#' that may start the next packet
                    keep = 1 if buf.endswith(b"#") else 0
                    out.append(Rejected("garbage", "bytes outside any ## packet", bytes(buf[:len(buf) - keep])))
                    del buf[:len(buf) - keep]
                break
            if start > 0:
                out.append(Rejected("garbage", "bytes before ## skipped", bytes(buf[:start])))
                del buf[:start]
            if len(buf) < 6:
                break
            digits = bytes(buf[2:6])
            if not digits.isdigit():
                out.append(Rejected("bad_length", f"length {digits!r} is not four digits", bytes(buf[:6])))
                del buf[:2]
                continue
            total = int(digits) + _OVERHEAD
            if total > self.max_buffer:
                out.append(Rejected("too_large", f"a {total}-byte packet exceeds max_buffer ({self.max_buffer})",
                                    bytes(buf[:64]), fatal=True))
                buf.clear()
                break
            if len(buf) < total:
                break
            if buf[total - 2:total] != b"\r\n":
                nxt = buf.find(b"##", 2)  # the bytes up to the next packet belong to this broken one
                end = nxt if nxt > 0 else len(buf) - (1 if buf.endswith(b"#") else 0)
                out.append(Rejected("bad_length", f"length {int(digits)} does not end at CR LF", bytes(buf[:end])))
                del buf[:end]
                continue
            out.append(bytes(buf[:total]))
            del buf[:total]
        if len(buf) > self.max_buffer:
            out.append(Rejected("too_large", f"more than {self.max_buffer} bytes without a packet", bytes(buf[:64]),
                                fatal=True))
            buf.clear()
        return out
