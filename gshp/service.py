"""Wiring: one process that collects, stores and serves, built from a validated `Config`.

Readings from every source go through `Service.accept`: judged against the index of stored readings (a
reading is never rewritten: a repeat is counted, other values at a stored device time are refused and
dead-lettered), committed to the outbox with the index in one transaction (so the source may be
acknowledged), then handed to the listeners (the rule engine, the live board). Meter changes a source
reports (`ReportsChanges`: a swapped meter, a rescaled totalizer) go through `Service.accept_changes` to the
rule engine, before the readings decoded after them. The drainer thread moves
the outbox into InfluxDB; the HTTP server and the sources run on one asyncio loop.

Start-up waits on no dependency: the API and the sources start at once, while a background thread makes
sure of the InfluxDB database, starts the drainer and back-fills the rule windows (bounded by
`health.backfill_timeout`); the rules start evaluating once that is over. `gshp.health` tells the truth
about all of it on `/healthz`.

The process role (see `gshp.roles`) decides which parts run: a collector also commits each batch to the
fan-out outbox (before returning, so before its source is acknowledged) and runs no rules; a rule worker
takes the readings of its shard from the fan-out and hands them to the rules and the board only — they are
in InfluxDB already.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

import uvicorn
from fastapi import FastAPI

from alerting.model import Alert, IncidentChange, IncidentNotice
from collector import metrics
from collector.deadletter import DeadLetterStore, NewDeadLetter, ReadingRefusal
from collector.drain import Drainer
from collector.fanout import FanoutOutbox, FanoutPublisher, encode_reading, reading_topic
from collector.influx.lineproto import FlowSchema
from collector.influx.reader import InfluxReader
from collector.influx.sitemeta import site_lines
from collector.influx.writer import make_writer
from collector.model import MeterChange, Reading
from collector.mqtt.brokerstats import BrokerStats, ride_out_need
from collector.outbox import Outbox, OutboxFull, OutboxSettings
from collector.seen import SeenIndex, Sorted
from gshp import heap
from gshp.anchor import ANCHOR_CHECK, AnchorJob, chain_name
from gshp.api.app import create_app
from gshp.arrival import ArrivalTracker
from gshp.citymap import load_outlines
from gshp.clock import Clock, SystemClock
from gshp.config import Config
from gshp.evaluation import BackfillState, RuleLoop
from gshp.evidence import KEY_FILE, ServiceKey
from gshp.health import Check, HealthMonitor, Reason, outage_reasons, problem_reasons
from gshp.live import LiveState
from gshp.roles import ProcessRole
from rules.audit import AuditChain
from rules.cases import CaseStore
from rules.engine import Engine
from rules.notify import Notifier
from rules.silence_store import SilenceStore
from rules.store import AlertStore

__all__ = ["ReportsChanges", "Service", "Source"]

log = logging.getLogger(__name__)

RENOTIFY = timedelta(days=7)
"""At start, incident changes this recent are offered to the notifier again (its queue keeps 90 days)."""

ReadingListener = Callable[[Sequence[Reading]], None]
ChangeListener = Callable[[Sequence[MeterChange]], None]


class Source(Protocol):
    """A producer of readings (Modbus poller, MQTT ingester, simulator feed) run by the service."""

    name: str

    async def run(self, accept: Callable[[Sequence[Reading], str], None]) -> None: ...

    async def stop(self) -> None: ...


@runtime_checkable
class ReportsChanges(Protocol):
    """A source that also reports meter changes (Modbus identity registers): the service sets `on_change`
    to its change sink; the source calls it before it hands over the readings decoded after the change."""

    on_change: Callable[[Sequence[MeterChange], str], None] | None



def offline_after(config: Config) -> dict[str, timedelta]:
    """Per site, how old a meter's newest reading may be to count as current (`quality.offline_after`)."""
    return {s.id: config.rules.resolve(s.id, s.district).quality.offline_after for s in config.sites}

