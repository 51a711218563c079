"""Device timestamps as DTUs send them: epoch seconds or milliseconds, ISO-8601, or local-time text.

Naive text (no offset) is local time in the configured time zone. `auto` tells seconds from
milliseconds by magnitude (above 10¹¹ it is milliseconds: 10¹¹ s is the year 5138, 10¹¹ ms 1973).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, tzinfo
from enum import StrEnum
from typing import Any

__all__ = ["TimeFormat", "format_timestamp", "parse_timestamp"]

_MS_THRESHOLD = 1e11


class TimeFormat(StrEnum):
    AUTO = "auto"
    EPOCH_S = "epoch_s"
    EPOCH_MS = "epoch_ms"
    ISO8601 = "iso8601"
    LOCAL = "local"  # text in `pattern` (strptime), in the configured time zone


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _from_epoch(seconds: float) -> datetime:
    if not math.isfinite(seconds):
        raise ValueError("not a finite number")
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise ValueError(f"epoch {seconds!r} is out of range") from None


def _iso(text: str, tz: tzinfo) -> datetime:
    dt = datetime.fromisoformat(text.strip())
    return dt.replace(tzinfo=tz) if dt.tzinfo is None else dt


def parse_timestamp(value: Any, fmt: TimeFormat, tz: tzinfo, pattern: str | None = None) -> datetime:
    """A timezone-aware UTC datetime; raises ValueError with a short reason."""
    if fmt is TimeFormat.EPOCH_S or fmt is TimeFormat.EPOCH_MS:
        n = _number(value)
        if n is None:
            raise ValueError(f"expected a number of {'seconds' if fmt is TimeFormat.EPOCH_S else 'ms'}")
        return _from_epoch(n if fmt is TimeFormat.EPOCH_S else n / 1000)
    if fmt is TimeFormat.LOCAL:
        if not isinstance(value, str) or pattern is None:
            raise ValueError("expected local-time text")
        return datetime.strptime(value.strip(), pattern).replace(tzinfo=tz).astimezone(UTC)
    if fmt is TimeFormat.ISO8601:
        if not isinstance(value, str):
            raise ValueError("expected ISO-8601 text")
        return _iso(value, tz).astimezone(UTC)
    # auto
    n = _number(value)
    if n is not None:
        return _from_epoch(n / 1000 if abs(n) >= _MS_THRESHOLD else n)
    if isinstance(value, str):
        return _iso(value, tz).astimezone(UTC)
    raise ValueError("expected epoch seconds/milliseconds or ISO-8601 text")


def format_timestamp(ts: datetime, fmt: TimeFormat, tz: tzinfo, pattern: str | None = None) -> Any:
    """The inverse of `parse_timestamp` (used by the simulator); `auto` writes epoch milliseconds."""
    if fmt is TimeFormat.EPOCH_S:
        return round(ts.timestamp())
    if fmt is TimeFormat.EPOCH_MS or fmt is TimeFormat.AUTO:
        return round(ts.timestamp() * 1000)
    if fmt is TimeFormat.ISO8601:
        return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert pattern is not None
    return ts.astimezone(tz).strftime(pattern)
