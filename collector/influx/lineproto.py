"""Line protocol for the schema in DESIGN.md, escaped exactly as `influxdb_client.Point` escapes.

The tag part of a meter's lines never changes, so it is built once per (site, meter, role) and cached;
each reading then only formats numbers. The escaping tables are influxdb-client's (copied: importing that
client costs a v1 deployment ~11 MB of memory for nothing); a unit test checks that every line equals
`Point(...).to_line_protocol()` for the same data.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import datetime

from collector.model import Reading, Site

__all__ = ["FlowSchema", "format_line", "to_ms"]

FieldValue = float | int | str | bool | None


_ESCAPE_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"})
_ESCAPE_KEY = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"})


def _escape_tag_value(value: str) -> str:
    out = value.translate(_ESCAPE_KEY)
    return out + " " if out.endswith("\\") else out


def to_ms(ts: datetime) -> int:
    """Milliseconds since the epoch: the write precision used everywhere."""
    return round(ts.timestamp() * 1000)


def _escape_string(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _field(value: FieldValue) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        s = str(value)
        return s[:-2] if s.endswith(".0") else s
    return f'"{_escape_string(value)}"'


def _float(value: float) -> str:
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def _tag_part(measurement: str, tags: Mapping[str, str | None]) -> str:
    out = [measurement.translate(_ESCAPE_MEASUREMENT)]
    for key, value in sorted(tags.items()):
        if value is None:
            continue
        k, v = key.translate(_ESCAPE_KEY), _escape_tag_value(value)
        if k and v:
            out.append(f"{k}={v}")
    return ",".join(out)


def format_line(measurement: str, tags: Mapping[str, str | None], fields: Mapping[str, FieldValue],
                ts_ms: int) -> str:
    """One line of line protocol; tags and field keys sorted, None and non-finite fields left out."""
    parts = []
    for key, value in sorted(fields.items()):
        text = _field(value)
        if text is not None:
            parts.append(f"{key.translate(_ESCAPE_KEY)}={text}")
    if not parts:
        raise ValueError(f"a {measurement} point needs at least one field")
    return f"{_tag_part(measurement, tags)} {','.join(parts)} {ts_ms}"


class FlowSchema:
    """Encodes readings as `flow` lines with tags site, meter, role, district (from config, never payload);
    an interval volume is stored as `volume_m3` with its `period_s`, beside (never instead of) a total."""

    MEASUREMENT = "flow"

    def __init__(self, sites: Iterable[Site]) -> None:
        self._district = {s.id: s.district for s in sites}
        self._prefix: dict[tuple[str, str, str], str] = {}

    def line(self, r: Reading) -> str:
        key = (r.site, r.meter, r.role)
        prefix = self._prefix.get(key)
        if prefix is None:
            prefix = _tag_part(self.MEASUREMENT, {"site": r.site, "meter": r.meter, "role": r.role.value,
                                                  "district": self._district.get(r.site)})
            self._prefix[key] = prefix
        # the hot path: fields in sorted order, as Point writes them; numbers always as floats
        fields = f"error_code={int(r.error_code)}i," if r.error_code is not None else ""
        if r.period_s is not None:  # an interval volume: the water of [ts − period_s, ts]
            fields += f"period_s={_float(r.period_s)},"
        if r.rate_m3h is not None:
            fields += f"rate_m3h={_float(r.rate_m3h)},"
        if r.signal_pct is not None:
            fields += f"signal_pct={_float(r.signal_pct)},"
        if r.total_m3 is not None:
            fields += f"total_m3={_float(r.total_m3)},"
        if r.volume_m3 is not None:
            fields += f"volume_m3={_float(r.volume_m3)},"
        return f"{prefix} {fields[:-1]} {round(r.ts.timestamp() * 1000)}"

    def lines(self, readings: Iterable[Reading]) -> list[str]:
        return [self.line(r) for r in readings]
