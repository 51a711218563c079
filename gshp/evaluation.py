"""The live rule loop: the reading stream feeds the engine, a schedule evaluates it; each alert transition
and incident change is stored by the engine (before it moves), then written to InfluxDB and shown on the
board; each incident notice is handed to the notifier. Meter changes
(identity registers: a swapped meter, a rescaled totalizer) reach the engine on the same path, before the
readings decoded after them.

At start-up the engine's windows are back-filled from InfluxDB, so a restart does not blind it; while
InfluxDB is down the engine keeps evaluating the live stream. The back-fill runs beside the live stream
(`hold` … `release`): readings and meter changes that arrive meanwhile are held, in order and within a
bound, and given to the engine after the history, so none is lost from the windows and none makes the
history look late; the rules start evaluating only after that, so no meter looks offline for want of it.

With a `DataClock` there is no timer: the loop evaluates at every `evaluate_every` boundary the reading
stream crosses, exactly as `gshp replay` does over a recorded stream (readings up to a boundary are
ingested, then the engine is evaluated at it).
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from alerting.model import Alert, IncidentNotice, Language
from collector import metrics
from collector.influx.lineproto import format_line, to_ms
from collector.influx.reader import InfluxReader, QueryError
from collector.model import MeterChange, Reading, Site
from collector.outbox import OutboxError
from gshp.clock import Clock, DataClock
from gshp.live import LiveState
from rules.engine import Engine

__all__ = ["BOARD_WINDOWS", "HOLD_MAX", "Backfill", "BackfillState", "RuleLoop", "alert_line", "balance_lines",
           "incident_line"]

log = logging.getLogger(__name__)

MAX_UNSENT = 10_000
"""Incident notices kept for a notifier that cannot take them (they are stored in the alert store anyway)."""

MAX_CATCH_UP = 10_000
"""Data time jumping further than this many evaluation steps at once is evaluated at its last steps only."""

BOARD_WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(hours=24)}
"""Balance windows shown on the board and written to the `balance` measurement."""

HOLD_MAX = 200_000
"""Readings held while the back-fill runs (a `Reading` takes about 0.3 kB: some 60 MB at most). Beyond it the
back-fill gives way: the held readings go to the engine and the rules start on the live stream."""


class BackfillState(StrEnum):
    WAITING = "waiting"      # not started yet
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"        # InfluxDB could not answer: the rules run on the live stream only
    TIMED_OUT = "timed_out"  # not finished within health.backfill_timeout: the same
    GAVE_WAY = "gave_way"    # too many live readings held meanwhile: the same


@dataclass
class Backfill:
    """Progress of the start-up back-fill, as `/healthz` shows it."""

    state: BackfillState = BackfillState.WAITING
    rows: int = 0
    started: float | None = None  # time.monotonic()
    finished: float | None = None

    @property
    def elapsed(self) -> float:
        if self.started is None:
            return 0.0
        return (self.finished if self.finished is not None else time.monotonic()) - self.started

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state.value, "rows": self.rows, "elapsed": round(self.elapsed, 1)}


def alert_line(event: Alert) -> str:
    return format_line("alert", {"site": event.site, "rule": event.rule, "severity": event.severity.value,
                                 "district": event.district},
                       {"state": event.state, "kind": event.kind.value, "id": event.id, "summary": event.summary},
                       to_ms(event.at))


def incident_line(notice: IncidentNotice) -> str:
    """One `incident` point per change (opened, reopened, escalated, resolved): tags from the config and the
    model's enums, the summary in both languages and the volume estimate with its band as fields."""
    inc = notice.incident
    volume = inc.volume_m3
    return format_line("incident", {"site": inc.site, "kind": inc.kind.value, "severity": inc.severity.value,
                                    "district": inc.district, "change": notice.change.value},
                       {"id": inc.id, "state": inc.state.value, "summary": inc.text(Language.ZH),
                        "summary_en": inc.text(Language.EN), "episodes": inc.episodes,
                        "volume_m3": None if volume is None else volume.estimate,
                        "volume_low_m3": None if volume is None else volume.low,
                        "volume_high_m3": None if volume is None else volume.high,
                        "peak_deficit_pct": inc.peak_deficit_pct}, to_ms(notice.at))


def balance_lines(engine: Engine, sites: Sequence[Site], at_ms: int) -> list[str]:
    lines = []
    for site in sites:
        for name, window in BOARD_WINDOWS.items():
            b = engine.balance(site.id, window, datetime.fromtimestamp(at_ms / 1000, UTC))
            if b is None:
                continue
            lines.append(format_line("balance", {"site": site.id, "window": name, "district": site.district},
                                     {"extracted_m3": b["extracted_m3"], "reinjected_m3": b["reinjected_m3"],
                                      "deficit_m3": b["deficit_m3"], "deficit_pct": b["deficit_pct"],
                                      "complete": b["complete"]}, at_ms))
    return lines


