"""Exact registers → value for every type and order, with the TUF-2000M vectors from a real dump."""

from __future__ import annotations

import math

import pytest

from collector.modbus.codec import ByteOrder, DataType, DecodeError, Order, WordOrder, decode, encode

ORDERS = {o.value: (o.byte_order, o.word_order) for o in Order}

# (type, order, registers in wire order, value)
VECTORS = [
    (DataType.U16, "ABCD", [0x1234], 0x1234),
    (DataType.U16, "BADC", [0x3412], 0x1234),
    (DataType.I16, "ABCD", [0xFFC8], -56),
    (DataType.I16, "DCBA", [0xC8FF], -56),
    (DataType.U32, "ABCD", [0x1122, 0x3344], 0x11223344),
    (DataType.U32, "CDAB", [0x3344, 0x1122], 0x11223344),
    (DataType.U32, "BADC", [0x2211, 0x4433], 0x11223344),
    (DataType.U32, "DCBA", [0x4433, 0x2211], 0x11223344),
    (DataType.I32, "ABCD", [0xFFFF, 0xFFFE], -2),
    (DataType.I32, "CDAB", [0xFFFE, 0xFFFF], -2),
    (DataType.I32, "BADC", [0xFFFF, 0xFEFF], -2),
    (DataType.I32, "DCBA", [0xFEFF, 0xFFFF], -2),
    (DataType.U64, "ABCD", [0x0102, 0x0304, 0x0506, 0x0708], 0x0102030405060708),
    (DataType.U64, "CDAB", [0x0708, 0x0506, 0x0304, 0x0102], 0x0102030405060708),
    (DataType.U64, "BADC", [0x0201, 0x0403, 0x0605, 0x0807], 0x0102030405060708),
    (DataType.U64, "DCBA", [0x0807, 0x0605, 0x0403, 0x0201], 0x0102030405060708),
    (DataType.I64, "ABCD", [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFE], -2),
    (DataType.I64, "CDAB", [0xFFFE, 0xFFFF, 0xFFFF, 0xFFFF], -2),
    (DataType.I64, "BADC", [0xFFFF, 0xFFFF, 0xFFFF, 0xFEFF], -2),
    (DataType.I64, "DCBA", [0xFEFF, 0xFFFF, 0xFFFF, 0xFFFF], -2),
    (DataType.F32, "ABCD", [0x3F80, 0x0000], 1.0),
    (DataType.F32, "CDAB", [0x0000, 0x3F80], 1.0),
    (DataType.F32, "BADC", [0x803F, 0x0000], 1.0),
    (DataType.F32, "DCBA", [0x0000, 0x803F], 1.0),
    (DataType.F32, "ABCD", [0xC2F6, 0xE979], -123.456),
    (DataType.F64, "ABCD", [0x3FF0, 0, 0, 0], 1.0),
    (DataType.F64, "CDAB", [0, 0, 0, 0x3FF0], 1.0),
    (DataType.F64, "BADC", [0xF03F, 0, 0, 0], 1.0),
    (DataType.F64, "DCBA", [0, 0, 0, 0xF03F], 1.0),
    (DataType.F64, "ABCD", [0x4093, 0x4A45, 0x84FB, 0x7CE4], 1234.5678901),
    (DataType.BCD16, "ABCD", [0x1234], 1234),
    (DataType.BCD32, "ABCD", [0x1234, 0x5678], 12345678),
    (DataType.BCD32, "CDAB", [0x5678, 0x1234], 12345678),
]


@pytest.mark.parametrize(("dtype", "order", "registers", "value"), VECTORS,
                         ids=[f"{t.value}-{o}-{i}" for i, (t, o, _, _) in enumerate(VECTORS)])
def test_registers_decode_to_the_exact_value(dtype: DataType, order: str, registers: list[int],
                                             value: float) -> None:
    got = decode(registers, dtype, *ORDERS[order])
    if dtype in (DataType.F32,):
        assert math.isclose(got, value, rel_tol=1e-7)
    else:
        assert got == value


@pytest.mark.parametrize(("dtype", "order", "registers", "value"), VECTORS,
                         ids=[f"{t.value}-{o}-{i}" for i, (t, o, _, _) in enumerate(VECTORS)])
def test_encode_is_the_exact_inverse(dtype: DataType, order: str, registers: list[int],
                                     value: float) -> None:
    assert encode(value, dtype, *ORDERS[order]) == registers


def test_tuf2000m_inlet_temperature_from_real_dump() -> None:
    # REG33 = 0x3CD0, REG34 = 0x40E3: low word first → float 0x40E33CD0
    got = decode([0x3CD0, 0x40E3], DataType.F32, ByteOrder.AB, WordOrder.LOW_FIRST)
    assert math.isclose(got, 7.1011734, rel_tol=1e-7)


def test_tuf2000m_long_from_real_dump() -> None:
    assert decode([65480, 65535], DataType.I32, ByteOrder.AB, WordOrder.LOW_FIRST) == -56


def test_wrong_word_order_gives_a_plausible_but_wrong_float() -> None:
    # the trap the manuals warn about: high word right, mantissa garbage
    wrong = decode([0x3CD0, 0x40E3], DataType.F32, ByteOrder.AB, WordOrder.HIGH_FIRST)
    assert not math.isclose(wrong, 7.1011734, rel_tol=1e-3)


def test_order_names_map_to_byte_and_word_order() -> None:
    assert (Order.CDAB.byte_order, Order.CDAB.word_order) == (ByteOrder.AB, WordOrder.LOW_FIRST)
    assert (Order.BADC.byte_order, Order.BADC.word_order) == (ByteOrder.BA, WordOrder.HIGH_FIRST)
    assert Order.of(ByteOrder.BA, WordOrder.LOW_FIRST) is Order.DCBA


@pytest.mark.parametrize(("registers", "dtype"), [([1], DataType.U32), ([1, 2], DataType.U16),
                                                   ([0x12AB], DataType.BCD16)])
def test_bad_registers_raise_decode_error(registers: list[int], dtype: DataType) -> None:
    with pytest.raises(DecodeError):
        decode(registers, dtype)


@pytest.mark.parametrize(("value", "dtype"), [(70000, DataType.U16), (-1, DataType.U32),
                                              (123456789, DataType.BCD16), (math.nan, DataType.I32)])
def test_values_out_of_range_do_not_encode(value: float, dtype: DataType) -> None:
    with pytest.raises(DecodeError):
        encode(value, dtype)


@pytest.mark.parametrize(("dtype", "order", "registers", "value"), VECTORS,
                         ids=[f"{t.value}-{o}-{i}" for i, (t, o, _, _) in enumerate(VECTORS)])
def test_compiled_decoder_agrees_at_any_offset(dtype: DataType, order: str, registers: list[int],
                                               value: float) -> None:
    from collector.modbus.codec import compile_decoder

    fn = compile_decoder(dtype, *ORDERS[order])
    assert fn(registers, 0) == decode(registers, dtype, *ORDERS[order])
    assert fn([7, 7, *registers, 9], 2) == decode(registers, dtype, *ORDERS[order])
