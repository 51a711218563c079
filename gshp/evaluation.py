"""The live rule loop: the reading stream feeds the engine, a schedule evaluates it, and each alert
transition is stored, written to InfluxDB, shown on the board and handed to the notifier.

At start-up the engine's windows are back-filled from InfluxDB, so a restart does not blind it; while
InfluxDB is down the engine keeps evaluating the live stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from collector.influx.lineproto import format_line, to_ms
from collector.influx.reader import InfluxReader, QueryError
from collector.model import Reading, Site
from collector.outbox import OutboxError
from gshp.clock import Clock
from gshp.live import LiveState
from rules.engine import Engine
from rules.events import AlertEvent

__all__ = ["BOARD_WINDOWS", "RuleLoop", "alert_line", "balance_lines"]

log = logging.getLogger(__name__)

BOARD_WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(hours=24)}
"""Balance windows shown on the board and written to the `balance` measurement."""


def alert_line(event: AlertEvent) -> str:
    return format_line("alert", {"site": event.site, "rule": event.rule, "severity": event.severity.value,
                                 "district": event.district},
                       {"state": event.state, "kind": event.kind.value, "id": event.id, "summary": event.summary},
                       to_ms(event.at))


def balance_lines(engine: Engine, sites: Sequence[Site], at_ms: int) -> list[str]:
    lines = []
    for site in sites:
        for name, window in BOARD_WINDOWS.items():
            b = engine.balance(site.id, window)
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
                 on_event: Callable[[AlertEvent], object]) -> None:
        self.engine = engine
        self.sites = list(sites)
        self.clock = clock
        self.live = live
        self.put_lines = put_lines
        self.on_event = on_event
        self._scheduler: AsyncIOScheduler | None = None
        self.evaluations = 0

    def on_readings(self, readings: Sequence[Reading]) -> None:
        self.engine.ingest(readings)

    def backfill(self, reader: InfluxReader, lookback: timedelta) -> int:
        """Fill the windows from stored history; returns rows taken (0 when InfluxDB is unreachable)."""
        now = self.clock.now()
        try:
            df = reader.flow(now - lookback, now)
        except QueryError as exc:
            log.warning("cannot back-fill the rule windows from InfluxDB (%s); evaluating the live stream only",
                        exc)
            return 0
        n = self.engine.backfill(df) if not df.empty else 0
        log.info("back-filled the rule windows with %d readings from the last %s", n, lookback)
        return n

    def evaluate(self) -> list[AlertEvent]:
        """One evaluation at the clock's now: transitions fanned out, balances written."""
        now = self.clock.now()
        events = self.engine.evaluate(now)
        self.evaluations += 1
        lines = [alert_line(e) for e in events] + balance_lines(self.engine, self.sites, to_ms(now))
        try:
            if lines:
                self.put_lines(lines)
        except OutboxError as exc:
            log.warning("alert and balance points not stored in InfluxDB: %s", exc)
        for event in events:
            self.live.publish("alert", event.to_dict(), event.site)
            try:
                self.on_event(event)
            except Exception:
                log.exception("handing alert %s (%s) to the notifier failed", event.id, event.state)
        return events

    async def _tick(self) -> None:
        await asyncio.to_thread(self.evaluate)

    def start(self) -> None:
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
