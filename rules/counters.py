"""Reset-aware totalizer increase: what volume one meter passed between two readings, or over a window.

Semantics (not Prometheus' nor Flux'): a drop within the noise deadband is 0 volume; a larger drop is a
reset, replacement or rollover — never a negative volume, and an event; a forward step above the highest
plausible flow × Δt × margin is rejected and flagged; a gap longer than the tolerance is *unknown* volume,
not zero — but a step across it is still judged (`GapCheck`): above max flow × gap × margin, or above the
meter's higher rate either side × gap × `gap_rate_margin` (gaps up to `gap_rate_within`), it is a jump.
After a noise dip the counter keeps its higher reference, so the dip is not counted again on the way back
up. Window edges are interpolated linearly between the readings around them; nothing is
extrapolated past the last reading.

A meter change that makes totals before and after it incomparable (a swapped meter, a new totalizer unit
or multiplier) *rebases* the counter: the step across it is neither volume nor a reset. Its water is
bridged by the meter's rate over that one step (`rebase_step`), and counting goes on from the new value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from collector.model import ChangeKind
from rules.settings import CounterSettings

__all__ = ["REBASING", "CounterPlan", "Coverage", "GapCheck", "Increase", "Step", "StepKind", "classify_step",
           "increase", "rebase_step"]

REBASING = frozenset({ChangeKind.SERIAL_CHANGED, ChangeKind.UNIT_CHANGED, ChangeKind.MULTIPLIER_CHANGED})
"""Meter changes after which the totalizer is another counter (a user scale factor only rescales flow)."""


class StepKind(StrEnum):
    NORMAL = "normal"  # forward (or flat) step: its delta is the volume
    NOISE = "noise"  # a drop within the deadband: 0 volume
    WRAP = "wrap"  # rolled over at the known wrap point: (new − old) mod wrap
    RESET = "reset"  # a large drop; volume counted from 0 when the new value is plausible, else unknown
    JUMP = "jump"  # forward step above what the meter can pass: rejected, unknown volume
    GAP = "gap"  # readings too far apart: unknown volume
    REBASE = "rebase"  # across a meter change: the counter restarts from its new value, bridged by the rate


class Coverage(StrEnum):
    COMPLETE = "complete"
    INCOMPLETE = "incomplete"


class Step:
    """One totalizer step. A plain class with slots, not a dataclass or named tuple: one is made per reading,
    and compiled, such a class is made several times faster than either."""

    __slots__ = ("kind", "volume_m3")

    def __init__(self, kind: StepKind, volume_m3: float | None) -> None:
        self.kind = kind
        self.volume_m3 = volume_m3  # None = unknown

    def __repr__(self) -> str:
        return f"Step({self.kind!r}, {self.volume_m3!r})"

    @property
    def is_event(self) -> bool:
        return self.kind in (StepKind.WRAP, StepKind.RESET, StepKind.JUMP)


class CounterPlan:
    """`CounterSettings` for the per-reading path: plain attributes, read natively when compiled, where a
    settings model's are read through Python."""

    __slots__ = ("judge_gaps", "jump_margin", "max_flow_m3h", "noise_deadband_m3", "wrap_m3")

    def __init__(self, settings: CounterSettings) -> None:
        self.noise_deadband_m3: float = settings.noise_deadband_m3
        self.max_flow_m3h: float = settings.max_flow_m3h
        self.jump_margin: float = settings.jump_margin
        self.wrap_m3: float | None = settings.wrap_m3
        self.judge_gaps: bool = settings.judge_gaps


@dataclass(frozen=True, slots=True)
class GapCheck:
    """What a step across a gap is judged by besides max flow: the meter's higher rate on either side of
    it (None: unknown), for gaps up to `within_s`, times `margin`."""

    rate_m3h: float | None
    margin: float
    within_s: float


