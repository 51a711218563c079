"""Register profiles: how one meter model lays out its values in Modbus registers.

A profile is data (YAML, see `collector/modbus/profiles/`), validated into frozen models here. The same
profile decodes in the collector (`decode_values`) and encodes in the simulator (`encode_values`).

- `fields`: one register value each — function (holding/input), 0-based wire address, type, byte and
  word order, an optional bit slice (`shift`, `mask`), then `value = raw * scale + offset`.
- `values`: what the meter measures, each combined from fields: the sum of `parts` (TUF-2000M totals are
  an integer part plus a fractional part), times ``10 ** (field + offset)`` (`pow10`, the totalizer
  multiplier), times a factor chosen by a unit-code field (`unit_factor`, converting to m³).
  `rate_m3h`, `total_m3`, `signal_pct` and `error_code` feed the `Reading`; other values are shown by
  `gshp poll` and kept beside the reading.
- `identity`: slow-changing fields (serial number, totalizer unit and multiplier, user scale factor)
  read at start and periodically rather than every poll; a change is a `collector.model.MeterChange`
  of the given `ChangeKind`.
- `check`: an optional cross-check between two values (TUF-2000M: the integer+fraction totalizer
  against its REAL4 m³ copy); a mismatch makes the poller re-read identity before it trusts the total.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from collector.modbus.codec import (
    ByteOrder,
    DataType,
    DecodeError,
    Order,
    WordOrder,
    compile_decoder,
    decode,
    encode,
)
from collector.modbus.codec import register_count as _register_count
from collector.model import ChangeKind

__all__ = [
    "READING_VALUES",
    "Check",
    "FieldSpec",
    "Function",
    "Pow10",
    "Profile",
    "UnitFactor",
    "ValueSpec",
    "combine",
    "decode_fields",
    "encode_values",
]

READING_VALUES = ("rate_m3h", "total_m3", "signal_pct", "error_code")
"""Values a profile may define that become fields of `collector.model.Reading`."""


class Function(StrEnum):
    HOLDING = "holding"  # function code 3
    INPUT = "input"      # function code 4

    @property
    def code(self) -> int:
        return 3 if self is Function.HOLDING else 4


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FieldSpec(_Frozen):
    """One value in the register map."""

    function: Function = Function.HOLDING
    address: int = Field(ge=0, le=65535, description="0-based wire (PDU) address")
    type: DataType
    order: Order | None = Field(default=None, description="shorthand for byte_order + word_order")
    byte_order: ByteOrder = ByteOrder.AB
    word_order: WordOrder = WordOrder.HIGH_FIRST
    shift: int = Field(default=0, ge=0, le=63)
    mask: int | None = Field(default=None, ge=1)
    scale: float = 1.0
    offset: float = 0.0
    unit: str | None = None
    description: str | None = None

    @model_validator(mode="after")
    def _order_and_bits(self) -> FieldSpec:
        if self.order is not None:
            object.__setattr__(self, "byte_order", self.order.byte_order)
            object.__setattr__(self, "word_order", self.order.word_order)
        if (self.shift or self.mask is not None) and self.type in (DataType.F32, DataType.F64):
            raise ValueError("shift/mask apply to integer types only")
        if self.address + self.count > 65536:
            raise ValueError("runs past register 65535")
        return self

    @property
    def count(self) -> int:
        return _register_count(self.type)

    @property
    def end(self) -> int:
        """One past the last register."""
        return self.address + self.count

    def decode(self, registers: list[int] | tuple[int, ...]) -> int | float:
        raw = decode(registers, self.type, self.byte_order, self.word_order)
        if self.shift or self.mask is not None:
            raw = int(raw) >> self.shift
            if self.mask is not None:
                raw &= self.mask
        if self.scale == 1.0 and self.offset == 0.0:
            return raw
        return raw * self.scale + self.offset

    def compiled(self) -> Callable[[Sequence[int], int], int | float]:
        """A fast decoder of this field from ``registers[offset:]`` (shift, mask, scale, offset applied)."""
        raw = compile_decoder(self.type, self.byte_order, self.word_order)
        shift, mask, scale, offset = self.shift, self.mask, self.scale, self.offset
        bits = bool(shift or mask is not None)
        linear = not (scale == 1.0 and offset == 0.0)
        if not bits and not linear:
            return raw

        def field(registers: Sequence[int], at: int) -> int | float:
            v = raw(registers, at)
            if bits:
                v = int(v) >> shift
                if mask is not None:
                    v &= mask
            return v * scale + offset if linear else v
        return field

    def encode_into(self, value: int | float, registers: list[int]) -> None:
        """Write `value` into `registers` (this field's slice, in place), keeping bits outside the mask."""
        raw: int | float = (value - self.offset) / self.scale if (self.scale != 1.0 or self.offset) else value
        if self.shift or self.mask is not None:
            mask = (self.mask if self.mask is not None else (1 << (16 * self.count)) - 1) << self.shift
            old = int(decode(registers, self.type, self.byte_order, self.word_order))
            raw = (old & ~mask) | ((round(raw) << self.shift) & mask)
        registers[:] = encode(raw, self.type, self.byte_order, self.word_order)


class Pow10(_Frozen):
    field: str
    offset: int = 0


class UnitFactor(_Frozen):
    field: str
    factors: dict[int, float]


class ValueSpec(_Frozen):
    """A measured value: ``sum(parts) * 10 ** (pow10.field + pow10.offset) * unit_factor[unit code]``."""

    parts: tuple[str, ...] = Field(min_length=1)
    pow10: Pow10 | None = None
    unit_factor: UnitFactor | None = None
    unit: str | None = None
    description: str | None = None

    def inputs(self) -> list[str]:
        names = list(self.parts)
        if self.pow10 is not None:
            names.append(self.pow10.field)
        if self.unit_factor is not None:
            names.append(self.unit_factor.field)
        return names


class Check(_Frozen):
    """Two values that must agree within ``abs_tol + rel_tol * |against|``."""

    value: str
    against: str
    rel_tol: float = Field(default=1e-5, ge=0)
    abs_tol: float = Field(default=0.01, ge=0)

    def agrees(self, values: Mapping[str, int | float | None]) -> bool:
        a, b = values.get(self.value), values.get(self.against)
        if a is None or b is None:
            return True
        return abs(a - b) <= self.abs_tol + self.rel_tol * abs(b)


class Profile(_Frozen):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    description: str = ""
    source: str = ""
    fields: dict[str, FieldSpec]
    values: dict[str, ValueSpec]
    identity: dict[str, ChangeKind] = Field(default_factory=dict)
    check: Check | None = None
    simulator: dict[str, float] = Field(
        default_factory=dict, description="field values the simulator writes where no value sets them")

    @model_validator(mode="after")
    def _references(self) -> Profile:
        problems: list[str] = []
        for fname in self.simulator:
            if fname not in self.fields:
                problems.append(f"simulator names unknown field {fname!r}")
        for vname, spec in self.values.items():
            for ref in spec.inputs():
                if ref not in self.fields:
                    problems.append(f"values.{vname} uses unknown field {ref!r}")
        for fname in self.identity:
            if fname not in self.fields:
                problems.append(f"identity names unknown field {fname!r}")
        if self.check is not None:
            for ref in (self.check.value, self.check.against):
                if ref not in self.values:
                    problems.append(f"check names unknown value {ref!r}")
        if not any(v in self.values for v in ("rate_m3h", "total_m3")):
            problems.append("needs a `rate_m3h` or `total_m3` value")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def poll_fields(self) -> dict[str, FieldSpec]:
        """Fields read on every poll (everything but identity)."""
        return {n: f for n, f in self.fields.items() if n not in self.identity}

    @property
    def identity_fields(self) -> dict[str, FieldSpec]:
        return {n: f for n, f in self.fields.items() if n in self.identity}


def decode_fields(fields: Mapping[str, FieldSpec],
                  blocks: Mapping[tuple[Function, int], list[int]]) -> dict[str, int | float]:
    """Decode fields from register blocks keyed by (function, start address)."""
    out: dict[str, int | float] = {}
    for name, spec in fields.items():
        for (function, start), regs in blocks.items():
            if function is spec.function and start <= spec.address and spec.end <= start + len(regs):
                out[name] = spec.decode(regs[spec.address - start:spec.end - start])
                break
        else:
            raise DecodeError(f"field {name!r} ({spec.function.value} {spec.address}) was not read")
    return out


def combine(profile: Profile, fields: Mapping[str, int | float]) -> dict[str, int | float | None]:
    """Evaluate the profile's values from decoded fields; a value whose inputs are missing is None."""
    out: dict[str, int | float | None] = {}
    for name, spec in profile.values.items():
        try:
            parts = [fields[p] for p in spec.parts]
        except KeyError:
            out[name] = None
            continue
        try:
            out[name] = _value(spec, parts, fields)
        except (OverflowError, ValueError) as exc:  # exponent or unit code out of range, inf − inf
            raise DecodeError(f"value {name!r} cannot be computed from its registers ({exc})") from None
    return out


def _value(spec: ValueSpec, parts: list[int | float], fields: Mapping[str, int | float]) -> int | float | None:
    value: int | float = parts[0] if len(parts) == 1 else math.fsum(parts)
    if spec.pow10 is not None:
        n = fields.get(spec.pow10.field)
        if n is None:
            return None
        value = value * 10.0 ** (int(n) + spec.pow10.offset)
    if spec.unit_factor is not None:
        code = fields.get(spec.unit_factor.field)
        factor = spec.unit_factor.factors.get(int(code)) if code is not None else None
        if factor is None:
            return None
        value = value * factor
    return value


def encode_values(profile: Profile, values: Mapping[str, float], fields: Mapping[str, int | float],
                  image: dict[tuple[Function, int], int]) -> None:
    """Write values and fields into a register image {(function, address): register} (simulator side).

    `fields` gives the raw fields that are not derived from a value (identity fields, multiplier
    exponents, bit-sliced status fields); `values` are split back over their parts: with two parts the
    first takes the integer part and the second the fraction (TUF-2000M LONG + REAL4).
    """
    assigned: dict[str, int | float] = dict(fields)
    for name, spec in profile.values.items():
        if name not in values:
            continue
        v = values[name]
        if spec.pow10 is not None:
            v /= 10.0 ** (int(assigned.get(spec.pow10.field, 0)) + spec.pow10.offset)
        if spec.unit_factor is not None:
            code = int(assigned.get(spec.unit_factor.field, 0))
            v /= spec.unit_factor.factors.get(code, 1.0)
        if len(spec.parts) == 1:
            assigned[spec.parts[0]] = v
        else:
            whole = math.floor(v)
            assigned[spec.parts[0]] = whole
            assigned[spec.parts[1]] = v - whole
            for extra in spec.parts[2:]:
                assigned[extra] = 0
    for name, value in assigned.items():
        spec_f = profile.fields.get(name)
        if spec_f is None:
            continue
        regs = [image.get((spec_f.function, a), 0) for a in range(spec_f.address, spec_f.end)]
        spec_f.encode_into(value, regs)
        for i, r in enumerate(regs):
            image[(spec_f.function, spec_f.address + i)] = r