class Service:
    def __init__(self, config: Config, sources: Sequence[Source] = (), clock: Clock | None = None,
                 role: ProcessRole = ProcessRole.ALL, fanout_client_id: str | None = None) -> None:
        self.config = config
        self.outlines = load_outlines(config.map)  # the board map's district outlines: checked before anything opens
        self.role = role
        self.clock: Clock = clock or SystemClock()
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self.outbox = Outbox(config.state_dir / "outbox.sqlite", config.outbox)
        self.seen = SeenIndex(self.outbox.path, config.readings, clock=lambda: self.clock.now().timestamp())
        # the store `gshp deadletter` reads: refused readings of every source join the MQTT payloads there
        self._refusals_logged: dict[ReadingRefusal, tuple[float, int]] = {}
        self.deadletters = DeadLetterStore(config.state_dir / "deadletter.sqlite", max_rows=(
            config.mqtt.deadletter_max_rows if config.mqtt is not None else 100_000))
        self.schema = FlowSchema(config.sites)
        self.writer = make_writer(config.influx)
        self.drainer = Drainer(self.outbox, self.writer)
        self.reader = InfluxReader(config.influx)
        self.sources = list(sources)
        self.live = LiveState(config.sites, now=self.clock.now, tz=config.tz, offline_after=offline_after(config))
        self.store = AlertStore(config.state_dir / "alerts.sqlite")
        # people's writes (cases, maintenance, silences) and their audit chain share the alert database
        self.audit = AuditChain(self.store)
        self.cases = CaseStore(self.store, self.audit, config.state_dir / "attachments")
        self.silences = SilenceStore(self.store, self.audit)
        self.engine = Engine(config.sites, config.rules, tz=config.tz, store=self.store)
        self.restore_maintenance({s.id for s in config.sites})
        # incident notices go to `self.notifier.submit(notice)`; it records them durably before returning
        self.notifier = Notifier(config.notify, config.state_dir / "notify.sqlite", timezone=config.timezone,
                                 public_url=config.api.public_url, silences=self.silences.silences)
        legacy = self.notifier.queue.legacy_silences()
        if legacy:  # kept in notify.sqlite by earlier versions: moved (and audited) once
            moved = self.silences.import_legacy(legacy)
            self.notifier.queue.forget_legacy_silences([x.id for x in legacy])
            log.info("%d silence(s) moved from notify.sqlite to the alert database", moved)
        self.alert_listeners: list[Callable[[Alert], object]] = []
        self.notice_listeners: list[Callable[[IncidentNotice], object]] = [self.notifier.submit]
        self.rules = RuleLoop(self.engine, config.sites, self.clock, self.live, self.outbox.put, self._on_alert,
                              self._on_notice)
        self.arrival = self.arrival_tracker(config)
        self.arrival.export(lambda: self.clock.now().timestamp())
        self.rules.before_evaluate.append(lambda now: self.arrival.judge(self.engine, now.timestamp()))
        self.listeners: list[ReadingListener] = [self.arrival.on_readings, self.live.on_readings]
        if role.evaluates:
            self.listeners.insert(0, self.rules.on_readings)
            metrics.RULE_SITES.set(len(config.sites))
        self.change_listeners: list[ChangeListener] = [self.rules.on_changes] if role.evaluates else []
        for source in self.sources:
            if isinstance(source, ReportsChanges):
                source.on_change = self.accept_changes
        self.fanout: FanoutOutbox | None = None
        self.publisher: FanoutPublisher | None = None
        if role.publishes:
            if config.mqtt is None:
                raise ValueError("a collector publishes readings through the `mqtt:` broker section")
            self.fanout = FanoutOutbox(config.state_dir / "fanout.sqlite", OutboxSettings(
                batch_size=config.fanout.batch_size, max_rows=config.fanout.max_rows,
                synchronous=config.outbox.synchronous))
            self.publisher = FanoutPublisher(self.fanout, config.fanout, config.mqtt,
                                             fanout_client_id or f"{config.mqtt.client_id}-fanout")
        self.broker: BrokerStats | None = None
        intervals = config.intervals()
        mqtt_meters = [intervals[s.id, m.id] for s in config.sites for m in s.meters if m.mqtt is not None]
        if config.mqtt is not None and config.mqtt.broker_stats and mqtt_meters and role.collects:
            need = ride_out_need(mqtt_meters, config.mqtt.ride_out)
            self.broker = BrokerStats(config.mqtt, config.mqtt.client_id, need, config.state_dir / "broker.json")
        self.anchors = AnchorJob(self.audit, self.outbox.put, chain_name(role, config.shard))
        self.anchor_failing: str | None = None
        self.evidence_key = ServiceKey.load_or_create(config.state_dir / KEY_FILE)  # made on first start
        self.started = time.time()
        self._stopping = asyncio.Event()
        self.http: uvicorn.Server | None = None
        self.app: FastAPI | None = None
        self._tasks: list[asyncio.Task[Any]] = []  # what `serve` runs until one of them ends
        self._tasks_changed = asyncio.Event()
        self.health_sections: list[Callable[[], dict[str, Any]]] = []  # more of `/healthz` (the config's reload)
        self.monitor = HealthMonitor(self._health_checks())
        self._start_lock = threading.Lock()  # the start-up thread starts the drainer unless shutdown came first
        self._shut = False

    def restore_maintenance(self, sites: Collection[str]) -> None:
        """Give the engine the maintenance windows declared through the API for these sites (at start, and for
        the sites a config reload adds)."""
        for declared in self.store.maintenance():
            if declared.site in sites:
                self.engine.declare_maintenance(declared.site, declared.window, declared.declared_by,
                                                datetime.fromisoformat(declared.declared_at))

    def arrival_tracker(self, config: Config) -> ArrivalTracker:
        """The arrival count of the config's meters (a gateway's poll interval stretched to the clock's pace)."""
        return ArrivalTracker(config.intervals(poll_speed=1.0 / self.clock.wall_seconds(1.0)), config.tz,
                              config.state_dir / "arrival.json", self.clock.now().timestamp())

    # -- the sink every source feeds -----------------------------------------------------------------

    def accept(self, readings: Sequence[Reading], source: str) -> None:
        """Commit readings durably (raises `OutboxFull`), then pass them on. Returns once committed."""
        if not readings:
            return
        if self.role.collects:
            judged = self.seen.commit(readings, self.schema.lines(readings), self.outbox.put_with)
            if len(judged.readings) != len(readings):
                self._refused(judged, source)
            metrics.READINGS_ACCEPTED.labels(source).inc(len(judged.readings))
            # repeats go on too: a source re-sends what a failure after the commit left unacknowledged, and
            # the consumers take a repeat as one (the engine by device time, the board by value)
            readings = judged.readings + judged.duplicates
            if not readings:
                return
            if self.fanout is not None:  # the rule worker's copy, committed before the source is acknowledged
                self.fanout.put(self.fanout_lines(readings))
        for listener in self.listeners:
            try:
                listener(readings)
            except Exception:  # a consumer's fault must not make the source re-send committed data
                log.exception("a reading listener failed on %d readings from %s; they are stored (outbox, "
                              "InfluxDB) but this consumer missed them", len(readings), source)

    def _refused(self, judged: Sorted, source: str) -> None:
        """Count repeats; count and dead-letter the readings refused (before the source is acknowledged)."""
        if judged.duplicates:
            metrics.READINGS_DUPLICATE.labels(source).inc(len(judged.duplicates))
        now = time.time()
        letters = [NewDeadLetter.of_reading(
            r, now, source, ReadingRefusal.CONFLICT,
            f"{r.site}/{r.meter} at {r.ts.isoformat()} is stored already with other values: the stored "
            "reading stands (readings are never rewritten)") for r in judged.conflicts]
        letters += [NewDeadLetter.of_reading(
            r, now, source, ReadingRefusal.TOO_OLD,
            f"{r.site}/{r.meter} at {r.ts.isoformat()} is older than the device times checked for this meter "
            f"(from {self.seen.floor(r.site, r.meter)}; see readings.horizon)") for r in judged.too_old]
        if not letters:
            return
        self.deadletters.put(letters)
        for reason, refused in ((ReadingRefusal.CONFLICT, judged.conflicts), (ReadingRefusal.TOO_OLD, judged.too_old)):
            if not refused:
                continue
            counter = metrics.READINGS_CONFLICT if reason is ReadingRefusal.CONFLICT else metrics.READINGS_TOO_OLD
            counter.labels(source).inc(len(refused))
            last, quiet = self._refusals_logged.get(reason, (-math.inf, 0))
            if time.monotonic() - last < 60:  # a flood of refusals is counted, not logged line by line
                self._refusals_logged[reason] = (last, quiet + len(refused))
                continue
            self._refusals_logged[reason] = (time.monotonic(), 0)
            first = refused[0]
            log.warning("refused %d reading(s) from %s [%s], first %s/%s at %s%s — readings are never rewritten; "
                        "kept in the dead-letter store (gshp deadletter list --reason %s)", len(refused), source,
                        reason.value, first.site, first.meter, first.ts.isoformat(),
                        f" ({quiet} more since the last report)" if quiet else "", reason.value)

    def accept_changes(self, changes: Sequence[MeterChange], source: str) -> None:
        """Meter changes go to the same consumers as readings (the rule engine), in stream order: a source
        calls this before it hands over the readings decoded after the change."""
        for listener in self.change_listeners:
            try:
                listener(changes)
            except Exception:
                log.exception("a meter change listener failed on %s from %s", changes, source)

    def fanout_lines(self, readings: Sequence[Reading]) -> list[str]:
        """``topic payload`` per reading, for the fan-out outbox."""
        prefix, shard = self.config.fanout.topic_prefix, self.config.shard.index
        return [f"{reading_topic(prefix, shard, r.site, r.meter)} {encode_reading(r).decode()}" for r in readings]

    def incident_case_closed(self, incident_id: str, outcome: str, at: datetime | None = None) -> None:
        """Notify that an incident's case was closed (called once the close is stored). Raises `KeyError`
        for an unknown incident."""
        incident = self.store.incident(incident_id)
        if incident is None:
            raise KeyError(f"no incident {incident_id!r}")
        when = (at or datetime.now(UTC)).astimezone(self.config.tz)
        self._on_notice(IncidentNotice(IncidentChange.CASE_CLOSED, when, incident, outcome=outcome))

    def _on_notice(self, notice: IncidentNotice) -> None:
        for listener in self.notice_listeners:
            try:
                listener(notice)
            except Exception:
                log.exception("an incident listener failed on %s (%s)", notice.id, notice.change)

    def _on_alert(self, event: Alert) -> None:
        for listener in self.alert_listeners:
            try:
                listener(event)
            except Exception:
                log.exception("an alert listener failed on %s (%s)", event.id, event.state)

    def store_problems(self) -> dict[str, list[str]]:
        """Per store with a problem (damage found and repaired since start, a failing write): its problems."""
        stores: list[tuple[str, Any]] = [("outbox", self.outbox), ("fanout", self.fanout),
                                         ("alerts", self.store), ("notify", self.notifier.queue)]
        stores += [("deadletter", d) for s in self.sources if (d := getattr(s, "deadletters", None)) is not None]
        out: dict[str, list[str]] = {}
        for name, store in stores:
            found = store.problems() if store is not None else []
            if found:
                out.setdefault(name, []).extend(found)
        return out

    def health(self) -> dict[str, Any]:
        """`/healthz`: the verdict with its reasons, and the figures behind it."""
        full = self.outbox.depth >= self.config.outbox.max_rows
        report = self.monitor.evaluate(full=full)
        stores = self.store_problems()
        problems = (self.broker.problems() if self.broker is not None else []) + self.engine.problems()
        return {
            "status": report.status,
            "reasons": [r.as_dict() for r in report.reasons],
            **({"problems": problems} if problems else {}),
            **({"stores": stores} if stores else {}),
            "uptime_s": round(time.time() - self.started, 1),
            "outbox_depth": self.outbox.depth,
            "outbox_oldest_age_s": round(self.outbox.oldest_age(), 1),
            "influx": self.drainer.failing or "ok",
            **({"audit_anchor": self.anchor_failing} if self.anchor_failing else {}),
            "sources": [s.name for s in self.sources],
            "role": self.role.value,
            "shard": str(self.config.shard),
            "sites": len(self.config.sites),
            **{k: v for section in self.health_sections for k, v in section().items()},
            **({"backfill": self.rules.progress.as_dict()} if self.role.evaluates else {}),
            **({"fanout_depth": self.fanout.depth} if self.fanout is not None else {}),
        }

    def _health_checks(self) -> list[Check]:
        """What makes this process degraded; each check returns the reasons it finds now."""
        limits = self.config.health
        grace = limits.source_grace.total_seconds()
        max_age = limits.outbox_max_age.total_seconds()

        def influx() -> list[Reason]:
            n, failing = self.drainer.failures, self.drainer.failing
            if n < limits.drain_failures:
                return []
            return [Reason("influx", f"InfluxDB 写入连续失败 {n} 次（{failing}），读数保存在发件箱中",
                           f"InfluxDB writes failed {n} times in a row ({failing}); readings wait in the outbox")]

        def outbox() -> list[Reason]:
            out = []
            if self.outbox.depth >= self.config.outbox.max_rows:
                out.append(Reason("outbox:full", f"发件箱已满（{self.outbox.depth} 行），新读数被拒收",
                                  f"the outbox is full ({self.outbox.depth} lines): new readings are refused"))
            age = self.outbox.oldest_age()
            if age > max_age:
                out.append(Reason("outbox:age", f"发件箱最早一行已等待 {age:.0f} 秒（上限 {max_age:.0f} 秒）",
                                  f"the oldest outbox line has waited {age:.0f} s (bound {max_age:.0f} s)"))
            return out

        def stores() -> list[Reason]:
            return [*problem_reasons("store:outbox", "发件箱无法写入", "the outbox cannot be written", self.outbox),
                    *problem_reasons("drain", "发件箱无法读出", "the outbox cannot be drained", self.drainer),
                    *problem_reasons("store:alerts", "告警库无法写入", "the alert store cannot be written",
                                     self.store),
                    *problem_reasons("store:notify", "通知队列无法写入", "the notification queue cannot be written",
                                     self.notifier.queue),
                    *problem_reasons("store:fanout", "分发发件箱无法写入", "the fan-out outbox cannot be written",
                                     self.fanout),
                    *problem_reasons("engine", "规则引擎", "the rule engine", self.engine),
                    *[r for s in self.sources for r in problem_reasons(
                        "store:deadletter", "死信库无法写入", "the dead-letter store cannot be written",
                        getattr(s, "deadletters", None))]]

        def sources() -> list[Reason]:
            return [r for source in self.sources for r in outage_reasons(source, grace)]

        def upstream() -> list[Reason]:
            out = []
            for text in self.broker.problems() if self.broker is not None else []:
                en, _, zh = text.partition(" / ")  # the broker's texts are bilingual already
                out.append(Reason("broker", zh or en, en))
            if self.anchor_failing:
                out.append(Reason("audit_anchor", f"审计链锚定失败：{self.anchor_failing}",
                                  f"anchoring the audit chain's head failed: {self.anchor_failing}"))
            return out

        def backfill() -> list[Reason]:
            progress = self.rules.progress
            if not self.role.evaluates or progress.state is not BackfillState.RUNNING:
                return []
            seconds = f"{progress.elapsed:.0f}"
            return [Reason("backfill", f"规则窗口正在从 InfluxDB 回填（已 {seconds} 秒），规则尚未开始评估",
                           f"the rule windows are being back-filled from InfluxDB ({seconds} s so far); "
                           "the rules do not evaluate yet")]

        return [influx, outbox, stores, sources, upstream, backfill]

    # -- lifecycle -----------------------------------------------------------------------------------

    async def serve(self, extra: Sequence[Awaitable[Any]] = ()) -> None:
        """Run until SIGINT/SIGTERM (or `stop()`), then shut down cleanly."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._stopping.set)
        try:
            self.outbox.put(site_lines(self.config.sites, datetime.now(UTC)))
        except OutboxFull:
            log.warning("outbox full at start-up: site metadata not queued")
        if self.publisher is not None:
            self.publisher.start()
        if self.broker is not None:
            assert self.broker.need is not None
            log.info("MQTT: %s", self.broker.need.advice())
            self.broker.start()
        if self.role.evaluates:
            self.notifier.start()
            # incident changes stored just before a crash reach the notifier now (it drops known ones)
            self.rules.renotify(self.store.incident_notices(self.clock.now() - RENOTIFY))
            self.rules.hold()  # the live stream waits beside the history, which goes first
        backfilled = asyncio.Event()
        threading.Thread(target=self._start_up, args=(loop, backfilled), name="start-up", daemon=True).start()
        helpers = [asyncio.create_task(self._watch_health(), name="health"),
                   asyncio.create_task(self._rebuild_arrival(backfilled), name="arrival-rebuild")]
        if self.role.evaluates:
            helpers.append(asyncio.create_task(self._start_rules(backfilled), name="rules-start"))
        api = self.config.api
        tls = {"ssl_certfile": str(api.tls.cert), "ssl_keyfile": str(api.tls.key)} if api.tls else {}
        self.app = create_app(self)
        self.http = uvicorn.Server(uvicorn.Config(self.app, host=api.host, port=api.port,
                                                  log_level="warning", access_log=False, lifespan="off",
                                                  **tls))  # type: ignore[arg-type]
        tasks = [asyncio.create_task(self.http.serve(), name="http")]
        tasks += [asyncio.create_task(s.run(self.accept), name=s.name) for s in self.sources]
        tasks += [asyncio.ensure_future(a) for a in extra]
        tasks.append(asyncio.create_task(self._anchor_loop(), name="audit-anchor"))
        log.info("gshp running as %s (shard %s): %d sites, %d sources, HTTP on %s", self.role.value,
                 self.config.shard, len(self.config.sites), len(self.sources), api.listen)
        self._tasks = tasks
        stop = asyncio.create_task(self._stopping.wait())
        while True:  # until stopped or a task ends (a source retired by a config reload does not count)
            changed = asyncio.create_task(self._tasks_changed.wait())
            done, _ = await asyncio.wait([stop, changed, *self._tasks], return_when=asyncio.FIRST_COMPLETED)
            changed.cancel()
            self._tasks_changed.clear()
            ended = [t for t in done if t is stop or t in self._tasks]
            if ended:
                break
        for t in ended:
            if t is not stop and t.exception() is not None:
                log.error("%s stopped with an error: %s", t.get_name(), t.exception())
        for h in helpers:
            h.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        await self.shutdown(self._tasks)

    def start_source(self, source: Source) -> None:
        """Run one more source (a config reload added it) beside the others."""
        if isinstance(source, ReportsChanges):
            source.on_change = self.accept_changes
        self.sources.append(source)
        self._tasks.append(asyncio.create_task(source.run(self.accept), name=source.name))
        self._tasks_changed.set()

    async def retire_source(self, source: Source) -> None:
        """Stop one source (a config reload removed or replaces it); the service runs on."""
        task = next((t for t in self._tasks if t.get_name() == source.name), None)
        self.sources = [s for s in self.sources if s is not source]
        if task is not None:
            self._tasks.remove(task)
            self._tasks_changed.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(source.stop(), 10)
        if task is not None:
            if not task.done():
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _rebuild_arrival(self, ready: asyncio.Event) -> None:
        """The kept days' arrival count from InfluxDB, in the background once the start-up thread prepared the
        database; readings arriving meanwhile are counted as usual (a restart does not zero the day)."""
        await ready.wait()
        await asyncio.to_thread(self.arrival.rebuild, self.reader, self.clock.now().timestamp())

    def _start_up(self, loop: asyncio.AbstractEventLoop, backfilled: asyncio.Event) -> None:
        """The start-up thread: the database first (v1: it exists before the back-fill reads it), then the
        drainer, then the back-fill. Nothing waits for it but the rules."""
        try:
            self.drainer.prepare()
            with self._start_lock:
                if self._shut:
                    return
                self.drainer.start()
            if self.role.evaluates:
                self.rules.backfill(self.reader, self.backfill_span())
        except Exception:
            log.exception("start-up: the back-fill failed; the rules run on the live stream")
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is gone: the service stopped meanwhile
                loop.call_soon_threadsafe(backfilled.set)

    async def _start_rules(self, backfilled: asyncio.Event) -> None:
        """Start evaluating once the back-fill is over or `health.backfill_timeout` has passed."""
        timeout = self.config.health.backfill_timeout.total_seconds()
        outcome = None
        try:
            await asyncio.wait_for(backfilled.wait(), timeout)
        except TimeoutError:
            log.warning("the back-fill from InfluxDB has not finished in %.0f s (health.backfill_timeout): the "
                        "rules start on the live stream without it", timeout)
            outcome = BackfillState.TIMED_OUT
        self.rules.release(outcome)
        self.rules.start()

    async def _watch_health(self) -> None:
        """Evaluate health every second: the metric stays current and each change is logged once. Every
        10 s the freed heap goes back to the system, so RSS falls again after a burst."""
        for n in itertools.count():
            try:
                await asyncio.to_thread(self.monitor.evaluate, self.outbox.depth >= self.config.outbox.max_rows)
                if n % 10 == 9:
                    await asyncio.to_thread(heap.trim)
            except Exception:
                log.exception("evaluating health failed")
            await asyncio.sleep(1.0)

    def stop(self) -> None:
        self._stopping.set()

    async def _anchor_loop(self) -> None:
        """Anchor the audit chain's head in InfluxDB (through the outbox) at start and every `ANCHOR_CHECK`."""
        while True:
            try:
                await asyncio.to_thread(self.anchors.tick, datetime.now(UTC))
                self.anchor_failing = None
            except Exception as exc:
                if self.anchor_failing is None:
                    log.exception("anchoring the audit chain's head failed; retrying every %s", ANCHOR_CHECK)
                self.anchor_failing = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(ANCHOR_CHECK.total_seconds())

    def backfill_span(self) -> timedelta:
        """History the rule windows need after a restart: the longest window, its transit lag and a margin."""
        rules = self.config.rules
        longest = max([w.window for w in rules.balance.windows] + [rules.sequential.interval])
        return longest + rules.balance.transit_lag + timedelta(hours=1)

    async def shutdown(self, tasks: Sequence[asyncio.Task[Any]] = ()) -> None:
        log.info("stopping: sources first, then flushing the outbox")
        for s in self.sources:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(s.stop(), 10)
        if self.http is not None:
            self.http.should_exit = True
        for t in tasks:
            if not t.done() and t.get_name() != "http":
                t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.rules.stop()
        if self.publisher is not None:
            await asyncio.to_thread(self.publisher.stop)
        if self.broker is not None:
            await asyncio.to_thread(self.broker.stop)
        with self._start_lock:
            self._shut = True
        await asyncio.to_thread(self.drainer.stop)
        await asyncio.to_thread(self.notifier.stop)
        if self.fanout is not None:
            self.fanout.close()
        self.writer.close()
        self.reader.close()
        self.store.close()
        self.seen.close()
        self.deadletters.close()
        self.outbox.close()
        log.info("stopped; %d lines wait in the outbox for the next start", self.outbox.depth)