def classify_step(prev_total: float, cur_total: float, dt_s: float, gap_tolerance_s: float,
                  plan: CounterPlan, gap: GapCheck | None = None) -> Step:
    """Judge the totalizer step between two consecutive readings `dt_s` seconds apart; across a gap, its
    volume is unknown, and with `gap` given a forward step the meter cannot have passed is a jump."""
    delta = cur_total - prev_total
    if dt_s > gap_tolerance_s:
        # volume across a long gap is unknown; a large drop across it is still a reset (meter swapped)
        if -delta > plan.noise_deadband_m3 and plan.wrap_m3 is None:
            return Step(StepKind.RESET, None)
        if gap is not None and delta > _gap_limit(dt_s, plan, gap):
            return Step(StepKind.JUMP, None)
        return Step(StepKind.GAP, None)
    plausible = plan.max_flow_m3h * max(dt_s, 1.0) / 3600.0 * plan.jump_margin
    if delta >= 0:
        if delta > plausible + plan.noise_deadband_m3:
            return Step(StepKind.JUMP, None)
        return Step(StepKind.NORMAL, delta)
    if -delta <= plan.noise_deadband_m3:
        return Step(StepKind.NOISE, 0.0)
    if plan.wrap_m3 is not None:
        wrapped = delta % plan.wrap_m3
        if wrapped <= plausible + plan.noise_deadband_m3:
            return Step(StepKind.WRAP, wrapped)
    if cur_total <= plausible + plan.noise_deadband_m3:
        return Step(StepKind.RESET, cur_total)
    return Step(StepKind.RESET, None)


def _gap_limit(dt_s: float, plan: CounterPlan, gap: GapCheck) -> float:
    """The largest forward step a meter can show across a gap of `dt_s` seconds."""
    limit = plan.max_flow_m3h * dt_s / 3600.0 * plan.jump_margin
    if gap.rate_m3h is not None and dt_s <= gap.within_s:
        limit = min(limit, max(gap.rate_m3h, 0.0) * dt_s / 3600.0 * gap.margin)
    return limit + plan.noise_deadband_m3


def rebase_step(prev_rate: float | None, cur_rate: float | None, dt_s: float, gap_tolerance_s: float,
                plan: CounterPlan) -> Step:
    """The step across a rebasing meter change: the totalizer delta means nothing, so the volume is the
    rate (the mean of the two readings', or the one that is known) over `dt_s`, never negative and never
    more than the meter can pass; unknown across a gap or without any rate."""
    if dt_s > gap_tolerance_s:
        return Step(StepKind.GAP, None)
    rates = [r for r in (prev_rate, cur_rate) if r is not None]
    if not rates:
        return Step(StepKind.REBASE, None)
    mean = max(0.0, sum(rates) / len(rates))
    return Step(StepKind.REBASE, min(mean, plan.max_flow_m3h) * max(dt_s, 0.0) / 3600.0)


@dataclass(frozen=True, slots=True)
class Increase:
    """Volume one meter passed over a window; `volume_m3` is None when the coverage is incomplete."""

    volume_m3: float | None
    coverage: Coverage
    events: tuple[tuple[float, StepKind], ...] = ()  # (ts of the later reading, kind)


def increase(ts: Sequence[float], totals: Sequence[float], start: float, end: float,
             gap_tolerance_s: float, settings: CounterSettings) -> Increase:
    """Reset-aware increase of one totalizer over [start, end] (epoch seconds), interpolated at the edges.

    `ts` must be increasing. The window is incomplete when no reading lies at or before `start` or at or
    after `end`, or when a step overlapping the window has unknown volume (gap, rejected jump, implausible
    reset).
    """
    if end <= start:
        raise ValueError(f"window end {end} is not after its start {start}: pass start < end")
    n = len(ts)
    events: list[tuple[float, StepKind]] = []
    if n < 2 or ts[0] > start or ts[-1] < end:
        return Increase(None, Coverage.INCOMPLETE)
    volume = 0.0
    known = True
    plan = CounterPlan(settings)
    ref = totals[0]  # the counter's reference: a noise dip does not lower it
    for i in range(1, n):
        t0, t1 = ts[i - 1], ts[i]
        step = classify_step(ref, totals[i], t1 - t0, gap_tolerance_s, plan)
        if step.kind is not StepKind.NOISE:
            ref = totals[i]
        if t1 <= start or t0 >= end:
            continue
        if step.is_event or step.kind is StepKind.GAP:
            events.append((t1, step.kind))
        if step.volume_m3 is None:
            known = False
            continue
        overlap = min(t1, end) - max(t0, start)
        volume += step.volume_m3 * overlap / (t1 - t0)
    if not known:
        return Increase(None, Coverage.INCOMPLETE, tuple(events))
    return Increase(volume, Coverage.COMPLETE, tuple(events))
