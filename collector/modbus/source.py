"""Modbus collection as a source the service runs: APScheduler jobs per gateway feeding `accept`, and
meter changes (identity registers) handed to `on_change` before the readings decoded after them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from collector import metrics
from collector.modbus.collection import CollectionPlan
from collector.model import MeterChange, Reading
from collector.outbox import OutboxError

if TYPE_CHECKING:
    from collector.modbus.service import ModbusCollector

__all__ = ["ModbusSource"]

log = logging.getLogger(__name__)

Accept = Callable[[Sequence[Reading], str], None]
AcceptChanges = Callable[[Sequence[MeterChange], str], None]


class ModbusSource:
    """Polls every planned gateway on its interval. Readings refused by a full outbox are counted and
    skipped: the meter's totalizer keeps counting, so the next accepted reading carries the volume."""

    name = "modbus"

    def __init__(self, plan: CollectionPlan, on_change: AcceptChanges | None = None,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.plan = plan
        self.clock = clock or (lambda: datetime.now(UTC))
        self.on_change = on_change  # the service sets it to its change sink before `run`
        self.collector: ModbusCollector | None = None
        self._stop = asyncio.Event()
        self._refusing = False

    async def run(self, accept: Accept) -> None:
        def sink(readings: list[Reading]) -> None:
            try:
                accept(readings, self.name)
            except OutboxError as exc:
                metrics.INGEST_REJECTED.labels("modbus", "outbox_refused").inc(len(readings))
                if not self._refusing:
                    log.error("Modbus readings are being skipped: %s", exc)
                    self._refusing = True
                return
            if self._refusing:
                log.info("Modbus readings are accepted again")
                self._refusing = False

        from collector.modbus.service import ModbusCollector  # pymodbus: imported once a gateway is polled

        self.collector = ModbusCollector(self.plan, on_readings=sink, on_event=self._event, clock=self.clock)
        scheduler = AsyncIOScheduler()
        self.collector.schedule(scheduler)
        scheduler.start()
        try:
            await self._stop.wait()
        finally:
            scheduler.shutdown(wait=False)
            await self.collector.aclose()

    def outages(self) -> dict[str, tuple[float, str]]:
        """Gateways no unit answers on: since when (`time.monotonic()`) and the last error (health)."""
        if self.collector is None:
            return {}
        return {f"Modbus {gid}": p.down for gid, p in self.collector.pollers.items() if p.down is not None}

    def _event(self, change: MeterChange) -> None:
        if self.on_change is not None:  # the poller has logged and counted it
            self.on_change([change], self.name)

    async def stop(self) -> None:
        self._stop.set()
