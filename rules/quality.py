"""Data-quality and evasion detectors: what each meter's latest readings say about the data itself.

`MeterTrack` holds the little a detector needs from one meter's stream (updated by `observe` per reading
and `note_change` per meter change).
Detectors are plain functions `(tracks, now, settings) -> Finding`, registered in `QUALITY_RULES` by
name; a finding is ACTIVE when any meter of the site shows the problem, with those meters as evidence.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final

from collector.model import ChangeKind, MeterChange, Role
from rules.balance import Condition
from rules.counters import REBASING, StepKind
from rules.settings import QualitySettings, Severity

__all__ = ["QUALITY_RULES", "ChangeSeen", "Finding", "MeterTrack", "QualityPlan", "QualityRule", "note_change",
           "observe"]

KEEP_CHANGES = 8
"""Meter changes a track remembers (the newest); more within one `change_hold` are counted, not listed."""


@dataclass(slots=True)
class ChangeSeen:
    """A meter change as the engine took it. Once the counter was rebased across it, `rebased` is set
    and `bridged_m3` is the volume of that step — taken from the meter's rate, not its totalizer (None:
    unknown)."""

    ts: float
    change: MeterChange
    rebased: bool = False
    bridged_m3: float | None = None


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
    events: int = 0  # counter resets and meter swaps seen: each restarts the site's sequential baseline
    changes: list[ChangeSeen] = field(default_factory=list)
    arrival_pct: float | None = None  # share of expected reports over the trailing 24 h; None: not judged

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


def note_change(track: MeterTrack, change: MeterChange, ts: float) -> None:
    """Fold one meter change (at epoch seconds `ts`) into the track; a swapped meter is a new instrument
    with its own bias, so it counts as an event that restarts the site's learned baseline."""
    track.changes.append(ChangeSeen(ts, change))
    del track.changes[:-KEEP_CHANGES]
    if change.kind is ChangeKind.SERIAL_CHANGED:
        track.events += 1


def note_bridged(track: MeterTrack, ts: float, volume_m3: float | None) -> None:
    """Record the rate-bridged volume of the rebased step ending at `ts` on the changes it crossed."""
    for seen in track.changes:
        if seen.change.kind in REBASING and seen.ts <= ts and not seen.rebased:
            seen.rebased = True
            seen.bridged_m3 = None if volume_m3 is None else round(volume_m3, 3)


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
    change_hold: float
    discharge_m3h: float
    discharge_hold: float
    clear_for: float
    min_arrival_pct: float

    @classmethod
    def of(cls, q: QualitySettings) -> QualityPlan:
        raw = {name: getattr(q, name) for name in type(q).model_fields}
        values = {name: (v.total_seconds() if isinstance(v, timedelta) else float(v))
                  for name, v in raw.items()}
        return cls(**values)


class Finding:
    """What a detector found; datetimes in `evidence` are shown in the configured time zone. A plain class
    with slots: every rule makes one per site and evaluation, and compiled, a dataclass is made through Python."""

    __slots__ = ("condition", "evidence", "meters")

    def __init__(self, condition: Condition, meters: tuple[str, ...] = (),
                 evidence: dict[str, Any] | None = None) -> None:
        self.condition = condition
        self.meters = meters
        self.evidence: dict[str, Any] = {} if evidence is None else evidence

    def __repr__(self) -> str:
        return f"Finding({self.condition!r}, {self.meters!r}, {self.evidence!r})"


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
# roles as constants: compiled, a member of an enum of a module outside the build is read through Python each time
_EXTRACTION: Final = Role.EXTRACTION
_REINJECTION: Final = Role.REINJECTION
_DISCHARGE: Final = Role.DISCHARGE


def _any(hits: list[str], evidence: dict[str, Any] | None = None) -> Finding:
    if hits:
        return Finding(Condition.ACTIVE, tuple(hits), evidence or {})
    return _CLEAR


@register("meter_offline", "data_quality", Severity.WARNING, lambda q: 0.0)
def meter_offline(tracks: Sequence[MeterTrack], now: float, q: QualityPlan) -> Finding:
    limit = q.offline_after
    hits = [t.meter for t in tracks if t.last_ts is None or now - t.last_ts > limit]
    if not hits:
        return _CLEAR
    last = {t.meter: t.last_ts for t in tracks if t.meter in hits}
    return _any(hits, {"last_seen": last})


def _silent_limit(q: QualityPlan) -> float:
    """Silence (s) after which a reinjection meter counts as silent: `silent_after`, but never less than
    `offline_after` — a gap shorter than that is a DTU hiccup and raises nothing, not even a pending alert."""
    return max(q.silent_after, q.offline_after)


def _silent_hold(q: QualityPlan) -> float:
    """What is left of `silent_after` + `silent_hold` once the silence passed `_silent_limit` (s)."""
    return max(0.0, q.silent_after + q.silent_hold - _silent_limit(q))


