"""Durations as people write them in config files: ``500ms``, ``1s``, ``10s``, ``5m``, ``2h``, ``1d``."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

from collector.problems import ZhEn

__all__ = ["Duration", "format_duration", "parse_duration"]

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_NOT_A_DURATION = ZhEn("须为时长，如 500ms、10s、5m、1h", "expected a duration like 500ms, 10s, 5m, 1h")


def parse_duration(value: Any) -> timedelta:
    """Parse ``1h30m``, ``500ms``, ``10s`` or a bare number of seconds into a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError(_NOT_A_DURATION)
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(ZhEn("时长不能为负", "a duration cannot be negative"))
        return timedelta(seconds=value)
    if not isinstance(value, str):
        raise ValueError(_NOT_A_DURATION)
    text = value.strip().replace(" ", "")
    pos, seconds = 0, 0.0
    for m in _PART.finditer(text):
        if m.start() != pos:
            break
        seconds += float(m.group(1)) * _UNIT_S[m.group(2)]
        pos = m.end()
    if not text or pos != len(text):
        raise ValueError(ZhEn(f"{value!r} 不是时长：请写成如 500ms、10s、5m、1h 或 1h30m",
                              f"{value!r} is not a duration: write e.g. 500ms, 10s, 5m, 1h or 1h30m"))
    return timedelta(seconds=seconds)


def format_duration(td: timedelta) -> str:
    """The shortest exact spelling of a duration (``90s`` → ``1m30s``)."""
    ms = round(td.total_seconds() * 1000)
    if ms == 0:
        return "0s"
    out = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        n, ms = divmod(ms, size)
        if n:
            out.append(f"{n}{unit}")
    return "".join(out)


Duration = Annotated[timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration)]
