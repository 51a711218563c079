"""Registers ⇄ values: the one place that knows about data types, byte order and word order.

Pure functions over 16-bit register values, built on `struct` (never on pymodbus' converters, which
reorder a whole register list rather than one value's words). Naming follows the usual letters: the
value's bytes, most significant first, are A B C D (E F G H for 64-bit types).

- `ByteOrder.AB`: each register carries its two bytes most significant first (the Modbus default);
  `ByteOrder.BA` swaps them.
- `WordOrder.HIGH_FIRST`: the register at the lower address holds the most significant word;
  `WordOrder.LOW_FIRST` puts the least significant word first (TUF-2000M, most Chinese meters).
- `Order` names the four combinations for 32-bit values: ABCD, CDAB, BADC, DCBA.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence
from enum import StrEnum

__all__ = [
    "ByteOrder",
    "DataType",
    "DecodeError",
    "Decoder",
    "Order",
    "WordOrder",
    "compile_decoder",
    "decode",
    "encode",
    "register_count",
]


class DecodeError(ValueError):
    """Registers do not hold a value of the expected type (wrong count, bad BCD digit, …)."""


class DataType(StrEnum):
    U16 = "u16"
    I16 = "i16"
    U32 = "u32"
    I32 = "i32"
    U64 = "u64"
    I64 = "i64"
    F32 = "f32"
    F64 = "f64"
    BCD16 = "bcd16"  # 4 decimal digits, one per nibble
    BCD32 = "bcd32"  # 8 decimal digits (TUF-2000M serial number)


class ByteOrder(StrEnum):
    AB = "AB"
    BA = "BA"


class WordOrder(StrEnum):
    HIGH_FIRST = "high-first"
    LOW_FIRST = "low-first"


class Order(StrEnum):
    """The four 32-bit layouts by their usual names: the bytes in wire order."""

    ABCD = "ABCD"
    CDAB = "CDAB"
    BADC = "BADC"
    DCBA = "DCBA"

    @property
    def byte_order(self) -> ByteOrder:
        return ByteOrder.AB if self in (Order.ABCD, Order.CDAB) else ByteOrder.BA

    @property
    def word_order(self) -> WordOrder:
        return WordOrder.HIGH_FIRST if self in (Order.ABCD, Order.BADC) else WordOrder.LOW_FIRST

    @classmethod
    def of(cls, byte_order: ByteOrder, word_order: WordOrder) -> Order:
        for o in cls:
            if o.byte_order is byte_order and o.word_order is word_order:
                return o
        raise AssertionError("unreachable")  # pragma: no cover


_STRUCT = {
    DataType.U16: "H", DataType.I16: "h", DataType.U32: "I", DataType.I32: "i",
    DataType.U64: "Q", DataType.I64: "q", DataType.F32: "f", DataType.F64: "d",
    DataType.BCD16: "H", DataType.BCD32: "I",
}
_COUNT = {
    DataType.U16: 1, DataType.I16: 1, DataType.U32: 2, DataType.I32: 2,
    DataType.U64: 4, DataType.I64: 4, DataType.F32: 2, DataType.F64: 4,
    DataType.BCD16: 1, DataType.BCD32: 2,
}
_FLOATS = frozenset({DataType.F32, DataType.F64})
_BCD = frozenset({DataType.BCD16, DataType.BCD32})


def register_count(dtype: DataType) -> int:
    """How many 16-bit registers a value of this type occupies."""
    return _COUNT[dtype]


def _to_big_endian(registers: Sequence[int], byte_order: ByteOrder, word_order: WordOrder) -> bytes:
    words = registers if word_order is WordOrder.HIGH_FIRST else list(reversed(registers))
    if byte_order is ByteOrder.AB:
        return b"".join(w.to_bytes(2, "big") for w in words)
    return b"".join(w.to_bytes(2, "little") for w in words)


def _from_big_endian(data: bytes, byte_order: ByteOrder, word_order: WordOrder) -> list[int]:
    if byte_order is ByteOrder.AB:
        words = [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]
    else:
        words = [int.from_bytes(data[i:i + 2], "little") for i in range(0, len(data), 2)]
    return words if word_order is WordOrder.HIGH_FIRST else words[::-1]


def decode(registers: Sequence[int], dtype: DataType, byte_order: ByteOrder = ByteOrder.AB,
           word_order: WordOrder = WordOrder.HIGH_FIRST) -> int | float:
    """Decode one value from exactly `register_count(dtype)` registers, in wire order."""
    n = _COUNT[dtype]
    if len(registers) != n:
        raise DecodeError(f"{dtype.value} needs {n} register(s), got {len(registers)}")
    data = _to_big_endian(registers, byte_order, word_order)
    if dtype in _BCD:
        digits = data.hex()
        if not digits.isdigit():
            raise DecodeError(f"0x{digits} is not binary-coded decimal")
        return int(digits)
    value: int | float = struct.unpack(">" + _STRUCT[dtype], data)[0]
    return value


def encode(value: int | float, dtype: DataType, byte_order: ByteOrder = ByteOrder.AB,
           word_order: WordOrder = WordOrder.HIGH_FIRST) -> list[int]:
    """Encode one value into registers in wire order (the inverse of `decode`)."""
    if dtype in _BCD:
        width = 2 * 2 * _COUNT[dtype]
        iv = int(value)
        if iv < 0 or len(str(iv)) > width:
            raise DecodeError(f"{value!r} does not fit {width} BCD digits")
        data = bytes.fromhex(f"{iv:0{width}d}")
    elif dtype in _FLOATS:
        data = struct.pack(">" + _STRUCT[dtype], float(value))
    else:
        if isinstance(value, float):
            if not math.isfinite(value):
                raise DecodeError(f"{value!r} is not a finite number")
            value = round(value)
        try:
            data = struct.pack(">" + _STRUCT[dtype], value)
        except struct.error:
            raise DecodeError(f"{value!r} is out of range for {dtype.value}") from None
    return _from_big_endian(data, byte_order, word_order)


Decoder = Callable[[Sequence[int], int], int | float]
"""Decode one value from ``registers[offset:offset + count]``."""


def compile_decoder(dtype: DataType, byte_order: ByteOrder = ByteOrder.AB,
                    word_order: WordOrder = WordOrder.HIGH_FIRST) -> Decoder:
    """A fast decoder for the hot path (same results as `decode`, without per-call setup)."""
    n = _COUNT[dtype]
    if dtype in _BCD:
        def bcd(registers: Sequence[int], offset: int) -> int | float:
            return decode(registers[offset:offset + n], dtype, byte_order, word_order)
        return bcd
    words = struct.Struct((">" if byte_order is ByteOrder.AB else "<") + "H" * n)
    unpack = struct.Struct(">" + _STRUCT[dtype]).unpack
    pack = words.pack
    if n == 1 or word_order is WordOrder.HIGH_FIRST:
        def forward(registers: Sequence[int], offset: int) -> int | float:
            value: int | float = unpack(pack(*registers[offset:offset + n]))[0]
            return value
        return forward

    def backward(registers: Sequence[int], offset: int) -> int | float:
        value: int | float = unpack(pack(*reversed(registers[offset:offset + n])))[0]
        return value
    return backward
