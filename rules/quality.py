"""Data-quality and evasion detectors: what each meter's latest readings say about the data itself.

`MeterTrack` holds the little a detector needs from one meter's stream (updated by `observe` per reading).
Detectors are plain functions `(tracks, now, settings) -> Finding`, registered in `QUALITY_RULES` by
name; a finding is ACTIVE when any meter of the site shows the problem, with those meters as evidence.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from collector.model import Role
from rules.balance import Condition
from rules.counters import StepKind
from rules.settings import QualitySettings, Severity

__all__ = ["QUALITY_RULES", "Finding", "MeterTrack", "QualityPlan", "QualityRule", "observe"]


@dataclass(slots=True)
class MeterTrack:
    """The state of one meter's stream that the detectors read (mutable, owned by the engine)."""

    meter: str
    role: Role
    first_ts: float | None = None
    last_ts: float | None = None
    last_total: float | None = None
    last_rate: float | None = None
    last_signal: float | None = None
    last_error: int | None = None
    flat_since: float | None = None  # ts of the reading where the totalizer took its current value
    flat_expected_m3: float = 0.0  # volume the rate says passed since then
    reverse_since: float | None = None
    last_event_ts: float | None = None
    last_event: StepKind | None = None
    events: int = 0

    def frozen_candidate(self, min_m3: float) -> bool:
        """The totalizer stands still although the rate says `min_m3` or more passed (volume unknown)."""
        return self.flat_since is not None and self.flat_expected_m3 >= min_m3


def observe(track: MeterTrack, ts: float, rate: float | None, total: float | None, signal: float | None,
            error: int | None, step: StepKind | None) -> None:
    """Fold one reading (already known to be newer than the last) into the track."""
    prev_ts = track.last_ts
    if track.first_ts is None:
        track.first_ts = ts
    if total is not None:
        if track.last_total is None or total != track.last_total:
            track.flat_since = ts
            track.flat_expected_m3 = 0.0
        elif prev_ts is not None and rate is not None and rate > 0:
            prev_rate = track.last_rate if track.last_rate is not None else rate
            track.flat_expected_m3 += max(0.0, min(rate, prev_rate)) * (ts - prev_ts) / 3600.0
        track.last_total = total
    if rate is not None:
        if rate < 0:
            if track.reverse_since is None:
                track.reverse_since = ts
        else:
            track.reverse_since = None
    track.last_rate = rate
    track.last_signal = signal
    track.last_error = error
    track.last_ts = ts
    if step is not None and step in (StepKind.RESET, StepKind.WRAP, StepKind.JUMP):
        track.last_event_ts = ts
        track.last_event = step
        track.events += 1


@dataclass(frozen=True, slots=True)
class QualityPlan:
    """`QualitySettings` planned for the hot path: durations as seconds."""

    offline_after: float
    silent_after: float
    silent_hold: float
    running_m3h: float
    frozen_after: float
    frozen_min_m3: float
    frozen_hold: float
    reverse_m3h: float
    reverse_hold: float
    min_signal_pct: float
    signal_hold: float
    reset_hold: float
    discharge_m3h: float
    discharge_hold: float
    clear_for: float

    @classmethod
    def of(cls, q: QualitySettings) -> QualityPlan:
        raw = {name: getattr(q, name) for name in type(q).model_fields}
        values = {name: (v.total_seconds() if isinstance(v, timedelta) else float(v))
                  for name, v in raw.items()}
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Finding:
    condition: Condition
    meters: tuple[str, ...] = ()
    evidence: dict[str, Any] = field(default_factory=dict)


Detector = Callable[[Sequence[MeterTrack], float, QualityPlan], Finding]


@dataclass(frozen=True, slots=True)
class QualityRule:
    name: str
    kind: str  # "data_quality" | "discharge"
    severity: Severity
    hold: Callable[[QualityPlan], float]  # seconds the condition must last before firing
    detect: Detector


QUALITY_RULES: dict[str, QualityRule] = {}


def register(name: str, kind: str, severity: Severity,
             hold: Callable[[QualityPlan], float]) -> Callable[[Detector], Detector]:
    def deco(fn: Detector) -> Detector:
        if name in QUALITY_RULES:
            raise ValueError(f"quality rule {name!r} registered twice: give it another name")
        QUALITY_RULES[name] = QualityRule(name, kind, severity, hold, fn)
        return fn
    return deco