class RuleLoop:
    def __init__(self, engine: Engine, sites: Sequence[Site], clock: Clock, live: LiveState,
                 put_lines: Callable[[list[str]], object],
                 on_event: Callable[[Alert], object],
                 on_notice: Callable[[IncidentNotice], object] | None = None) -> None:
        self.engine = engine
        self.sites = list(sites)
        self.clock = clock
        self.live = live
        self.put_lines = put_lines
        self.on_event = on_event
        self.on_notice = on_notice
        self._unsent: deque[IncidentNotice] = deque()  # stored incident changes the notifier has not taken
        self._notify_failing = False
        self._scheduler: AsyncIOScheduler | None = None
        self.evaluations = 0
        self._next_k: int | None = None  # data time: the next evaluation boundary (in steps)
        self.before_evaluate: list[Callable[[datetime], None]] = []  # findings handed to the engine first
        self.progress = Backfill()
        self._held: list[tuple[bool, Sequence[Reading] | Sequence[MeterChange]]] | None = None
        self._held_n = 0
        self._hold_lock = threading.Lock()

    @property
    def data_time(self) -> bool:
        return isinstance(self.clock, DataClock)

    # -- start-up: hold the live stream while the history is read ------------------------------------------

    def hold(self) -> None:
        """From now until `release`, readings and meter changes are kept aside in arrival order; the back-fill
        counts as running."""
        with self._hold_lock:
            self._held, self._held_n = [], 0
            self.progress = Backfill(BackfillState.RUNNING, started=time.monotonic())

    def release(self, outcome: BackfillState | None = None) -> int:
        """Give the engine what was held (after the history), and take the live stream directly again.
        `outcome` ends a back-fill still running (timed out, gave way): its rows, should they come, are not
        taken. Returns how many readings were held."""
        with self._hold_lock:
            held, self._held = self._held, None
            if outcome is not None and self.progress.state is BackfillState.RUNNING:
                self._finish(outcome)
        n = 0
        for is_reading, items in held or []:
            if is_reading:
                n += len(items)
                self._take(items)  # type: ignore[arg-type]
            else:
                self.engine.note_changes(items)  # type: ignore[arg-type]
        if held is not None:
            log.info("the rules take the %d readings that arrived during the back-fill", n)
        return n

    def _keep(self, is_reading: bool, items: Sequence[Reading] | Sequence[MeterChange]) -> bool:
        """Hold items while the back-fill runs; False once released (or given way at the bound)."""
        with self._hold_lock:
            if self._held is None:
                return False
            if self._held_n + len(items) <= HOLD_MAX:
                self._held.append((is_reading, items))
                self._held_n += len(items) if is_reading else 0
                return True
        log.warning("the back-fill from InfluxDB is still running with %d live readings held: it gives way, the "
                    "rules take the live stream now", self._held_n)
        self.release(BackfillState.GAVE_WAY)
        return False

    def on_readings(self, readings: Sequence[Reading]) -> None:
        metrics.RULE_READINGS.inc(len(readings))
        if not self._keep(True, readings):
            self._take(readings)

    def _take(self, readings: Sequence[Reading]) -> None:
        if not isinstance(self.clock, DataClock):
            self.engine.ingest(readings, now=self.clock.now())
            return
        step = self.engine.step_s
        ordered = sorted(readings, key=lambda r: r.ts)
        i = 0
        for j, r in enumerate(ordered):
            t = r.ts.timestamp()
            if self._next_k is None:
                self._next_k = math.ceil(t / step)
            if t <= self._next_k * step:
                continue
            self.engine.ingest(ordered[i:j])  # everything up to the boundary, then evaluate at it
            i = j
            last_k = math.ceil(t / step) - 1
            self._next_k = max(self._next_k, last_k - MAX_CATCH_UP + 1)
            while self._next_k <= last_k:
                at = datetime.fromtimestamp(self._next_k * step, UTC)
                self.clock.advance(at)
                self.evaluate(at)
                self._next_k += 1
        self.engine.ingest(ordered[i:])
        if ordered:
            self.clock.advance(ordered[-1].ts)

    def on_changes(self, changes: Sequence[MeterChange]) -> None:
        if not self._keep(False, changes):
            self.engine.note_changes(changes)

    def backfill(self, reader: InfluxReader, lookback: timedelta) -> int:
        """Fill the windows from stored history; returns rows taken (0 when InfluxDB is unreachable, or when
        the back-fill was ended meanwhile by `release`)."""
        now = self.clock.now()
        with self._hold_lock:
            if self.progress.state is BackfillState.WAITING:  # else `hold` started it, or `release` ended it
                self.progress = Backfill(BackfillState.RUNNING, started=time.monotonic())
        try:
            rows = reader.flow_rows(now - lookback, now)
        except QueryError as exc:
            log.warning("cannot back-fill the rule windows from InfluxDB (%s); evaluating the live stream only",
                        exc)
            with self._hold_lock:
                self._finish(BackfillState.FAILED)
            return 0
        with self._hold_lock:
            if self.progress.state is not BackfillState.RUNNING:
                log.info("the back-fill's %d rows came after it ended (%s): not taken", len(rows.values),
                         self.progress.state.value)
                return 0
            self.progress.rows = len(rows.values)
        # before `release` gives the engine newer readings
        n = self.engine.backfill_columns([t / 1000 for t in rows.column("time")], rows.column("site"),
                                         rows.column("meter"), rows.column("rate_m3h"), rows.column("total_m3"),
                                         rows.column("volume_m3"), rows.column("period_s"))
        with self._hold_lock:
            self._finish(BackfillState.DONE)
        log.info("back-filled the rule windows with %d readings from the last %s in %.1f s", n, lookback,
                 self.progress.elapsed)
        return n

    def _finish(self, state: BackfillState) -> None:
        if self.progress.state is BackfillState.RUNNING:
            self.progress.state, self.progress.finished = state, time.monotonic()

    def evaluate(self, at: datetime | None = None) -> list[Alert]:
        """One evaluation at `at` (default: the clock's now): transitions fanned out, balances written."""
        now = at or self.clock.now()
        for prepare in self.before_evaluate:
            prepare(now)
        step = self.engine.step(now)
        events = step.alerts
        self.evaluations += 1
        lines = [alert_line(e) for e in events] + [incident_line(n) for n in step.notices]
        lines += balance_lines(self.engine, self.sites, to_ms(now))
        try:
            if lines:
                self.put_lines(lines)
        except OutboxError as exc:
            log.warning("alert, incident and balance points not stored in InfluxDB: %s", exc)
        for event in events:
            self.live.publish("alert", event.to_dict(), event.site)
            try:
                self.on_event(event)
            except Exception:
                log.exception("handing alert %s (%s) on failed", event.id, event.state)
        for notice in step.notices:
            self.live.publish("incident", notice.to_dict(), notice.site)
        self._notify(step.notices)
        return events

    def renotify(self, notices: Sequence[IncidentNotice]) -> None:
        """Offer stored incident changes to the notifier again (at start; it ignores what it already has)."""
        self._notify(notices)

    def _notify(self, notices: Sequence[IncidentNotice]) -> None:
        """Hand incident notices to the notifier in order; the ones it cannot take now (its queue's disk is
        full) are kept, in order and bounded, and offered again at the next evaluation."""
        if self.on_notice is None:
            return
        self._unsent.extend(notices)
        while len(self._unsent) > MAX_UNSENT:
            dropped = self._unsent.popleft()
            metrics.NOTICES_DROPPED.inc()
            log.error("incident %s (%s) not notified: %d notices wait for the notifier", dropped.id,
                      dropped.change, MAX_UNSENT)
        while self._unsent:
            notice = self._unsent[0]
            try:
                self.on_notice(notice)
            except Exception as exc:
                if not self._notify_failing:
                    log.warning("the notifier cannot take incident %s (%s) now: %s; offered again at every "
                                "evaluation", notice.id, notice.change, exc)
                self._notify_failing = True
                return
            self._unsent.popleft()
            if self._notify_failing:
                log.info("the notifier takes incident notices again")
                self._notify_failing = False

    async def _tick(self) -> None:
        await asyncio.to_thread(self.evaluate)

    def start(self) -> None:
        if self.data_time:
            log.info("evaluating the rules in data time: every %s the reading stream crosses",
                     timedelta(seconds=self.engine.step_s))
            return
        every = self.clock.wall_seconds(self.engine.step_s)
        self._scheduler = AsyncIOScheduler()
        self._scheduler.add_job(self._tick, "interval", seconds=every, id="rules", max_instances=1, coalesce=True,
                                misfire_grace_time=max(1, int(every)))
        self._scheduler.start()
        log.info("evaluating the rules every %.1f s (%s of data time)", every,
                 timedelta(seconds=self.engine.step_s))

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
