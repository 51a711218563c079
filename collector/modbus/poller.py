"""Poll the meters behind one gateway: one request at a time, healthy units first, failures isolated."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from collector.metrics import (
    MODBUS_CYCLE_SECONDS,
    MODBUS_EVENTS,
    MODBUS_FAILURES,
    MODBUS_OFFLINE,
    MODBUS_OVERRUNS,
    MODBUS_POLLS,
)
from collector.modbus.codec import DecodeError
from collector.modbus.collection import GatewayPlan, MeterPlan
from collector.modbus.errors import ErrorClass, ReadError
from collector.modbus.health import MeterState, UnitHealth
from collector.modbus.plan import ReadRequest
from collector.modbus.profile import FieldSpec, Function, combine
from collector.modbus.transport import Link
from collector.model import MeterChange, ModelError, Reading

__all__ = ["Clock", "EventSink", "GatewayPoller", "MeterPoll", "PollSink", "RawBlock", "ReadingSink"]

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
ReadingSink = Callable[[list[Reading]], None]
EventSink = Callable[[MeterChange], None]
PollSink = Callable[[list["MeterPoll"]], None]

Value = int | float


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class RawBlock:
    """Registers as read, kept beside decoded values (commissioning output, re-processing)."""

    function: Function
    address: int
    registers: tuple[int, ...]

    def hex(self) -> list[str]:
        return [f"{r:04x}" for r in self.registers]

    @property
    def key(self) -> str:
        return f"{self.function.value}:{self.address}"


@dataclass(frozen=True, slots=True)
class MeterPoll:
    """The outcome of polling one meter once: a reading, or the error, with the raw registers."""

    site: str
    meter: str
    gateway: str
    unit: int
    profile: str
    ts: datetime
    reading: Reading | None
    values: Mapping[str, Value | None]
    identity: Mapping[str, Value]
    raw: tuple[RawBlock, ...]
    error: ReadError | None

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_dict(self) -> dict[str, object]:
        r = self.reading
        out: dict[str, object] = {
            "site": self.site, "meter": self.meter, "gateway": self.gateway, "unit": self.unit,
            "profile": self.profile, "ts": self.ts.isoformat(),
            "rate_m3h": r.rate_m3h if r else None, "total_m3": r.total_m3 if r else None,
            "signal_pct": r.signal_pct if r else None, "error_code": r.error_code if r else None,
            "values": dict(self.values), "identity": dict(self.identity),
            "raw": {b.key: b.hex() for b in self.raw},
        }
        if self.error is not None:
            out["error"] = str(self.error)
            out["error_class"] = self.error.error_class.value
            if self.error.exception_code is not None:
                out["exception_code"] = self.error.exception_code
        return out


Slots = list[tuple[str, int, int, Callable[[Sequence[int], int], Value]]]


def _slots(reads: tuple[ReadRequest, ...], fields: Mapping[str, FieldSpec]) -> Slots:
    """Where each field sits: (name, index of its read, offset in that read, compiled decoder)."""
    out: Slots = []
    for i, req in enumerate(reads):
        for name in req.fields:
            spec = fields[name]
            out.append((name, i, spec.address - req.address, spec.compiled()))
    return out


def _decode(slots: Slots, blocks: list[list[int]]) -> dict[str, Value]:
    return {name: fn(blocks[i], offset) for name, i, offset, fn in slots}


@dataclass(slots=True)
class _Run:
    """Runtime state of one meter."""

    plan: MeterPlan
    health: UnitHealth
    poll_slots: Slots
    identity_slots: Slots
    identity: dict[str, Value] | None = None
    identity_at: float = 0.0
    last_total: float | None = None  # the last decoded total: a step back or a leap re-reads identity
    falling: bool = False  # the last total was below the one before (reverse flow on a net total)
    failures: dict[ErrorClass, object] = field(default_factory=dict)


def _as_float(v: Value | None) -> float | None:
    return None if v is None else float(v)


class GatewayPoller:
    def __init__(self, plan: GatewayPlan, on_readings: ReadingSink, on_event: EventSink | None = None,
                 on_polls: PollSink | None = None, clock: Clock = utc_now) -> None:
        gw = plan.gateway
        self.gateway = gw
        self.link = Link(gw)
        self._on_readings = on_readings
        self._on_event = on_event
        self._on_polls = on_polls
        self._clock = clock
        self._interval = gw.interval.total_seconds()
        self._worst_request = gw.timeout.total_seconds() * (gw.retries + 1)
        self._identity_every = gw.identity_interval.total_seconds()
        self._runs = [
            _Run(m, UnitHealth(self._interval, gw.offline_after, gw.backoff_max.total_seconds()),
                 _slots(m.reads, m.profile.fields), _slots(m.identity_reads, m.profile.fields))
            for m in plan.meters
        ]
        self._polls_ok = MODBUS_POLLS.labels(gw.id)
        self._overruns = MODBUS_OVERRUNS.labels(gw.id)
        self._cycle_seconds = MODBUS_CYCLE_SECONDS.labels(gw.id)
        self._offline = MODBUS_OFFLINE.labels(gw.id)
        self._overrunning = False
        self._closing = False
        self._idle = asyncio.Event()
        self._idle.set()
        self.cycles = 0
        self.overruns = 0
        self.down: tuple[float, str] | None = None  # since (`time.monotonic()`) no unit answered, and why

    @property
    def states(self) -> dict[str, MeterState]:
        return {r.plan.key: r.health.state for r in self._runs}

    # -- scheduling entry points -----------------------------------------------------------------------

    async def cycle(self) -> list[MeterPoll]:
        """Poll every unit that is due; units in cool-down wait, and are probed last."""
        if self._closing:
            return []
        self._idle.clear()
        try:
            return await self._cycle()
        finally:
            self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        """Stop starting cycles and wait (bounded) for a running one to finish; False if it did not."""
        self._closing = True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def _cycle(self) -> list[MeterPoll]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        due = [r for r in self._runs if r.health.due(start)]
        due.sort(key=lambda r: r.health.state in (MeterState.FAILING, MeterState.OFFLINE))
        polls: list[MeterPoll] = []
        end = start + self._interval
        for run in due:
            failing = run.health.state in (MeterState.FAILING, MeterState.OFFLINE)
            if failing and polls and loop.time() + self._worst_request > end:
                continue  # no time left this cycle to probe a failing unit; it stays due
            polls.append(await self._poll(run, start))
        self._after_cycle(polls, loop.time() - start)
        return polls

    async def poll_all(self) -> list[MeterPoll]:
        """Poll every unit once regardless of cool-down (`gshp poll`)."""
        start = asyncio.get_running_loop().time()
        polls = [await self._poll(run, start) for run in self._runs]
        self._after_cycle(polls, asyncio.get_running_loop().time() - start)
        return polls

    def close(self) -> None:
        self.link.close()

    # -- one meter -------------------------------------------------------------------------------------

    async def _poll(self, run: _Run, cycle_start: float) -> MeterPoll:
        plan = run.plan
        raw: list[RawBlock] = []
        events: list[MeterChange] = []
        values: dict[str, Value | None] = {}
        reading: Reading | None = None
        error: ReadError | None = None
        ts: datetime | None = None
        async with self.link.lock:
            try:
                now = asyncio.get_running_loop().time()
                if run.identity is None or now - run.identity_at >= self._identity_every:
                    await self._refresh_identity(run, raw, events)
                blocks: list[list[int]] = []
                for req in plan.reads:
                    regs = await self.link.read(req.function, req.address, req.count, plan.unit)
                    blocks.append(regs)
                    raw.append(RawBlock(req.function, req.address, tuple(regs)))
                ts = self._clock()
                fields = _decode(run.poll_slots, blocks)
                fields.update(run.identity or {})
                values = combine(plan.profile, fields)
                if plan.identity_reads and self._identity_suspect(run, values):
                    # a change found now is stamped with this reading's time: it holds from this reading on
                    await self._refresh_identity(run, raw, events, ts)
                    fields.update(run.identity or {})
                    values = combine(plan.profile, fields)
                reading = self._reading(plan, ts, values)
                total = reading.total_m3
                if total is not None and run.last_total is not None:
                    run.falling = total < run.last_total
                run.last_total = total
            except ReadError as exc:
                error = exc
            except (DecodeError, ModelError) as exc:
                error = ReadError(ErrorClass.DECODE, str(exc))
        for ev in events:
            MODBUS_EVENTS.labels(ev.kind.value).inc()
            log.warning("meter %s: %s %s: %r → %r", plan.key, ev.kind.value, ev.field, ev.old, ev.new)
            if self._on_event is not None:
                try:
                    self._on_event(ev)
                except Exception:
                    log.exception("meter event sink failed")
        poll = MeterPoll(plan.site.id, plan.meter.id, self.gateway.id, plan.unit, plan.profile.name,
                         ts or self._clock(), reading, values, run.identity or {}, tuple(raw), error)
        self._record(run, poll, cycle_start)
        return poll

    @staticmethod
    def _identity_suspect(run: _Run, values: Mapping[str, Value | None]) -> bool:
        """Whether the values just decoded may rest on stale identity, so it is re-read before they are
        trusted: the totalizer disagrees with its copy (the profile's `check`: multiplier or unit changed),
        it started to go backwards (a swapped meter; a net total falling through reverse flow is re-read
        once, not on every poll), or it more than doubled (a rescale on a profile without a check)."""
        check = run.plan.profile.check
        if check is not None and not check.agrees(values):
            return True
        total, last = values.get("total_m3"), run.last_total
        if total is None or last is None:
            return False
        return (total < last and not run.falling) or total > 2 * last + 1.0

    async def _refresh_identity(self, run: _Run, raw: list[RawBlock], events: list[MeterChange],
                                seen_at: datetime | None = None) -> None:
        plan = run.plan
        if not plan.identity_reads:
            run.identity = {}
            return
        blocks: list[list[int]] = []
        for req in plan.identity_reads:
            regs = await self.link.read(req.function, req.address, req.count, plan.unit)
            blocks.append(regs)
            raw.append(RawBlock(req.function, req.address, tuple(regs)))
        new = _decode(run.identity_slots, blocks)
        old = run.identity
        if old is not None:
            ts = seen_at or self._clock()
            for name, value in new.items():
                if name in old and old[name] != value:
                    events.append(MeterChange(plan.site.id, plan.meter.id, ts, plan.profile.identity[name],
                                             name, old[name], value))
        run.identity = new
        run.identity_at = asyncio.get_running_loop().time()

    @staticmethod
    def _reading(plan: MeterPlan, ts: datetime, values: Mapping[str, Value | None]) -> Reading:
        rate, total = _as_float(values.get("rate_m3h")), _as_float(values.get("total_m3"))
        if rate is None and total is None and ("total_m3" in plan.profile.values):
            raise DecodeError("total cannot be decoded (unknown totalizer unit or multiplier code)")
        err = values.get("error_code")
        return Reading(site=plan.site.id, meter=plan.meter.id, role=plan.meter.role, ts=ts,
                       rate_m3h=rate, total_m3=total, signal_pct=_as_float(values.get("signal_pct")),
                       error_code=None if err is None else int(err))

    # -- bookkeeping -----------------------------------------------------------------------------------

    def _record(self, run: _Run, poll: MeterPoll, cycle_start: float) -> None:
        key, gw = run.plan.key, self.gateway
        where = f"{gw.id}:{run.plan.unit}"
        if poll.error is None:
            self._polls_ok.inc()
            failures = run.health.failures
            if run.health.success() is MeterState.ONLINE and failures:
                log.info("meter %s (%s) answers again after %d failed poll(s)", key, where, failures)
                self._update_offline()
            return
        err = poll.error
        child = run.failures.get(err.error_class)
        if child is None:
            child = run.failures[err.error_class] = MODBUS_FAILURES.labels(
                run.plan.site.id, run.plan.meter.id, err.error_class.value)
        child.inc()  # type: ignore[attr-defined]
        changed = run.health.failure(cycle_start, cool_down=err.error_class is not ErrorClass.CONNECTION)
        if changed is MeterState.FAILING:
            log.warning("meter %s (%s) failed: %s; cooling down", key, where, err)
        elif changed is MeterState.OFFLINE:
            log.warning("meter %s (%s) offline after %d consecutive failures: %s", key, where,
                        run.health.failures, err)
            self._update_offline()

    def _update_offline(self) -> None:
        self._offline.set(sum(1 for r in self._runs if r.health.state is MeterState.OFFLINE))

    def _after_cycle(self, polls: list[MeterPoll], elapsed: float) -> None:
        self.cycles += 1
        self._cycle_seconds.observe(elapsed)
        if elapsed > self._interval:
            self.overruns += 1
            self._overruns.inc()
            if not self._overrunning:
                log.warning("gateway %s: poll cycle took %.2fs, longer than its %gs interval "
                            "(%d meters); later cycles are skipped, not stacked", self.gateway.id, elapsed,
                            self._interval, len(self._runs))
            self._overrunning = True
        elif self._overrunning:
            log.info("gateway %s: poll cycles fit the interval again", self.gateway.id)
            self._overrunning = False
        errors = [p.error for p in polls if p.error is not None]
        if polls and len(errors) < len(polls):
            self.down = None
        elif polls:
            self.down = (self.down[0] if self.down is not None else time.monotonic(), str(errors[-1]))
        if len(polls) >= 2 and len(errors) == len(polls) and all(
                e.error_class is ErrorClass.TIMEOUT for e in errors):
            self.link.drop("no unit answered in a whole cycle")
        readings = [p.reading for p in polls if p.reading is not None]
        if readings:
            try:
                self._on_readings(readings)
            except Exception:
                log.exception("gateway %s: reading sink failed", self.gateway.id)
        if self._on_polls is not None and polls:
            try:
                self._on_polls(polls)
            except Exception:
                log.exception("gateway %s: poll sink failed", self.gateway.id)
