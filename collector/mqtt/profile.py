"""Payload profiles: how a DTU's message turns into readings, written as data (YAML).

A profile says where the records are in a message (one record, an array, or a map keyed by meter), where
each record keeps its time and values, in which units, and — for transparent DTUs — how raw register
blocks are encoded and which register profile decodes them. Profiles ship in
``collector/mqtt/profiles/*.yaml``; users add their own directory (`mqtt.profiles_dir`). The same
profile drives the ingester's decoder and the simulator's encoder. See docs/mqtt.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from functools import cached_property
from importlib import resources
from pathlib import Path as FsPath
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from collector.mqtt.errors import ProfileError
from collector.mqtt.paths import Path, compile_path
from collector.mqtt.registers import Encoding, Frame
from collector.mqtt.timestamps import TimeFormat
from collector.mqtt.units import RATE_UNITS, VOLUME_UNITS, rate_factor, volume_factor

__all__ = [
    "FieldSpec",
    "Fields",
    "Layout",
    "MissingTime",
    "PayloadFormat",
    "PayloadProfile",
    "RecordsSpec",
    "RegistersSpec",
    "TimeSpec",
    "load_profiles",
    "shipped_profiles",
]


class PayloadFormat(StrEnum):
    JSON = "json"
    REGISTERS = "registers"


class Layout(StrEnum):
    SINGLE = "single"  # the container is one record
    ARRAY = "array"  # a list of records (buffered readings, or several meters with a `key` field)
    MAP = "map"  # an object: meter key → record (or → list of records)
    AUTO = "auto"  # single when an object, array when a list


class MissingTime(StrEnum):
    REJECT = "reject"
    RECEIVE_TIME = "receive_time"  # redeliveries then get a new time: they may be stored twice


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _check_path(v: str) -> str:
    compile_path(v)  # raises ValueError with the reason
    return v


class RecordsSpec(_Frozen):
    path: str = ""
    layout: Layout = Layout.SINGLE
    key: str | None = None  # array layout: the path inside a record that names its meter

    @field_validator("path", "key")
    @classmethod
    def _path(cls, v: str | None) -> str | None:
        return None if v is None else _check_path(v)

    @cached_property
    def compiled(self) -> Path:
        return compile_path(self.path)

    @cached_property
    def key_path(self) -> Path | None:
        return compile_path(self.key) if self.key else None


class TimeSpec(_Frozen):
    path: str | tuple[str, ...] | None = None  # one path, or alternatives (first present wins)
    join: tuple[str, ...] | None = None  # several paths whose text is joined with a space (Date + Time)
    format: TimeFormat = TimeFormat.AUTO
    pattern: str | None = None  # strptime pattern, for format: local
    missing: MissingTime = MissingTime.REJECT

    @model_validator(mode="after")
    def _consistent(self) -> TimeSpec:
        if self.path is not None and self.join is not None:
            raise ValueError("give `path` or `join`, not both")
        if self.format is TimeFormat.LOCAL and not self.pattern:
            raise ValueError("format `local` needs a `pattern` such as '%Y-%m-%d %H:%M:%S'")
        if self.join is not None and self.format is not TimeFormat.LOCAL:
            raise ValueError("`join` builds local-time text: use format `local` with a `pattern`")
        for p in self.paths + (self.join or ()):
            compile_path(p)
        return self

    @property
    def paths(self) -> tuple[str, ...]:
        if self.path is None:
            return ()
        return (self.path,) if isinstance(self.path, str) else self.path

    @cached_property
    def compiled(self) -> tuple[Path, ...]:
        return tuple(compile_path(p) for p in self.paths)

    @cached_property
    def compiled_join(self) -> tuple[Path, ...]:
        return tuple(compile_path(p) for p in self.join or ())


class FieldSpec(_Frozen):
    path: str
    unit: str | None = None  # rate: m3/h, m3/min, m3/s, m3/d, L/h, L/min, L/s; total: m3, L
    scale: float = 1.0  # applied before the unit conversion (e.g. 0.1 for a value in tenths)

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        return _check_path(v)

    @cached_property
    def compiled(self) -> Path:
        return compile_path(self.path)


_FIELD_NAMES = ("rate_m3h", "total_m3", "signal_pct", "error_code", "volume_m3", "period_s")


class Fields(_Frozen):
    rate_m3h: FieldSpec | None = None
    total_m3: FieldSpec | None = None
    signal_pct: FieldSpec | None = None
    error_code: FieldSpec | None = None
    volume_m3: FieldSpec | None = None  # an interval volume: the water of [time − period_s, time]
    period_s: FieldSpec | None = None  # seconds
    required: tuple[str, ...] = ("total_m3",)  # a record lacking one of these is rejected

    @model_validator(mode="after")
    def _units(self) -> Fields:
        if self.rate_m3h is None and self.total_m3 is None and self.volume_m3 is None:
            raise ValueError("needs `rate_m3h` or `total_m3` (or both)")
        if (self.volume_m3 is None) != (self.period_s is None):
            raise ValueError("an interval volume needs both `volume_m3` and `period_s`")
        if self.period_s and self.period_s.unit:
            raise ValueError("period_s is in seconds: give it no unit (use `scale` for minutes)")
        if self.volume_m3 and self.volume_m3.unit and self.volume_m3.unit not in VOLUME_UNITS:
            raise ValueError(f"volume_m3.unit {self.volume_m3.unit!r}: use one of {', '.join(VOLUME_UNITS)}")
        if self.rate_m3h and self.rate_m3h.unit and self.rate_m3h.unit not in RATE_UNITS:
            raise ValueError(f"rate_m3h.unit {self.rate_m3h.unit!r}: use one of {', '.join(RATE_UNITS)}")
        if self.total_m3 and self.total_m3.unit and self.total_m3.unit not in VOLUME_UNITS:
            raise ValueError(f"total_m3.unit {self.total_m3.unit!r}: use one of {', '.join(VOLUME_UNITS)}")
        for name in self.required:
            if name not in _FIELD_NAMES or getattr(self, name) is None:
                raise ValueError(f"required field {name!r} is not described under `fields`")
        return self

    def items(self) -> tuple[tuple[str, FieldSpec], ...]:
        return self._items

    @cached_property
    def _items(self) -> tuple[tuple[str, FieldSpec], ...]:
        return tuple((n, s) for n in _FIELD_NAMES if (s := getattr(self, n)) is not None)

    @cached_property
    def plan(self) -> tuple[tuple[str, FieldSpec, Path, float, float | None], ...]:
        """What decoding needs per field, worked out once: (name, spec, compiled path, scale, unit factor
        to m³/h or m³ — None for error_code, which is an integer and takes neither)."""
        return tuple((n, s, s.compiled, s.scale,
                      None if n == "error_code" else
                      1.0 if s.unit is None or n == "period_s" else
                      rate_factor(s.unit) if n == "rate_m3h" else volume_factor(s.unit))
                     for n, s in self.items())


class RegistersSpec(_Frozen):
    path: str = ""  # where the block text is in the JSON document; "" = the whole payload is the block
    encoding: Encoding = Encoding.HEX
    frame: Frame = Frame.NONE
    start: int = Field(default=0, ge=0, le=65535)  # PDU address of the first register
    profile: str = Field(min_length=1)  # the register profile that decodes the block

    @model_validator(mode="after")
    def _binary_is_whole(self) -> RegistersSpec:
        if self.encoding is Encoding.BINARY and self.path:
            raise ValueError("a binary block is the whole payload: leave `path` empty")
        compile_path(self.path)
        return self


class PayloadProfile(_Frozen):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    description: str = ""
    format: PayloadFormat = PayloadFormat.JSON
    records: RecordsSpec = RecordsSpec()
    time: TimeSpec = TimeSpec(missing=MissingTime.RECEIVE_TIME)
    fields: Fields | None = None
    registers: RegistersSpec | None = None
    null_values: tuple[Any, ...] = ("",)  # values meaning "no reading" (failure padding), besides null
    example: Any = None  # an example payload (documentation; checked by the tests)

    @model_validator(mode="after")
    def _by_format(self) -> PayloadProfile:
        if self.format is PayloadFormat.JSON:
            if self.fields is None:
                raise ValueError("a json profile needs `fields`")
            if self.registers is not None:
                raise ValueError("`registers` belongs to format: registers")
        else:
            if self.registers is None:
                raise ValueError("a registers profile needs `registers`")
            if self.fields is not None:
                raise ValueError("a registers profile takes its fields from the register profile: "
                                 "drop `fields`")
            if self.records.layout is not Layout.SINGLE:
                raise ValueError("a registers profile carries one block: records.layout must be single")
        if self.time.missing is MissingTime.REJECT and not (self.time.paths or self.time.join):
            raise ValueError("time.missing is `reject` but no time path is given")
        return self

    @property
    def keyed(self) -> bool:
        """Whether a message can name its meter(s) itself (map keys, a key field or `{key}` paths)."""
        return (self.records.layout is Layout.MAP or self.records.key is not None
                or self.templated)

    @cached_property
    def templated(self) -> bool:
        return self.fields is not None and any(s.compiled.templated for _, s in self.fields.items())


def _parse(data: Any, origin: str) -> PayloadProfile:
    try:
        return PayloadProfile.model_validate(data)
    except ValidationError as err:
        problems = []
        for e in err.errors(include_url=False):
            loc = ".".join(str(p) for p in e["loc"] if not str(p).startswith("function-"))
            problems.append(f"{origin}: {loc or 'profile'}: {e['msg'].removeprefix('Value error, ')}")
        raise ProfileError("\n".join(problems)) from None


def _load_text(text: str, origin: str) -> list[PayloadProfile]:
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise ProfileError(f"{origin}: not valid YAML: {exc}") from None
    out = []
    for d in docs:
        if isinstance(d, list):
            out += [_parse(x, origin) for x in d]
        else:
            out.append(_parse(d, origin))
    return out


def shipped_profiles() -> dict[str, PayloadProfile]:
    """The profiles that ship in the package."""
    out: dict[str, PayloadProfile] = {}
    folder = resources.files("collector.mqtt") / "profiles"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            for p in _load_text(entry.read_text(encoding="utf-8"), f"collector/mqtt/profiles/{entry.name}"):
                out[p.name] = p
    return out


def load_profiles(user_dir: FsPath | None = None,
                  extra: Iterable[PayloadProfile] = ()) -> Mapping[str, PayloadProfile]:
    """Shipped profiles, then `user_dir/*.yaml` (a user profile may replace a shipped one by name)."""
    profiles = shipped_profiles()
    if user_dir is not None:
        if not user_dir.is_dir():
            raise ProfileError(f"{user_dir}: the payload profile directory does not exist")
        for f in sorted(user_dir.glob("*.yaml")):
            try:
                text = f.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ProfileError(f"{f}: cannot be read: {exc}") from None
            for p in _load_text(text, str(f)):
                profiles[p.name] = p
    for p in extra:
        profiles[p.name] = p
    return profiles
