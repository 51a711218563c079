"""The encode side of a payload profile: readings → the message a DTU would publish (for simulators).

`decode(encode(x)) == x` for every shipped JSON profile (checked by the tests), so the simulator speaks
exactly what the ingester understands.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import tzinfo
from typing import Any

from collector.model import Reading
from collector.mqtt.paths import compile_path
from collector.mqtt.profile import Layout, PayloadFormat, PayloadProfile
from collector.mqtt.registers import NO_REGISTER_CODEC, RegisterCodec, encode_block
from collector.mqtt.timestamps import format_timestamp
from collector.mqtt.units import rate_factor, volume_factor

__all__ = ["encode"]


def _record_values(profile: PayloadProfile, r: Reading, rec: dict[str, Any], root: dict[str, Any],
                   key: str) -> None:
    assert profile.fields is not None
    for name, spec in profile.fields.items():
        v = getattr(r, name)
        if v is None:
            continue
        if name != "error_code":
            if spec.unit is not None:
                v /= rate_factor(spec.unit) if name == "rate_m3h" else volume_factor(spec.unit)
            v = round(v / spec.scale, 6)
        spec.compiled.put(rec, root, v, key)


def _put_time(profile: PayloadProfile, r: Reading, rec: dict[str, Any], root: dict[str, Any],
              tz: tzinfo) -> None:
    spec = profile.time
    value = format_timestamp(r.ts, spec.format, tz, spec.pattern)
    if spec.compiled:
        spec.compiled[0].put(rec, root, value)
    elif spec.compiled_join:
        parts = str(value).split(" ", len(spec.compiled_join) - 1)
        for p, part in zip(spec.compiled_join, parts, strict=True):
            p.put(rec, root, part)


def encode(profile: PayloadProfile, items: Sequence[tuple[str, Reading]], tz: tzinfo,
           codec: RegisterCodec = NO_REGISTER_CODEC) -> bytes:
    """One message carrying `items` (meter key, reading). Single-record profiles take exactly one."""
    if not items:
        raise ValueError("nothing to encode")
    if profile.format is PayloadFormat.REGISTERS:
        return _registers(profile, items, tz, codec)
    layout = profile.records.layout
    if layout is Layout.AUTO:
        layout = Layout.SINGLE if len(items) == 1 else Layout.ARRAY
    root: dict[str, Any] = {}
    container: Any
    if layout is Layout.SINGLE:
        if len(items) > 1 and not profile.templated:
            raise ValueError(f"profile {profile.name} carries one meter per message")
        container = {}
        for key, r in items:
            _record_values(profile, r, container, root, key)
            _put_time(profile, r, container, root, tz)
    elif layout is Layout.ARRAY:
        container = []
        for key, r in items:
            rec: dict[str, Any] = {}
            if profile.records.key_path is not None:
                profile.records.key_path.put(rec, root, key)
            _record_values(profile, r, rec, root, key)
            _put_time(profile, r, rec, root, tz)
            container.append(rec)
    else:
        container = {}
        for key, r in items:
            rec = {}
            _record_values(profile, r, rec, root, key)
            _put_time(profile, r, rec, root, tz)
            container[key] = rec
    if profile.records.compiled.steps:
        profile.records.compiled.put(root, root, container)
        doc: Any = root
    elif root:  # root-level values (e.g. a message time) beside a top-level container
        if not isinstance(container, dict):
            raise ValueError(f"profile {profile.name}: root values need an object container")
        doc = {**root, **container}
    else:
        doc = container
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _registers(profile: PayloadProfile, items: Sequence[tuple[str, Reading]], tz: tzinfo,
               codec: RegisterCodec) -> bytes:
    spec = profile.registers
    assert spec is not None
    if len(items) != 1:
        raise ValueError(f"profile {profile.name} carries one meter per message")
    r = items[0][1]
    _, regs = codec.encode(spec.profile, {"rate_m3h": r.rate_m3h, "total_m3": r.total_m3,
                                          "signal_pct": r.signal_pct, "error_code": r.error_code})
    block = encode_block(regs, spec.encoding, spec.frame)
    if not spec.path:
        return block if isinstance(block, bytes) else block.encode("ascii")
    doc: dict[str, Any] = {}
    compile_path(spec.path).put(doc, doc, block)
    _put_time(profile, r, doc, doc, tz)
    return json.dumps(doc, separators=(",", ":")).encode("utf-8")
