"""Domain model: sites, meters and the readings they produce.

`Site` and `Meter` are frozen pydantic models: the configuration file is validated by building them, so a
bad value is rejected with the exact field path. `Reading` is a frozen slotted dataclass: it is created
hundreds of thousands of times per second on the ingest path and validates itself cheaply.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from math import isfinite
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from collector.duration import Duration
from collector.problems import ZhEn

__all__ = [
    "ChangeKind",
    "FreeText",
    "Hj212Source",
    "Location",
    "Meter",
    "MeterChange",
    "ModbusSource",
    "ModelError",
    "MqttSource",
    "Permit",
    "PermitStatus",
    "PermitWells",
    "Reading",
    "Role",
    "RolePeriod",
    "Site",
    "Slug",
    "Szy206Source",
    "TagText",
    "expected_interval",
    "meter_problems",
]

MQTT_INTERVAL = timedelta(minutes=1)
"""How often an MQTT meter is expected to report when neither it nor its DTU says otherwise."""

TELEMETRY_INTERVAL = timedelta(hours=1)
"""How often an HJ 212 / SZY 206 data logger is expected to report without `interval:` (their hourly data; one
that sends minute data fills every hour's slot too)."""


class ModelError(ValueError):
    """A value object was given a value it cannot hold."""


class Role(StrEnum):
    EXTRACTION = "extraction"
    REINJECTION = "reinjection"
    DISCHARGE = "discharge"


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
"""C0 and C1 control characters (line breaks, tabs, escapes), line and paragraph separators, and the marks
and overrides of bidirectional text (which can make a name read differently from what it holds)."""


def _slug(value: str) -> str:
    if not _SLUG.match(value):
        raise ValueError(ZhEn(
            "须为 1-64 个字母、数字、'_'、'.' 或 '-'，以字母或数字开头",
            "must be 1-64 characters of letters, digits, '_', '.' or '-', starting with a letter or digit"))
    return value


def _no_control(value: str, where_zh: str, where: str) -> None:
    found = _CONTROL.search(value)
    if found:
        code, at = f"U+{ord(found.group()):04X}", found.start() + 1
        raise ValueError(ZhEn(f"不得含控制字符（换行、制表符等）或双向文本控制符：第 {at} 个字符是 {code}；{where_zh}",
                              f"must not contain control characters (line breaks, tabs, …) or bidirectional-text "
                              f"overrides: found {code} at character {at}; {where}"))


def _free_text(value: str) -> str:
    _no_control(value, "它会显示在邮件标题、聊天消息和报表中",
                "it is shown in e-mail headers, chat messages and reports")
    return value


def _tag_text(value: str) -> str:
    if not value.strip():
        raise ValueError(ZhEn("不得为空", "must not be empty"))
    _no_control(value, "它会成为数据库标签，并显示在邮件标题、聊天消息和报表中",
                "it becomes a database tag and is shown in e-mail headers, chat messages and reports")
    if value.endswith("\\"):
        raise ValueError(ZhEn("不得以反斜杠结尾：InfluxDB 行协议无法把它存入标签",
                              "must not end with a backslash: InfluxDB line protocol cannot store it in a tag"))
    return value


Slug = Annotated[str, AfterValidator(_slug)]
"""An identifier safe in a URL, a topic level and a database tag."""

TagText = Annotated[str, AfterValidator(_tag_text)]
"""Free text (any Unicode) that is stored as a database tag: no control characters."""

FreeText = Annotated[str, AfterValidator(_free_text)]
"""Text people read (a site's name, an operator, a reason) that also ends up in e-mail headers, chat
markdown and reports: any Unicode but control characters and bidirectional-text overrides."""


_FIELD_SETS: dict[frozenset[str], set[str]] = {}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    def model_post_init(self, context: Any, /) -> None:
        """Models given the same fields share one set of their names (~200 bytes each, two per meter of a
        city's config): a frozen model never changes its set in place, and a copy gets its own."""
        given = self.__pydantic_fields_set__
        object.__setattr__(self, "__pydantic_fields_set__", _FIELD_SETS.setdefault(frozenset(given), given))


class ModbusSource(_Frozen):
    """Where a meter is read over Modbus: a gateway (see `gateways:`), a unit id and a register profile."""

    gateway: Slug
    unit: int = Field(ge=0, le=247)
    profile: str = "tuf2000m"


class MqttSource(_Frozen):
    """A meter whose DTU publishes on an MQTT topic, decoded by a payload profile."""

    topic: str = Field(min_length=1)
    profile: str = "dtu-json"
    key: str | None = Field(default=None, min_length=1, max_length=128,
                            description="how a multi-meter message names this meter (default: the meter id)")


_FACTOR = r"^[A-Za-z0-9]{1,16}-(Rtd|Cou|Avg|Min|Max)$"


class Hj212Source(_Frozen):
    """A meter whose data logger uploads HJ 212-2017 frames: the logger's MN and the factor fields of its
    data segment that carry the flow rate (m³/h) and the totalizer (m³) — or, for a logger that reports
    per-interval volume (``-Cou`` of minute or hour data), `volume` instead of `total`."""

    mn: str = Field(min_length=1, max_length=24, pattern=r"^[A-Za-z0-9_-]+$")
    rate: str | None = Field(default="w00000-Rtd", pattern=_FACTOR)
    total: str | None = Field(default="w00001-Rtd", pattern=_FACTOR)
    volume: str | None = Field(default=None, pattern=_FACTOR,
                               description="factor field holding the volume of the data's interval (-Cou)")

    @model_validator(mode="after")
    def _something_to_read(self) -> Hj212Source:
        if self.volume is not None and self.total is not None and "total" in self.model_fields_set:
            raise ValueError(ZhEn("`total:`（累计值）与 `volume:`（时段水量）只能给其一",
                                  "give either `total:` (a totalizer) or `volume:` (interval volumes), not both"))
        if self.rate is None and self.total is None and self.volume is None:
            raise ValueError(ZhEn("须至少给出 `rate:`、`total:`、`volume:` 之一",
                                  "needs at least one of `rate:`, `total:` or `volume:`"))
        return self

    @property
    def totalizer(self) -> str | None:
        """The totalizer field, unless the meter reports interval volumes."""
        return None if self.volume is not None else self.total


class Szy206Source(_Frozen):
    """A meter whose RTU sends SZY 206-2016 link frames: the terminal's address (administrative division
    code, six digits, and station number) and which flow point of its data it is (1 = the first)."""

    division: str = Field(pattern=r"^[0-9]{6}$", description="administrative division code (行政区划码)")
    station: int = Field(ge=1, le=65535)
    point: int = Field(default=1, ge=1, le=16)

    @property
    def address(self) -> str:
        """``DDDDDD-SSSSS``: how logs and dead letters name the terminal."""
        return f"{self.division}-{self.station:05d}"


_MONTH_DAY = re.compile(r"^(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")


def _month_day(value: str) -> str:
    if not _MONTH_DAY.match(value):
        raise ValueError(ZhEn("须为月-日，如 05-01（MM-DD）", "must be a month-day like 05-01 (MM-DD)"))
    return value


MonthDay = Annotated[str, AfterValidator(_month_day)]
"""A day of the year as MM-DD, for seasonal ranges."""


class RolePeriod(_Frozen):
    """A seasonal role: from `from` (inclusive) to `to` (inclusive), month-days in the site's time zone;
    a range may cross the new year (11-15 → 03-15)."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True, populate_by_name=True)

    role: Role
    start: MonthDay = Field(alias="from")
    end: MonthDay = Field(alias="to")


class Calibration(_Frozen):
    """The meter's current calibration certificate (检定证书): what makes its readings evidence."""

    number: FreeText = Field(min_length=1, max_length=100)
    calibrated: date = Field(alias="date")
    next_due: date

    @model_validator(mode="after")
    def _order(self) -> Calibration:
        if self.next_due <= self.calibrated:
            raise ValueError(ZhEn("next_due 须晚于检定日期", "next_due must come after the calibration date"))
        return self


class MeterRecord(_Frozen):
    """What the bureau keeps about a meter: serial number, model, install date, calibration."""

    serial: FreeText | None = Field(default=None, min_length=1, max_length=64)
    model: FreeText | None = Field(default=None, min_length=1, max_length=100)
    installed: date | None = None
    calibration: Calibration | None = None


class PermitStatus(StrEnum):
    """Where a permitted site stands: only an `operating` one may pump (a `suspended` or `sealed` one — 自备井
    封停 — must stay dry)."""

    APPROVED = "approved"  # 已批准
    CONSTRUCTION = "construction"  # 施工中
    OPERATING = "operating"  # 运行中
    SUSPENDED = "suspended"  # 暂停取水
    SEALED = "sealed"  # 已封停

    @property
    def must_be_dry(self) -> bool:
        return self in (PermitStatus.SUSPENDED, PermitStatus.SEALED)


class PermitWells(_Frozen):
    """How many wells the permit allows on each side."""

    extraction: int = Field(ge=0, le=1000)
    reinjection: int = Field(ge=0, le=1000)


class Permit(_Frozen):
    """A water-withdrawal permit (取水许可): its number and holder, the annual quota (m³ per calendar year in
    the configured zone), the highest extraction rate, the wells, the validity (both days inclusive) and the
    site's status. Errors are worded in Chinese and English: the bureau's staff read them."""

    number: FreeText = Field(min_length=1, max_length=100)
    holder: FreeText = Field(min_length=1, max_length=200)
    annual_quota_m3: float = Field(allow_inf_nan=False)
    max_rate_m3h: float = Field(allow_inf_nan=False)
    wells: PermitWells
    valid_from: date
    valid_to: date
    status: PermitStatus

    @field_validator("annual_quota_m3", "max_rate_m3h", mode="after")
    @classmethod
    def _positive(cls, v: float, info: ValidationInfo) -> float:
        unit = "m³" if info.field_name == "annual_quota_m3" else "m³/h"
        if not 0 < v <= 1e9:
            raise ValueError(ZhEn(f"许可水量须为正数（{unit}）", f"must be a positive number of {unit}, at most 10⁹"))
        return v

    @field_validator("status", mode="before")
    @classmethod
    def _known_status(cls, v: object) -> object:
        if isinstance(v, str) and v not in {s.value for s in PermitStatus}:
            known = ", ".join(s.value for s in PermitStatus)
            raise ValueError(ZhEn(f"许可状态须为 {known} 之一", f"status must be one of {known}"))
        return v

    @model_validator(mode="after")
    def _valid_span(self) -> Permit:
        if self.valid_to < self.valid_from:
            raise ValueError(ZhEn(f"有效期止（valid_to {self.valid_to}）早于有效期起（valid_from {self.valid_from}）",
                                  "valid_to must not be before valid_from"))
        return self

    def valid_on(self, day: date) -> bool:
        return self.valid_from <= day <= self.valid_to


class Meter(_Frozen):
    id: Slug
    role: Role  # the role outside every `roles:` period
    roles: tuple[RolePeriod, ...] = ()
    accuracy_pct: float = Field(default=1.0, gt=0, le=20)
    max_flow_m3h: float | None = Field(default=None, gt=0, le=100_000, allow_inf_nan=False)
    """The most the meter's pipe can carry (nameplate or pump rating): bounds what a maintenance may excuse."""
    interval: Duration | None = Field(default=None, description="how often the meter reports (default: its "
                                                                 "gateway's poll interval, 1m over MQTT, "
                                                                 "1h for HJ 212 / SZY 206)")
    record: MeterRecord | None = None
    modbus: ModbusSource | None = None
    mqtt: MqttSource | None = None
    hj212: Hj212Source | None = None
    szy206: Szy206Source | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Meter:
        given = [name for name in _SOURCES if getattr(self, name) is not None]
        if len(given) > 1:
            raise ValueError(ZhEn(f"一个计量表只有一个数据来源：`modbus:`、`mqtt:`、`hj212:`、`szy206:` 只能给其一，"
                                  f"不能同时给 {'、'.join(given)}",
                                  "a meter has one source: give either `modbus:` or `mqtt:` or `hj212:` or `szy206:`, "
                                  f"not {' and '.join(given)}"))
        return self

    @property
    def source(self) -> Literal["modbus", "mqtt", "hj212", "szy206"] | None:
        if self.modbus is not None:
            return "modbus"
        if self.mqtt is not None:
            return "mqtt"
        if self.hj212 is not None:
            return "hj212"
        if self.szy206 is not None:
            return "szy206"
        return None


_SOURCES = ("modbus", "mqtt", "hj212", "szy206")


class Location(_Frozen):
    """Where a site is: WGS-84 / CGCS2000 degrees (what GPS and 天地图 use) and a street address."""

    lat: float = Field(allow_inf_nan=False)
    lon: float = Field(allow_inf_nan=False)
    address: FreeText | None = Field(default=None, min_length=1, max_length=200)

    @field_validator("lat")
    @classmethod
    def _latitude(cls, v: float) -> float:
        if not -90 <= v <= 90:
            raise ValueError(ZhEn("纬度须在 -90 到 90 之间", "latitude must be between -90 and 90 degrees (e.g. 32.99; "
                                                          "is it the longitude?)"))
        return v

    @field_validator("lon")
    @classmethod
    def _longitude(cls, v: float) -> float:
        if not -180 <= v <= 180:
            raise ValueError(ZhEn("经度须在 -180 到 180 之间", "longitude must be between -180 and 180 degrees "
                                                            "(e.g. 112.53)"))
        return v


class Site(_Frozen):
    id: Slug
    name: FreeText = Field(min_length=1, max_length=200)
    district: TagText
    operator: FreeText | None = Field(default=None, max_length=200)
    location: Location | None = None
    permit: Permit | None = None

    @field_validator("location", mode="before")
    @classmethod
    def _location_is_a_point(cls, v: object) -> object:
        if isinstance(v, str):
            raise ValueError(ZhEn("位置须写成 {lat, lon, address}",
                                  "location is {lat, lon, address}: WGS-84 degrees and "
                                  f"the address, e.g. {{lat: 33.0, lon: 112.56, address: {v[:40]}}}"))
        return v

    meters: tuple[Meter, ...]

    @model_validator(mode="after")
    def _meters_make_a_site(self) -> Site:
        problems = [message for _, message in meter_problems(self.meters)]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def meter(self, meter_id: str) -> Meter:
        for m in self.meters:
            if m.id == meter_id:
                return m
        raise KeyError(meter_id)


def expected_interval(meter: Meter, gateway_intervals: Mapping[str, timedelta]) -> timedelta:
    """How often `meter` is expected to report: its own `interval:`, else its Modbus gateway's poll interval
    (`gateway_intervals`: gateway id → interval), else `TELEMETRY_INTERVAL` for an HJ 212 / SZY 206 data
    logger, else `MQTT_INTERVAL`. The one rule for every count of expected readings (arrival rate, broker queue
    needs, reports)."""
    if meter.interval is not None:
        return meter.interval
    if meter.modbus is not None and meter.modbus.gateway in gateway_intervals:
        return gateway_intervals[meter.modbus.gateway]
    if meter.hj212 is not None or meter.szy206 is not None:
        return TELEMETRY_INTERVAL
    return MQTT_INTERVAL


def meter_problems(meters: Sequence[Meter]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Why `meters` cannot make a site, as (path under the site, message): a meter id given twice (at the
    second meter's id), a missing extraction or reinjection meter (at the meter list)."""
    seen: set[str] = set()
    for j, m in enumerate(meters):
        if m.id in seen:
            yield ("meters", j, "id"), ZhEn(f"计量表编号 {m.id!r} 出现了两次（同一站点内编号须唯一）",
                                            f"meter id {m.id!r} appears twice (ids are unique within a site)")
        seen.add(m.id)
    roles = {m.role for m in meters}
    for needed in (Role.EXTRACTION, Role.REINJECTION):
        if needed not in roles:
            yield ("meters",), ZhEn(f"须至少有一个 {needed.value!r} 计量表",
                                    f"needs at least one {needed.value!r} meter")


def _set_utc(obj: Reading | MeterChange, what: str) -> None:
    """Replace a frozen dataclass's `ts` by the same instant in UTC, or raise ModelError when it is naive."""
    ts = obj.ts
    if ts.utcoffset() is None:
        raise ModelError(f"{what}: ts must be timezone-aware, got {ts!r}")
    object.__setattr__(obj, "ts", ts.astimezone(UTC))


def _set_member(obj: object, attr: str, enum: type[StrEnum], what: str) -> None:
    """Replace a frozen dataclass's field by the member of `enum` its value names, or raise ModelError."""
    value = getattr(obj, attr)
    try:
        object.__setattr__(obj, attr, enum(value))
    except ValueError:
        raise ModelError(f"{what}: {attr} {value!r} is not one of {', '.join(m.value for m in enum)}") from None


@dataclass(frozen=True, slots=True)
class Reading:
    """One sample of one meter.

    `total_m3` is the forward totalizer, the basis of every volume; `rate_m3h` the instantaneous flow.
    Either may be None when the meter did not deliver it (a rate-only meter, a failed field). A logger
    that reports per-interval volume instead of a totalizer gives `volume_m3`: the water passed over
    [ts − period_s, ts]. A reading carries at least one of rate, total and volume.
    """

    site: str
    meter: str
    role: Role
    ts: datetime
    rate_m3h: float | None
    total_m3: float | None
    signal_pct: float | None = None
    error_code: int | None = None
    volume_m3: float | None = None
    period_s: float | None = None

    def __post_init__(self) -> None:
        # on the ingest path for every reading: the common case (UTC, finite numbers) costs few calls
        if self.ts.tzinfo is not UTC:
            _set_utc(self, f"reading {self.site}/{self.meter}")
        rate, total, signal = self.rate_m3h, self.total_m3, self.signal_pct
        if self.volume_m3 is not None or self.period_s is not None:
            _check_volume(self)
        elif rate is None and total is None:
            raise ModelError(f"reading {self.site}/{self.meter}: neither rate nor total (nor an interval volume)")
        for name, v in (("rate_m3h", rate), ("total_m3", total), ("signal_pct", signal)):
            if v is not None and not isfinite(v):
                raise ModelError(f"reading {self.site}/{self.meter}: {name} is not a finite number ({v!r})")
        if total is not None and total < 0:
            raise ModelError(f"reading {self.site}/{self.meter}: total_m3 is negative ({total})")
        if signal is not None and not 0 <= signal <= 100:
            raise ModelError(f"reading {self.site}/{self.meter}: signal_pct {signal} not in 0..100")
        code = self.error_code
        if code is not None and not _INT64_MIN <= code <= _INT64_MAX:
            # InfluxDB stores integers as int64 and refuses the whole point otherwise
            raise ModelError(f"reading {self.site}/{self.meter}: error_code {code} does not fit a 64-bit integer")
        if type(self.role) is not Role:
            _set_member(self, "role", Role, f"reading {self.site}/{self.meter}")


def _check_volume(r: Reading) -> None:
    """An interval volume comes with its period: finite, not negative, over a positive period."""
    volume, period = r.volume_m3, r.period_s
    if volume is None or period is None:
        raise ModelError(f"reading {r.site}/{r.meter}: an interval volume needs both volume_m3 and period_s")
    if not isfinite(volume) or volume < 0:
        raise ModelError(f"reading {r.site}/{r.meter}: volume_m3 must be a finite number ≥ 0 ({volume!r})")
    if not isfinite(period) or period <= 0:
        raise ModelError(f"reading {r.site}/{r.meter}: period_s must be a positive number of seconds ({period!r})")


class ChangeKind(StrEnum):
    """What a change of a meter's slow-changing (identity) registers means."""

    SERIAL_CHANGED = "serial_changed"  # another meter answers: swapped
    UNIT_CHANGED = "unit_changed"  # flow-rate or totalizer unit
    MULTIPLIER_CHANGED = "multiplier_changed"  # totalizer multiplier (10^n)
    SCALE_CHANGED = "scale_changed"  # user scale factor: the calibration was touched
    RESCALED = "rescaled"  # totalizer jumped across a gap beyond what the meter can pass (seen in the data)


@dataclass(frozen=True, slots=True)
class MeterChange:
    """An identity register of a meter changed between two reads (a swapped meter, a rescaled totalizer,
    a touched calibration).

    `field` is the register profile's field, `old`/`new` its decoded values, `ts` when the change was
    seen — at or before the first reading decoded with the new value, and a source hands it on before
    that reading, so a consumer can take the totalizer step across it as a rescale rather than volume.
    """

    site: str
    meter: str
    ts: datetime
    kind: ChangeKind
    field: str
    old: int | float
    new: int | float

    def __post_init__(self) -> None:
        if self.ts.tzinfo is not UTC:
            _set_utc(self, f"meter change {self.site}/{self.meter}")
        if type(self.kind) is not ChangeKind:
            _set_member(self, "kind", ChangeKind, f"meter change {self.site}/{self.meter}")

    def as_dict(self) -> dict[str, object]:
        return {"site": self.site, "meter": self.meter, "ts": self.ts.isoformat(), "kind": self.kind.value,
                "field": self.field, "old": self.old, "new": self.new}