_CLEAR = Finding(Condition.CLEAR)


def _any(hits: list[str], evidence: dict[str, Any] | None = None) -> Finding:
    if hits:
        return Finding(Condition.ACTIVE, tuple(hits), evidence or {})
    return _CLEAR


@register("meter_offline", "data_quality", Severity.WARNING, lambda q: 0.0)
def meter_offline(tracks: Sequence[MeterTrack], now: float, q: QualityPlan) -> Finding:
    limit = q.offline_after
    hits = [t.meter for t in tracks if t.last_ts is None or now - t.last_ts > limit]
    last = {t.meter: t.last_ts for t in tracks if t.meter in hits}
    return _any(hits, {"last_seen": last})


@register("reinjection_silent", "data_quality", Severity.HIGH, lambda q: q.silent_hold)
def reinjection_silent(tracks: Sequence[MeterTrack], now: float, q: QualityPlan) -> Finding:
    limit = q.silent_after
    running = [t for t in tracks if t.role is Role.EXTRACTION and t.last_ts is not None
               and now - t.last_ts <= limit and (t.last_rate or 0.0) > q.running_m3h]
    reinjection = [t for t in tracks if t.role is Role.REINJECTION]
    if not running or not reinjection:
        return Finding(Condition.CLEAR)
    silent = [t.meter for t in reinjection if t.last_ts is None or now - t.last_ts > limit]
    rate = sum(t.last_rate or 0.0 for t in running)
    return _any(silent, {"extraction_rate_m3h": round(rate, 3)})


@register("totalizer_frozen", "data_quality", Severity.HIGH, lambda q: q.frozen_hold)
def totalizer_frozen(tracks: Sequence[MeterTrack], now: float, q: QualityPlan) -> Finding:
    after = q.frozen_after
    hits = [t.meter for t in tracks
            if t.flat_since is not None and t.last_ts is not None and t.flat_expected_m3 >= q.frozen_min_m3
            and t.last_ts - t.flat_since >= after]
    expected = {t.meter: round(t.flat_expected_m3, 3) for t in tracks if t.meter in hits}
    return _any(hits, {"expected_m3": expected})


@register("totalizer_reset", "data_quality", Severity.WARNING, lambda q: 0.0)
def totalizer_reset(tracks: Sequence[MeterTrack], now: float, q: QualityPlan) -> Finding:
    hold = q.reset_hold
    hits = [t.meter for t in tracks if t.last_event_ts is not None and now - t.last_event_ts <= hold]
    kinds = {t.meter: str(t.last_event) for t in tracks if t.meter in hits}
    return _any(hits, {"events": kinds})


@register("reverse_flow", "data_quality", Severity.HIGH, lambda q: q.reverse_hold)
def reverse_flow(tracks: Sequence[MeterTrack], now: float, q: QualityPlan) -> Finding:
    hits = [t.meter for t in tracks if t.reverse_since is not None and t.last_rate is not None
            and t.last_rate < -q.reverse_m3h]
    rates = {t.meter: t.last_rate for t in tracks if t.meter in hits}
    return _any(hits, {"rate_m3h": rates})


@register("signal_quality", "data_quality", Severity.WARNING, lambda q: q.signal_hold)
def signal_quality(tracks: Sequence[MeterTrack], now: float, q: QualityPlan) -> Finding:
    hits = [t.meter for t in tracks
            if (t.last_signal is not None and t.last_signal < q.min_signal_pct) or (t.last_error or 0) != 0]
    info = {t.meter: {"signal_pct": t.last_signal, "error_code": t.last_error} for t in tracks
            if t.meter in hits}
    return _any(hits, {"meters": info})


@register("discharge_flow", "discharge", Severity.HIGH, lambda q: q.discharge_hold)
def discharge_flow(tracks: Sequence[MeterTrack], now: float, q: QualityPlan) -> Finding:
    hits = [t.meter for t in tracks if t.role is Role.DISCHARGE and t.last_rate is not None
            and t.last_rate > q.discharge_m3h]
    rates = {t.meter: t.last_rate for t in tracks if t.meter in hits}
    return _any(hits, {"rate_m3h": rates})
