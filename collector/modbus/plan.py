"""Request planning: which reads cover a meter's fields (pure, no I/O).

Fields are grouped by function code and sorted by address; neighbours are merged into one read when
the registers between them number at most `max_fill` and the read stays within `max_count` registers
(125, the Modbus limit for function codes 3 and 4). Reading a few unused registers is much cheaper than
another round trip on a 9600-baud line or a 4G link.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from collector.modbus.profile import FieldSpec, Function

__all__ = ["MAX_REGISTERS", "ReadRequest", "plan_reads"]

MAX_REGISTERS = 125


@dataclass(frozen=True, slots=True)
class ReadRequest:
    function: Function
    address: int
    count: int
    fields: tuple[str, ...]

    @property
    def end(self) -> int:
        return self.address + self.count

    def __str__(self) -> str:
        return f"{self.function.value} {self.address}..{self.end - 1}"


def plan_reads(fields: Mapping[str, FieldSpec], max_fill: int = 50,
               max_count: int = MAX_REGISTERS) -> tuple[ReadRequest, ...]:
    """Cover `fields` with as few reads as the fill and size limits allow, in (function, address) order."""
    if not 1 <= max_count <= MAX_REGISTERS:
        raise ValueError(f"max_count must be 1..{MAX_REGISTERS}, got {max_count}")
    if max_fill < 0:
        raise ValueError(f"max_fill must not be negative, got {max_fill}")
    out: list[ReadRequest] = []
    for function in Function:
        items = sorted(((n, f) for n, f in fields.items() if f.function is function),
                       key=lambda nf: (nf[1].address, nf[1].end))
        start = end = -1
        names: list[str] = []
        for name, spec in items:
            if names and spec.address - end <= max_fill and max(end, spec.end) - start <= max_count:
                end = max(end, spec.end)
                names.append(name)
                continue
            if names:
                out.append(ReadRequest(function, start, end - start, tuple(names)))
            start, end, names = spec.address, spec.end, [name]
        if names:
            out.append(ReadRequest(function, start, end - start, tuple(names)))
    return tuple(out)
