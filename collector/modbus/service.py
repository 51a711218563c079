"""Modbus collection for a whole configuration: one poller per gateway, scheduled by APScheduler.

Lifecycle: `plan_collection` (validate, plan; no I/O) → `ModbusCollector(plan, on_readings, …)` →
`schedule(scheduler)` (one interval job per gateway: `max_instances=1`, `coalesce=True`, a random
start phase within `jitter`) →
`close()`. Different gateways poll concurrently on the event loop; within a gateway requests go one at a
time. A cycle that outlasts its interval is counted and logged by the poller, and the scheduler skips
(never stacks) the next start, which is counted as `gshp_modbus_cycles_skipped_total`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import UTC, datetime, timedelta

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobExecutionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from collector.metrics import MODBUS_SKIPPED
from collector.modbus.collection import CollectionPlan
from collector.modbus.poller import Clock, EventSink, GatewayPoller, MeterPoll, PollSink, ReadingSink, utc_now

__all__ = ["ModbusCollector"]

log = logging.getLogger(__name__)

_JOB_PREFIX = "modbus:"


class ModbusCollector:
    def __init__(self, plan: CollectionPlan, on_readings: ReadingSink, on_event: EventSink | None = None,
                 on_polls: PollSink | None = None, clock: Clock = utc_now) -> None:
        self.plan = plan
        self.pollers = {g.gateway.id: GatewayPoller(g, on_readings, on_event, on_polls, clock)
                        for g in plan.gateways}
        self.skipped = 0
        self._scheduler: AsyncIOScheduler | None = None

    def schedule(self, scheduler: AsyncIOScheduler, start_in: timedelta = timedelta(0)) -> None:
        """Add one job per gateway to a (running or not yet started) AsyncIOScheduler."""
        self._scheduler = scheduler
        now = datetime.now(UTC) + start_in
        for gid, poller in self.pollers.items():
            gw = poller.gateway
            interval = gw.interval.total_seconds()
            # jitter is a random phase per gateway, not APScheduler's per-run jitter: IntervalTrigger
            # adds that to the previous *jittered* fire time, stretching the mean interval by jitter/2
            phase = timedelta(seconds=random.uniform(0, gw.jitter.total_seconds()))
            scheduler.add_job(
                poller.cycle, "interval", seconds=interval, id=_JOB_PREFIX + gid, name=f"modbus {gid}",
                max_instances=1, coalesce=True, misfire_grace_time=max(1, int(interval)),
                next_run_time=now + phase, replace_existing=True)
        scheduler.add_listener(self._on_skipped, EVENT_JOB_MAX_INSTANCES)

    def _on_skipped(self, event: JobExecutionEvent) -> None:
        if not str(event.job_id).startswith(_JOB_PREFIX):
            return
        gid = str(event.job_id)[len(_JOB_PREFIX):]
        self.skipped += 1
        MODBUS_SKIPPED.labels(gid).inc()
        log.debug("gateway %s: cycle start skipped, the previous cycle still runs", gid)

    @property
    def overruns(self) -> int:
        return sum(p.overruns for p in self.pollers.values())

    async def poll_once(self) -> list[MeterPoll]:
        """Read every meter once, gateways concurrently; results in configuration order."""
        results = await asyncio.gather(*(p.poll_all() for p in self.pollers.values()))
        order = {(m.site.id, m.meter.id): i for i, m in
                 enumerate(m for g in self.plan.gateways for m in g.meters)}
        polls = [p for batch in results for p in batch]
        polls.sort(key=lambda p: order[(p.site, p.meter)])
        return polls

    async def aclose(self, timeout: float = 10.0) -> None:
        """Unschedule, let running cycles finish (bounded by `timeout`), then close every link."""
        self._unschedule()
        waits = await asyncio.gather(*(p.wait_idle(timeout) for p in self.pollers.values()))
        if not all(waits):
            log.warning("modbus: %d gateway cycle(s) still running after %gs at shutdown",
                        waits.count(False), timeout)
        self.close()

    def _unschedule(self) -> None:
        if self._scheduler is not None:
            for gid in self.pollers:
                job = self._scheduler.get_job(_JOB_PREFIX + gid)
                if job is not None:
                    job.remove()
            self._scheduler.remove_listener(self._on_skipped)
            self._scheduler = None

    def close(self) -> None:
        """Unschedule and close every link now (a running cycle fails its current request)."""
        self._unschedule()
        for p in self.pollers.values():
            p.close()
