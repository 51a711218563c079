"""Query parameters shared by the routes: times (ISO-8601 with an offset) and history steps."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Query

from collector.duration import parse_duration
from gshp.api.errors import refused

__all__ = ["MAX_POINTS", "From", "To", "parse_time", "step_seconds"]

MAX_POINTS = 20_000
"""History routes answer at most this many steps per series."""

From = Annotated[str | None, Query(alias="from", description="ISO-8601 with an offset, e.g. 2026-07-01T08:00:00+08:00")]
To = Annotated[str | None, Query(description="ISO-8601 with an offset; the end is excluded")]


def parse_time(value: str | None, name: str) -> datetime | None:
    """A time parameter, refused (422) without an offset or when unreadable."""
    if value is None:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise refused(422, f"{name}：不是 ISO-8601 时间（如 2026-07-01T08:00:00+08:00）",
                      f"{name}: not an ISO-8601 time (e.g. 2026-07-01T08:00:00+08:00)") from None
    if t.tzinfo is None:
        raise refused(422, f"{name}：请写明时区偏移（如 +08:00 或 Z）",
                      f"{name}: give a time zone offset (e.g. +08:00 or Z)")
    return t


def step_seconds(step: str, start: datetime, stop: datetime) -> int:
    """A history route's `step` in seconds, refused (422) when unreadable or too fine for the range."""
    try:
        step_s = int(parse_duration(step).total_seconds())
    except ValueError as exc:
        raise refused(422, "step：无法识别的时长", f"step: {exc}") from None
    if step_s < 1 or (stop - start).total_seconds() / step_s > MAX_POINTS:
        most = f"{MAX_POINTS:,}".replace(",", " ")
        raise refused(422, f"step：对此时间范围过细（每条曲线最多 {most} 个点）",
                      f"step: too fine for this range (at most {most} points per series)")
    return step_s