@register("reinjection_silent", "data_quality", Severity.HIGH, _silent_hold)
def reinjection_silent(tracks: Sequence[MeterTrack], now: float, q: QualityPlan) -> Finding:
    running = [t for t in tracks if t.role is _EXTRACTION and t.last_ts is not None
               and now - t.last_ts <= q.silent_after and (t.last_rate or 0.0) > q.running_m3h]
    reinjection = [t for t in tracks if t.role is _REINJECTION]
    if not running or not reinjection:
        return Finding(Condition.CLEAR)
    limit = _silent_limit(q)
    silent = [t.meter for t in reinjection if t.last_ts is None or now - t.last_ts > limit]
    rate = sum((t.last_rate or 0.0 for t in running), 0.0)
    return _any(silent, {"extraction_rate_m3h": round(rate, 3)})


@register("totalizer_frozen", "data_quality", Severity.HIGH, lambda q: q.frozen_hold)
def totalizer_frozen(tracks: Sequence[MeterTrack], now: float, q: QualityPlan) -> Finding:
    after = q.frozen_after
    hits = [t.meter for t in tracks
            if t.flat_since is not None and t.last_ts is not None and t.flat_expected_m3 >= q.frozen_min_m3
            and t.last_ts - t.flat_since >= after]
    if not hits:
        return _CLEAR
    expected = {t.meter: round(t.flat_expected_m3, 3) for t in tracks if t.meter in hits}
    return _any(hits, {"expected_m3": expected})


@register("totalizer_reset", "data_quality", Severity.WARNING, lambda q: 0.0)
def totalizer_reset(tracks: Sequence[MeterTrack], now: float, q: QualityPlan) -> Finding:
    hold = q.reset_hold
    hits = [t.meter for t in tracks if t.last_event_ts is not None and now - t.last_event_ts <= hold]
    if not hits:
        return _CLEAR
    kinds = {t.meter: str(t.last_event) for t in tracks if t.meter in hits}
    return _any(hits, {"events": kinds})


@register("reverse_flow", "data_quality", Severity.HIGH, lambda q: q.reverse_hold)
def reverse_flow(tracks: Sequence[MeterTrack], now: float, q: QualityPlan) -> Finding:
    hits = [t.meter for t in tracks if t.reverse_since is not None and t.last_rate is not None
            and t.last_rate < -q.reverse_m3h]
    if not hits:
        return _CLEAR
    rates = {t.meter: t.last_rate for t in tracks if t.meter in hits}
    return _any(hits, {"rate_m3h": rates})


@register("signal_quality", "data_quality", Severity.WARNING, lambda q: q.signal_hold)
def signal_quality(tracks: Sequence[MeterTrack], now: float, q: QualityPlan) -> Finding:
    hits = [t.meter for t in tracks
            if (t.last_signal is not None and t.last_signal < q.min_signal_pct) or (t.last_error or 0) != 0]
    if not hits:
        return _CLEAR
    info = {t.meter: {"signal_pct": t.last_signal, "error_code": t.last_error} for t in tracks
            if t.meter in hits}
    return _any(hits, {"meters": info})


@register("discharge_flow", "discharge", Severity.HIGH, lambda q: q.discharge_hold)
def discharge_flow(tracks: Sequence[MeterTrack], now: float, q: QualityPlan) -> Finding:
    hits = [t.meter for t in tracks if t.role is _DISCHARGE and t.last_rate is not None
            and t.last_rate > q.discharge_m3h]
    if not hits:
        return _CLEAR
    rates = {t.meter: t.last_rate for t in tracks if t.meter in hits}
    return _any(hits, {"rate_m3h": rates})


@register("meter_changed", "data_quality", Severity.HIGH, lambda q: 0.0)
def meter_changed(tracks: Sequence[MeterTrack], now: float, q: QualityPlan) -> Finding:
    """An identity register changed: a swapped meter, a new totalizer unit or multiplier, a touched
    calibration — what tampering looks like. Active from the change until `change_hold` without another."""
    hold = q.change_hold
    recent = [(t.meter, s) for t in tracks for s in t.changes if 0.0 <= now - s.ts <= hold]
    if not recent:
        return _CLEAR
    recent.sort(key=lambda ms: ms[1].ts)
    listed = [{"meter": m, "kind": s.change.kind.value, "field": s.change.field, "old": s.change.old,
               "new": s.change.new, "at": s.change.ts,
               **({"bridged_m3": s.bridged_m3} if s.rebased else {})} for m, s in recent]
    latest = listed[-1]
    meters = list(dict.fromkeys(m for m, _ in recent))
    return Finding(Condition.ACTIVE, tuple(meters),
                   {"meter": latest["meter"], "kind": latest["kind"], "field": latest["field"],
                    "old": latest["old"], "new": latest["new"], "changes": listed})


@register("low_arrival", "data_quality", Severity.WARNING, lambda q: 0.0)
def low_arrival(tracks: Sequence[MeterTrack], now: float, q: QualityPlan) -> Finding:
    """Fewer reports arrived over the trailing 24 h than `min_arrival_pct` of those expected (到报率): readings
    lost upstream (a DTU, the cellular network, a broker's queue). Judged once a meter was configured a day."""
    hits = [t.meter for t in tracks if t.arrival_pct is not None and t.arrival_pct < q.min_arrival_pct]
    if not hits:
        return _CLEAR
    pct = {t.meter: round(t.arrival_pct, 1) for t in tracks if t.meter in hits and t.arrival_pct is not None}
    return _any(hits, {"arrival_pct": pct, "min_arrival_pct": q.min_arrival_pct})
