"""Decoding one MQTT message into readings with a payload profile: pure, no I/O, no clock.

Which meter a record belongs to comes from configuration: the meters bound to the topic, selected by a
key the message carries (a map key, a key field, a `{key}` topic level) — a key that names no configured
meter is rejected. Site, meter and role of every reading are the configured ones, never payload text.

Each record is decoded on its own: one bad record in a buffered array is rejected with its reason while
the good ones are kept.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any

import orjson

from collector.duration import format_duration
from collector.model import ModelError, Reading, Role
from collector.mqtt.errors import Rejected, RejectReason
from collector.mqtt.paths import MISSING, compile_path
from collector.mqtt.profile import FieldSpec, Layout, MissingTime, PayloadFormat, PayloadProfile
from collector.mqtt.registers import NO_REGISTER_CODEC, Encoding, RegisterCodec, decode_block
from collector.mqtt.timestamps import parse_timestamp

__all__ = ["Binding", "DecodeContext", "Decoded", "decode"]

R = RejectReason


@dataclass(frozen=True, slots=True)
class Binding:
    """A configured meter reachable on a topic; `key` is how a message names it (mqtt.key or meter id)."""

    site: str
    meter: str
    role: Role
    key: str


@dataclass(frozen=True)
class DecodeContext:
    tz: tzinfo
    max_clock_skew: timedelta = timedelta(minutes=2)
    max_age: timedelta = timedelta(days=30)
    max_payload: int = 64 * 1024
    codec: RegisterCodec = NO_REGISTER_CODEC


@dataclass(slots=True)
class Decoded:
    readings: list[Reading] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


def decode(profile: PayloadProfile, payload: bytes, received: datetime, ctx: DecodeContext,
           meters: Mapping[str, Binding], topic_key: str | None = None) -> Decoded:
    """Readings from one message; every unusable part is listed in `rejected` with its reason."""
    out = Decoded()
    try:
        if len(payload) > ctx.max_payload:
            raise Rejected(R.TOO_LARGE, f"{len(payload)} bytes, the bound is {ctx.max_payload}")
        if profile.format is PayloadFormat.REGISTERS:
            _registers(profile, payload, received, ctx, meters, topic_key, out)
        else:
            _json(profile, _parse_json(payload), received, ctx, meters, topic_key, out)
    except Rejected as rej:
        out.rejected.append(rej)
    return out


# -- JSON -----------------------------------------------------------------------------------------------


def _parse_json(payload: bytes) -> Any:
    try:  # the fast parser; whatever it refuses (a BOM, NaN, lone surrogates) is parsed as before
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        pass
    try:
        text = payload.decode("utf-8-sig")  # UTF-8 only (json.loads would also guess UTF-16/32)
    except UnicodeDecodeError as exc:
        raise Rejected(R.BAD_ENCODING, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise Rejected(R.BAD_JSON, f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise Rejected(R.BAD_JSON, "arrays or objects nested too deeply") from None
    except ValueError as exc:  # e.g. an integer literal of more than 4300 digits
        raise Rejected(R.BAD_JSON, str(exc)[:120]) from None


def _records(profile: PayloadProfile, root: Any) -> list[tuple[str | None, Any]]:
    spec = profile.records
    container = spec.compiled.get(root, root)
    if container is MISSING:
        raise Rejected(R.WRONG_SHAPE, f"no {spec.path!r} in the message")
    layout = spec.layout
    if layout is Layout.AUTO:
        layout = Layout.ARRAY if isinstance(container, list) else Layout.SINGLE
    if layout is Layout.SINGLE:
        return [(None, container)]
    if layout is Layout.ARRAY:
        if not isinstance(container, list):
            raise Rejected(R.WRONG_SHAPE, f"expected an array of records, got {_kind(container)}")
        if spec.key_path is None:
            return [(None, r) for r in container]
        out: list[tuple[str | None, Any]] = []
        for r in container:
            k = spec.key_path.get(r, root) if isinstance(r, dict) else MISSING
            out.append((_key_text(k), r))
        return out
    if not isinstance(container, dict):
        raise Rejected(R.WRONG_SHAPE, f"expected an object of records by meter, got {_kind(container)}")
    out = []
    for k, v in container.items():
        out += [(k, r) for r in v] if isinstance(v, list) else [(k, v)]
    return out


def _key_text(k: Any) -> str | None:
    if isinstance(k, str):
        return k
    if isinstance(k, int) and not isinstance(k, bool):
        return str(k)
    return None


def _kind(v: Any) -> str:
    return {dict: "an object", list: "an array", str: "text", bool: "a boolean", type(None): "null"}.get(
        type(v), "a number")


def _json(profile: PayloadProfile, root: Any, received: datetime, ctx: DecodeContext,
          meters: Mapping[str, Binding], topic_key: str | None, out: Decoded) -> None:
    records = _records(profile, root)
    if not records:
        raise Rejected(R.WRONG_SHAPE, "the message holds no records")
    for key, record in records:
        try:
            if not isinstance(record, dict):
                raise Rejected(R.WRONG_SHAPE, f"a record must be an object, got {_kind(record)}")
            if profile.templated and key is None and topic_key is None:
                found = False
                for b in meters.values():  # one record for every meter of the topic; absent ones skipped
                    values = _values(profile, record, root, b.key, skip_empty=True)
                    if values is not None:
                        found = True
                        out.readings.append(_build(b, _time(profile, record, root, received, ctx), values))
                if not found:
                    raise Rejected(R.MISSING_FIELD, f"the record holds values of none of the {len(meters)} "
                                                    "meters on this topic")
                continue
            b = _meter(meters, key if key is not None else topic_key, key is not None)
            values = _values(profile, record, root, b.key, skip_empty=False)
            assert values is not None
            out.readings.append(_build(b, _time(profile, record, root, received, ctx), values))
        except Rejected as rej:
            out.rejected.append(rej)


def _meter(meters: Mapping[str, Binding], key: str | None, from_payload: bool) -> Binding:
    if key is not None:
        b = meters.get(key)
        if b is None:
            where = "the message" if from_payload else "the topic"
            raise Rejected(R.UNKNOWN_METER, f"{where} names meter key {key[:64]!r}, which no configured "
                                            "meter on this topic has (set the meter's mqtt.key)")
        return b
    if len(meters) == 1:
        return next(iter(meters.values()))
    raise Rejected(R.UNKNOWN_METER, f"the message does not name its meter and {len(meters)} meters share "
                                    "the topic")


def _number(name: str, spec: FieldSpec, raw: Any) -> float:
    if isinstance(raw, bool):
        raise Rejected(R.WRONG_TYPE, f"{name} ({spec.path}) is a boolean")
    if isinstance(raw, int | float):
        try:
            v = float(raw)
        except OverflowError:
            raise Rejected(R.NOT_FINITE, f"{name} ({spec.path}) is too large for a number: "
                                         f"{len(str(raw))} digits") from None
    elif isinstance(raw, str):
        try:
            v = float(raw.strip())
        except ValueError:
            raise Rejected(R.WRONG_TYPE, f"{name} ({spec.path}) is not a number: {raw[:40]!r}") from None
    else:
        raise Rejected(R.WRONG_TYPE, f"{name} ({spec.path}) is {_kind(raw)}, not a number")
    if not math.isfinite(v):
        raise Rejected(R.NOT_FINITE, f"{name} ({spec.path}) is {str(raw)[:40]!r}")
    return v


def _values(profile: PayloadProfile, record: dict[str, Any], root: Any, key: str,
            skip_empty: bool) -> dict[str, float | int] | None:
    fields = profile.fields
    assert fields is not None
    values: dict[str, float | int] = {}
    nulls = profile.null_values
    for name, spec, path, scale, factor in fields.plan:
        raw = path.get(record, root, key)
        if raw is MISSING or raw is None:
            continue
        if type(raw) is float or type(raw) is int:  # the common case: a JSON number
            try:
                v = float(raw)
            except OverflowError:  # an integer literal beyond any float
                raise Rejected(R.NOT_FINITE, f"{name} ({spec.path}) is {str(raw)[:40]!r}…") from None
            if raw in nulls:
                continue
            if not math.isfinite(v):
                raise Rejected(R.NOT_FINITE, f"{name} ({spec.path}) is {raw!r}")
        else:
            if not isinstance(raw, dict | list) and raw in nulls:
                continue
            v = _number(name, spec, raw)
        if factor is None:  # error_code
            if v != int(v):
                raise Rejected(R.WRONG_TYPE, f"error_code ({spec.path}) is not an integer: {str(raw)[:40]!r}")
            values[name] = int(v)
            continue
        if scale != 1.0:
            v *= scale
        if factor != 1.0:
            v *= factor
        values[name] = v
    if skip_empty and not values:
        return None
    for name in fields.required:
        if name not in values:
            spec = getattr(fields, name)
            raise Rejected(R.MISSING_FIELD, f"{name} ({spec.compiled.text.replace('{key}', key)}) is missing "
                                            "or null")
    return values


def _time(profile: PayloadProfile, record: Any, root: Any, received: datetime,
          ctx: DecodeContext) -> datetime:
    spec = profile.time
    raw: Any = MISSING
    for p in spec.compiled:
        raw = p.get(record, root)
        if raw is not MISSING and raw is not None and raw != "":
            break
    if spec.compiled_join:
        parts = [p.get(record, root) for p in spec.compiled_join]
        raw = MISSING if any(x is MISSING or x is None for x in parts) else " ".join(str(x) for x in parts)
    if raw is MISSING or raw is None or raw == "":
        if spec.missing is MissingTime.RECEIVE_TIME:
            return received
        where = " + ".join(spec.join) if spec.join else " or ".join(spec.paths)
        raise Rejected(R.MISSING_FIELD, f"the time ({where}) is missing")
    try:
        ts = parse_timestamp(raw, spec.format, ctx.tz, spec.pattern)
    except (ValueError, OverflowError) as exc:
        raise Rejected(R.BAD_TIMESTAMP, f"time {str(raw)[:40]!r} is not {spec.format.value}: {exc}") from None
    return _plausible(ts, received, ctx)


def _plausible(ts: datetime, received: datetime, ctx: DecodeContext) -> datetime:
    if ts > received + ctx.max_clock_skew:
        ahead = format_duration(ts - received)
        raise Rejected(R.TS_FUTURE, f"time {ts.isoformat()} is {ahead} ahead of the receive time "
                                    "(the DTU clock is wrong; see mqtt.max_clock_skew)")
    if ts < received - ctx.max_age:
        raise Rejected(R.TS_PAST, f"time {ts.isoformat()} is older than mqtt.max_age "
                                  f"({format_duration(ctx.max_age)})")
    return ts


def _build(b: Binding, ts: datetime, values: Mapping[str, float | int | None]) -> Reading:
    total = values.get("total_m3")
    if total is not None and total < 0:
        raise Rejected(R.NEGATIVE_TOTAL, f"total_m3 is {total}")
    signal = values.get("signal_pct")
    if signal is not None and not 0 <= signal <= 100:
        raise Rejected(R.OUT_OF_RANGE, f"signal_pct {signal} is not in 0..100")
    code = values.get("error_code")
    rate = values.get("rate_m3h")
    volume, period = values.get("volume_m3"), values.get("period_s")
    try:
        return Reading(b.site, b.meter, b.role, ts, None if rate is None else float(rate),
                       None if total is None else float(total), None if signal is None else float(signal),
                       None if code is None else int(code), None if volume is None else float(volume),
                       None if period is None else float(period))
    except ModelError as exc:
        raise Rejected(R.MISSING_FIELD if "neither" in str(exc) else R.OUT_OF_RANGE, str(exc)) from None


# -- raw registers --------------------------------------------------------------------------------------


def _registers(profile: PayloadProfile, payload: bytes, received: datetime, ctx: DecodeContext,
               meters: Mapping[str, Binding], topic_key: str | None, out: Decoded) -> None:
    spec = profile.registers
    assert spec is not None
    root: Any = None
    block: Any = payload
    if spec.path:
        root = _parse_json(payload)
        block = compile_path(spec.path).get(root, root)
        if block is MISSING or block is None:
            raise Rejected(R.MISSING_FIELD, f"the register block ({spec.path}) is missing")
        if not isinstance(block, str):
            raise Rejected(R.WRONG_TYPE, f"the register block ({spec.path}) is {_kind(block)}, not text")
    elif spec.encoding is not Encoding.BINARY:
        try:
            block = payload.decode("ascii")
        except UnicodeDecodeError:
            raise Rejected(R.BAD_REGISTERS, f"the payload is not {spec.encoding.value} text") from None
    try:
        regs = decode_block(block, spec.encoding, spec.frame)
    except ValueError as exc:
        raise Rejected(R.BAD_REGISTERS, str(exc)) from None
    try:
        values = ctx.codec.decode(spec.profile, spec.start, regs)
    except (ValueError, LookupError, IndexError) as exc:
        raise Rejected(R.BAD_REGISTERS, f"register profile {spec.profile}: {exc}") from None
    for name, v in values.items():
        if isinstance(v, float) and not math.isfinite(v):
            raise Rejected(R.NOT_FINITE, f"{name} decodes to {v!r}")
    b = _meter(meters, topic_key, False)
    ts = _time(profile, root if root is not None else {}, root if root is not None else {}, received, ctx)
    out.readings.append(_build(b, ts, values))
