"""Register profiles as the `RegisterCodec` of transparent DTUs: the MQTT ingester hands over a raw
register block, the same profile that decodes a polled meter decodes it (and encodes it in simulators).

A DTU block carries registers of one function code (holding unless the profile reads only input
registers), starting at the PDU address the payload gives. It carries no identity registers (totalizer
unit and multiplier): those take the profile's factory defaults, and where the profile has a cross-check
(TUF-2000M: integer + fraction total against its REAL4 m³ copy) a disagreement means the meter is set
differently, so the m³ copy is used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from collector.modbus.codec import DecodeError
from collector.modbus.profile import Function, Profile, combine, decode_fields, encode_values
from collector.modbus.registry import ProfileRegistry

__all__ = ["ProfileCodec"]

Values = Mapping[str, float | int | None]
_READING_FIELDS = ("rate_m3h", "total_m3", "signal_pct", "error_code")


def _function(profile: Profile) -> Function:
    functions = {f.function for f in profile.poll_fields.values()}
    return functions.pop() if len(functions) == 1 else Function.HOLDING


class ProfileCodec:
    def __init__(self, profiles: ProfileRegistry) -> None:
        self.profiles = profiles

    def knows(self, profile: str) -> bool:
        return profile in self.profiles

    def decode(self, profile: str, start: int, registers: Sequence[int]) -> Values:
        p = self.profiles.get(profile)
        fn = _function(p)
        fields = {n: f for n, f in p.poll_fields.items() if f.function is fn}
        try:
            decoded = decode_fields(fields, {(fn, start): list(registers)})
        except DecodeError as exc:
            raise ValueError(f"register block at {start} ({len(registers)} registers) does not hold "
                             f"profile {profile!r}: {exc}") from None
        defaults = {n: v for n, v in p.simulator.items() if n in p.identity_fields}
        values = combine(p, {**defaults, **decoded})
        if p.check is not None and not p.check.agrees(values):
            values[p.check.value] = values.get(p.check.against)
        return {k: values.get(k) for k in _READING_FIELDS if k in values}

    def encode(self, profile: str, values: Values) -> tuple[int, list[int]]:
        p = self.profiles.get(profile)
        fn = _function(p)
        image: dict[tuple[Function, int], int] = {}
        given = {k: float(v) for k, v in values.items() if v is not None}
        if p.check is not None and p.check.value in given:  # a meter shows both copies of the total
            given.setdefault(p.check.against, given[p.check.value])
        encode_values(p, given, dict(p.simulator), image)
        fields = [f for f in p.poll_fields.values() if f.function is fn]
        start, end = min(f.address for f in fields), max(f.end for f in fields)
        return start, [image.get((fn, a), 0) for a in range(start, end)]
