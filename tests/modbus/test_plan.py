"""Request planning: coalescing, gap filling and the 125-register limit."""

from __future__ import annotations

import pytest

from collector.modbus.codec import DataType
from collector.modbus.plan import ReadRequest, plan_reads
from collector.modbus.profile import FieldSpec, Function


def f(address: int, dtype: str = "u16", function: str = "holding") -> FieldSpec:
    return FieldSpec(address=address, type=DataType(dtype), function=Function(function))


def test_neighbours_merge_into_one_read() -> None:
    plan = plan_reads({"a": f(0, "f32"), "b": f(2, "f32"), "c": f(4)})
    assert plan == (ReadRequest(Function.HOLDING, 0, 5, ("a", "b", "c")),)


def test_gap_up_to_max_fill_is_read_through() -> None:
    assert len(plan_reads({"a": f(0), "b": f(11)}, max_fill=10)) == 1
    assert len(plan_reads({"a": f(0), "b": f(12)}, max_fill=10)) == 2


def test_zero_fill_reads_only_touching_fields() -> None:
    plan = plan_reads({"a": f(0, "u32"), "b": f(2), "c": f(4)}, max_fill=0)
    assert [(r.address, r.count) for r in plan] == [(0, 3), (4, 1)]


def test_one_read_per_function_code() -> None:
    plan = plan_reads({"h": f(0), "i": f(0, function="input"), "h2": f(1)})
    assert [(r.function, r.address, r.count) for r in plan] == [(Function.HOLDING, 0, 2),
                                                                 (Function.INPUT, 0, 1)]


def test_never_more_than_125_registers() -> None:
    fields = {f"r{i}": f(i * 10, "f64") for i in range(40)}  # 0..393
    plan = plan_reads(fields, max_fill=100)
    assert all(r.count <= 125 for r in plan)
    covered = {n for r in plan for n in r.fields}
    assert covered == set(fields)
    for r in plan:
        for n in r.fields:
            assert r.address <= fields[n].address and fields[n].end <= r.end


def test_fields_sharing_a_register_need_no_extra_read() -> None:
    step = FieldSpec(address=91, type=DataType.U16, shift=8, mask=0xFF)
    q = FieldSpec(address=91, type=DataType.U16, mask=0xFF)
    assert plan_reads({"step": step, "q": q}) == (ReadRequest(Function.HOLDING, 91, 1, ("step", "q")),)


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        plan_reads({"a": f(0)}, max_count=126)
    with pytest.raises(ValueError):
        plan_reads({"a": f(0)}, max_fill=-1)
