"""Raw Modbus registers from transparent DTUs: hex, base64 or binary blocks, optionally RTU frames.

Turning text into a list of 16-bit registers happens here. Turning registers into flow values is the
job of the Modbus register profiles; this module only names that job as the `RegisterCodec` protocol,
so any implementation of register profiles can be plugged into the MQTT ingester and the simulator.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Protocol

__all__ = [
    "NO_REGISTER_CODEC",
    "Encoding",
    "Frame",
    "RegisterCodec",
    "crc16",
    "decode_block",
    "encode_block",
]

Values = Mapping[str, float | int | None]
"""Decoded values keyed like `Reading` fields: rate_m3h, total_m3, signal_pct, error_code."""


class Encoding(StrEnum):
    HEX = "hex"
    BASE64 = "base64"
    BINARY = "binary"


class Frame(StrEnum):
    NONE = "none"  # the bytes are the register block itself (big-endian 16-bit registers)
    RTU = "rtu"  # a Modbus RTU read response: unit, function, byte count, data, CRC-16 (low byte first)


class RegisterCodec(Protocol):
    """Register profiles by name: decode a register block into values, and back (for simulators)."""

    def knows(self, profile: str) -> bool: ...

    def decode(self, profile: str, start: int, registers: Sequence[int]) -> Values:
        """Values from `registers`, the first at PDU address `start`. Raises ValueError on bad data."""
        ...

    def encode(self, profile: str, values: Values) -> tuple[int, list[int]]:
        """A register block (start address, registers) a meter with these values would answer."""
        ...


class _NoCodec:
    """Stands in until register profiles are plugged in: knows no profile."""

    def knows(self, profile: str) -> bool:
        return False

    def decode(self, profile: str, start: int, registers: Sequence[int]) -> Values:
        raise LookupError(f"no register profiles are available to decode {profile!r}")

    def encode(self, profile: str, values: Values) -> tuple[int, list[int]]:
        raise LookupError(f"no register profiles are available to encode {profile!r}")


NO_REGISTER_CODEC: RegisterCodec = _NoCodec()

_HEX_JUNK = re.compile(r"[\s:-]|0x", re.IGNORECASE)


def crc16(data: bytes) -> int:
    """Modbus CRC-16 (poly 0xA001, init 0xFFFF)."""
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def _to_bytes(data: bytes | str, encoding: Encoding) -> bytes:
    if encoding is Encoding.BINARY:
        return data.encode("latin-1") if isinstance(data, str) else data
    text = data.decode("ascii") if isinstance(data, bytes) else data
    if encoding is Encoding.HEX:
        return bytes.fromhex(_HEX_JUNK.sub("", text))
    return base64.b64decode(text.strip(), validate=True)


def decode_block(data: bytes | str, encoding: Encoding, frame: Frame = Frame.NONE) -> list[int]:
    """Registers from a block; raises ValueError naming what is wrong."""
    try:
        raw = _to_bytes(data, encoding)
    except (ValueError, binascii.Error, UnicodeError) as exc:
        raise ValueError(f"not {encoding.value}: {exc}") from None
    if frame is Frame.RTU:
        if not 5 <= len(raw) <= 256:  # checked before the CRC, which costs a second per 256 KiB here
            raise ValueError(f"an RTU frame has 5 to 256 bytes, got {len(raw)}")
        if crc16(raw[:-2]) != int.from_bytes(raw[-2:], "little"):
            raise ValueError("RTU frame CRC mismatch")
        if raw[1] & 0x80:
            raise ValueError(f"the meter answered Modbus exception {raw[2]}")
        count = raw[2]
        if count != len(raw) - 5:
            raise ValueError(f"RTU byte count {count} does not match the frame ({len(raw) - 5} data bytes)")
        raw = raw[3:-2]
    if not raw:
        raise ValueError("empty register block")
    if len(raw) % 2:
        raise ValueError(f"odd number of bytes ({len(raw)}): registers are 2 bytes each")
    return [int.from_bytes(raw[i:i + 2], "big") for i in range(0, len(raw), 2)]


def encode_block(registers: Sequence[int], encoding: Encoding, frame: Frame = Frame.NONE,
                 unit: int = 1, function: int = 3) -> bytes | str:
    """The inverse of `decode_block` (used by the simulator)."""
    raw = b"".join(int(r).to_bytes(2, "big") for r in registers)
    if frame is Frame.RTU:
        body = bytes([unit, function, len(raw)]) + raw
        raw = body + crc16(body).to_bytes(2, "little")
    if encoding is Encoding.BINARY:
        return raw
    if encoding is Encoding.HEX:
        return raw.hex().upper()
    return base64.b64encode(raw).decode("ascii")
