"""The report's chart: extraction, reinjection and deficit flow over the readings' span, as inline SVG (no
script, no external file), with the incident's span shaded. Pure functions: readings in, SVG text out."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from html import escape

__all__ = ["ChartPoint", "FlowBuckets", "RateSample", "flow_chart_svg"]

MAX_POINTS = 400
MIN_BUCKET = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class RateSample:
    ts: datetime
    meter: str
    role: str
    rate_m3h: float


@dataclass(frozen=True, slots=True)
class ChartPoint:
    ts: datetime
    extraction_m3h: float
    reinjection_m3h: float

    @property
    def deficit_m3h(self) -> float:
        return self.extraction_m3h - self.reinjection_m3h


class FlowBuckets:
    """Readings folded as they come (in chunks, however many) into at most `MAX_POINTS` buckets of at least
    5 minutes over [start, end): per bucket and meter the sum and count of rates. Bounded in memory by the
    buckets, not by the readings."""

    def __init__(self, start: datetime, end: datetime) -> None:
        self.start = start
        self.bucket = max(MIN_BUCKET.total_seconds(), (end - start).total_seconds() / MAX_POINTS)
        self._sums: dict[tuple[int, str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])

    def add(self, samples: Iterable[RateSample]) -> None:
        for s in samples:
            if s.role not in ("extraction", "reinjection") or not math.isfinite(s.rate_m3h):
                continue
            k = int((s.ts - self.start).total_seconds() // self.bucket)
            if k >= 0:
                acc = self._sums[(k, s.role, s.meter)]
                acc[0] += s.rate_m3h
                acc[1] += 1

    def points(self) -> list[ChartPoint]:
        """Each meter's mean rate per bucket, summed per side; a bucket where a side has no reading is left
        out rather than drawn as zero."""
        sides: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for (k, role, _), (total, n) in self._sums.items():
            sides[k][role] += total / n
        return [ChartPoint(self.start + timedelta(seconds=k * self.bucket), sides[k]["extraction"],
                           sides[k]["reinjection"])
                for k in sorted(sides) if "extraction" in sides[k] and "reinjection" in sides[k]]


W, H, LEFT, RIGHT, TOP, BOTTOM = 960, 320, 56, 16, 16, 40
SERIES = (("extraction", "#1565c0", "抽水 Extraction"), ("reinjection", "#2e7d32", "回灌 Reinjection"),
          ("deficit", "#c62828", "差额 Deficit"))


def _nice_step(span: float) -> float:
    raw = span / 5 or 1.0
    mag = 10 ** math.floor(math.log10(raw))
    return float(next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw))


def flow_chart_svg(points: Sequence[ChartPoint], shade: tuple[datetime, datetime] | None, tz: tzinfo) -> str:
    """The chart as an `<svg>` element: three lines in m³/h over time (in `tz`), `shade` the incident's span."""
    if not points:
        return ('<svg width="960" height="60" role="img">'
                '<text x="8" y="30">无读数 No readings in this span</text></svg>')
    t0, t1 = points[0].ts.timestamp(), points[-1].ts.timestamp()
    t1 = t1 if t1 > t0 else t0 + 1
    values = [v for p in points for v in (p.extraction_m3h, p.reinjection_m3h, p.deficit_m3h)]
    lo, hi = min(0.0, *values), max(0.0, *values)
    hi = hi if hi > lo else lo + 1
    step = _nice_step(hi - lo)
    lo, hi = math.floor(lo / step) * step, math.ceil(hi / step) * step

    def x(t: float) -> float:
        return LEFT + (t - t0) / (t1 - t0) * (W - LEFT - RIGHT)

    def y(v: float) -> float:
        return TOP + (hi - v) / (hi - lo) * (H - TOP - BOTTOM)

    out = [f'<svg viewBox="0 0 {W} {H}" width="100%" role="img" '
           'aria-label="抽水、回灌与差额流量 Extraction, reinjection and deficit flow" font-size="11" '
           'font-family="sans-serif">']
    if shade is not None:
        a, b = max(shade[0].timestamp(), t0), min(shade[1].timestamp(), t1)
        if b > a:
            out.append(f'<rect class="incident-span" x="{x(a):.1f}" y="{TOP}" width="{x(b) - x(a):.1f}" '
                       f'height="{H - TOP - BOTTOM}" fill="#ffebee"/>')
    v = lo
    while v <= hi + step / 2:
        out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"/>'
                   f'<text x="{LEFT - 4}" y="{y(v) + 4:.1f}" text-anchor="end">{v:g}</text>')
        v += step
    for i in range(6):
        t = t0 + (t1 - t0) * i / 5
        label = datetime.fromtimestamp(t, tz).strftime("%m-%d %H:%M")
        out.append(f'<text x="{x(t):.1f}" y="{H - BOTTOM + 16}" text-anchor="middle">{label}</text>')
    out.append(f'<text x="4" y="{TOP + 8}" font-size="10">m³/h</text>')
    for name, color, _ in SERIES:
        coords = " ".join(f"{x(p.ts.timestamp()):.1f},{y(getattr(p, name + '_m3h')):.1f}" for p in points)
        out.append(f'<polyline class="{name}" fill="none" stroke="{color}" stroke-width="1.5" points="{coords}"/>')
    for i, (_, color, label) in enumerate(SERIES):
        lx = LEFT + 10 + i * 170
        out.append(f'<rect x="{lx}" y="{H - 14}" width="12" height="4" fill="{color}"/>'
                   f'<text x="{lx + 16}" y="{H - 9}">{escape(label)}</text>')
    out.append("</svg>")
    return "".join(out)
