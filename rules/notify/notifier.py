"""The notifier: routes incident notices, groups them, queues notifications durably and delivers them.

```python
notifier = Notifier(config.notify, config.state_dir / "notify.sqlite", timezone=config.timezone,
                    public_url=config.api.public_url, silences=silence_store.silences).start()
notifier.submit(notice)         # an incident opened, escalated, resolved or its case closed; once committed
notifier.stop()
```

Threads: one scheduler (grouping decisions, every `poll` seconds or when an event arrives) and one
delivery worker per receiver (FIFO, head-of-line retry with backoff, so a down receiver delays only
itself and gets everything in order once it is back). Every wait is bounded; the queue is bounded by
`max_queued` unsent notifications. Silences come from `silences()` (the alert database keeps them with
their audit records); without it nothing is silenced.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from alerting.model import IncidentChange, IncidentNotice, IncidentState
from collector.backoff import Backoff
from collector.redact import redact
from rules.notify import metrics
from rules.notify.errors import NotifyError, PermanentDeliveryError, RetryableDeliveryError
from rules.notify.event import parse_event, sample_event
from rules.notify.grouping import (
    GroupState,
    Item,
    ItemStatus,
    Reason,
    Timings,
    due,
    is_active,
    latest_by_alert,
    plan_flush,
    plan_repeat,
)
from rules.notify.queue import Message, NotifyQueue, QueueFull, ReceiverCounts
from rules.notify.receivers import RECEIVERS, Delivery, Receiver
from rules.notify.routing import group_key, route
from rules.notify.settings import ReceiverSettings
from rules.notify.silences import Silence
from rules.notify.templates import Renderer

__all__ = ["Notifier"]

log = logging.getLogger(__name__)

_PRUNE_EVERY = 3600.0


def _build(receivers: Sequence[ReceiverSettings], timezone: str | ZoneInfo,
           public_url: str | None) -> dict[str, Receiver[Any]]:
    """A receiver per settings, templates checked; raises `NotifyError` (duplicate names, a bad template)."""
    names = [r.name for r in receivers]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise NotifyError(f"receiver names must be unique: {', '.join(dup)} appear more than once")
    out: dict[str, Receiver[Any]] = {}
    for rs in receivers:
        renderer = Renderer(rs.language, rs.templates, timezone, public_url)
        renderer.check()
        out[rs.name] = RECEIVERS[rs.type](rs, renderer)
    return out


def _timings(rs: ReceiverSettings) -> Timings:
    return Timings(rs.group_wait.total_seconds(), rs.group_interval.total_seconds(),
                   rs.repeat_interval.total_seconds())


class Notifier:
    def __init__(self, receivers: Sequence[ReceiverSettings], path: str | os.PathLike[str], *,
                 timezone: str | ZoneInfo = "Asia/Shanghai", public_url: str | None = None,
                 clock: Callable[[], float] = time.time, max_queued: int = 100_000, poll: float = 0.5,
                 silences: Callable[[], Sequence[Silence]] = tuple) -> None:
        self.receivers: dict[str, Receiver[Any]] = _build(receivers, timezone, public_url)
        self.settings: dict[str, ReceiverSettings] = {r.name: r for r in receivers}
        self.timezone = timezone
        self.clock = clock
        self.poll = poll
        self.public_url = public_url
        self.silences = silences  # the active and future silences, read at each tick
        self.queue = NotifyQueue(path, clock, max_queued)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._wake_worker = {name: threading.Event() for name in self.settings}
        self._quit = {name: threading.Event() for name in self.settings}  # one receiver's worker stops
        self._workers: dict[str, threading.Thread] = {}
        self._failing: dict[str, str | None] = dict.fromkeys(self.settings)
        self._threads: list[threading.Thread] = []
        self._last_prune = 0.0
        self._last_gauges = 0.0

    # -- the rule engine's entry point ---------------------------------------------------------------

    def submit(self, event: Mapping[str, Any] | IncidentNotice) -> list[str]:
        """Record an incident notice for every receiver it routes to, durably, before returning; the notice
        gets the incident's link (``api.public_url`` + ``/incidents/{id}``).

        Returns the receivers it was new to: a notice submitted again (same key) is ignored, so a rule engine
        may re-emit changes after a restart. Raises `NotifyError` for an invalid notice and `QueueFull` at
        the queue's bound.
        """
        ev = parse_event(event)
        if ev.link is None and self.public_url:
            ev = replace(ev, link=f"{self.public_url.rstrip('/')}/incidents/{ev.id}")
        targets = [(rs.name, group_key(rs, ev)) for rs in route(self.settings.values(), ev)]
        try:
            new = self.queue.record(ev, targets)
        except QueueFull:
            metrics.REFUSED.inc()
            log.error("notification queue full: incident %s (%s) for %s not recorded", ev.id, ev.change, ev.site)
            raise
        for name in new:
            metrics.EVENTS.labels(name).inc()
        if new:
            self._wake.set()
        return new

    # -- grouping ------------------------------------------------------------------------------------

    def tick(self) -> int:
        """Turn every group that is due now into queued notifications. Returns how many were queued."""
        now = self.clock()
        silences = self.silences()
        queued = 0
        for row in self.queue.groups():
            rs = self.settings.get(row["receiver"])
            if rs is None:  # a receiver removed from the config: its leftovers stay visible in status
                continue
            items = self.queue.group_items(rs.name, row["group_key"])
            pending = [i for i in items if i.status is ItemStatus.PENDING]
            history = [i for i in items if i.status is not ItemStatus.PENDING]
            state = GroupState(min((i.received for i in pending), default=None), row["last_flush"],
                               is_active(history))
            when = due(state, _timings(rs))
            if when is None or when[0] > now:
                continue
            if when[1] is Reason.REPEAT:
                send, statuses, repeat = plan_repeat(history, silences, now), {}, int(row["repeats"]) + 1
            else:
                plan = plan_flush(pending, history, rs.send_resolved, silences, now)
                send, statuses, repeat = plan.send, plan.statuses, 0
                for key, st in statuses.items():
                    if st is ItemStatus.SILENCED:
                        metrics.SILENCED.labels(rs.name).inc()
                        log.info("%s: %s silenced", rs.name, key)
            messages = self._compose(rs, send, repeat, items, statuses)
            queued += self.queue.flush(rs.name, row["group_key"], statuses, messages, when[1] is Reason.REPEAT)
            if messages:
                self._wake_worker[rs.name].set()
        if now - self._last_prune > _PRUNE_EVERY:
            self._last_prune = now
            self.queue.prune()
        return queued

    def _compose(self, rs: ReceiverSettings, send: Sequence[Item], repeat: int, items: Sequence[Item],
                 statuses: Mapping[str, ItemStatus]) -> list[tuple[str, dict[str, Any]]]:
        if not send:
            return []
        suffix = f":repeat{repeat}" if repeat else ""
        receiver = self.receivers[rs.name]
        batches: list[list[Item]] = [list(send)] if receiver.digest else [[i] for i in send]
        out = []
        for batch in batches:
            keys = [i.key for i in batch]
            key = keys[0] if len(keys) == 1 else \
                f"{rs.name}:{hashlib.sha256('|'.join(sorted(keys)).encode()).hexdigest()[:24]}"
            body: dict[str, Any] = {"events": [i.event.to_dict() for i in batch], "items": keys, "repeat": repeat}
            if getattr(rs, "state_topic", None):
                body["site_state"] = self._site_state(rs.name, batch[-1].event, items, statuses)
            out.append((key + suffix, body))
        return out

    def _site_state(self, receiver: str, event: IncidentNotice, group_items: Sequence[Item],
                    statuses: Mapping[str, ItemStatus]) -> dict[str, Any]:
        """The site's incidents that are open for this receiver once this notification is out (silenced
        ones included: a silence suppresses sending, not state)."""
        settled = {i.key: i for i in self.queue.site_items(receiver, event.site)}
        for i in group_items:
            if i.event.site == event.site and i.key in statuses:
                settled[i.key] = Item(i.key, i.receiver, i.group_key, i.event, i.received, statuses[i.key])
        latest = latest_by_alert(i for i in settled.values()
                                 if i.status in (ItemStatus.NOTIFIED, ItemStatus.SILENCED, ItemStatus.SKIPPED))
        open_ = sorted((i.event.incident for i in latest.values()
                        if i.event.state is IncidentState.OPEN and i.event.change is not IncidentChange.RESOLVED),
                       key=lambda inc: inc.started_at)
        return {"site": event.site, "site_name": event.site_name, "district": event.district,
                "state": "open" if open_ else "ok",
                "updated_at": datetime.fromtimestamp(self.clock(), UTC).isoformat(),
                "incidents": [inc.to_dict() for inc in open_]}

    # -- delivery ------------------------------------------------------------------------------------

    def deliver_once(self, name: str) -> float | None:
        """Try the receiver's oldest unsent notification if it is due.

        Returns 0 after an attempt, the seconds until the next attempt is due, or None when empty.
        """
        msg = self.queue.head(name)
        if msg is None:
            return None
        now = self.clock()
        if msg.next_at > now:
            return msg.next_at - now
        rs = self.settings.get(name)
        if rs is None:
            return None
        try:
            self.receivers[name].send(Delivery(msg.key, msg.events, msg.repeat, msg.site_state))
        except PermanentDeliveryError as exc:
            self._dead(rs, msg, str(exc))
        except RetryableDeliveryError as exc:
            self._retry(rs, msg, str(exc), exc.retry_after)
        except NotifyError as exc:  # a template that fails on this event: no retry can fix it
            self._dead(rs, msg, str(exc))
        except Exception as exc:  # a bug must not kill the worker; keep the message and back off
            log.exception("%s: unexpected error sending %s", name, msg.key)
            self._retry(rs, msg, f"{type(exc).__name__}: {exc}", None)
        else:
            self.queue.mark_sent(msg.key)
            metrics.SENT.labels(name).inc()
            if self._failing[name]:
                log.info("%s: delivering again after failures; %s sent", name, msg.key)
                self._failing[name] = None
        return 0.0

    def _retry(self, rs: ReceiverSettings, msg: Message, error: str, retry_after: float | None) -> None:
        error = redact(error)  # stored, logged and shown by `gshp notify status`
        metrics.FAILURES.labels(rs.name).inc()
        attempts = msg.attempts + 1
        if attempts >= rs.retry.max_attempts:
            self._dead(rs, msg, f"retry budget of {rs.retry.max_attempts} attempts spent; last error: {error}",
                       counted=True)
            return
        cap = rs.retry.backoff_cap.total_seconds()
        delay = Backoff(rs.retry.backoff_base.total_seconds(), cap).delay(attempts)
        if retry_after is not None:
            delay = min(max(delay, retry_after), max(cap, retry_after))
        self.queue.mark_failed(msg.key, error, self.clock() + delay)
        if self._failing[rs.name] != error.split(":")[0]:
            log.warning("%s: %s — retrying in %.0fs (attempt %d of %d)", rs.name, error, delay, attempts,
                        rs.retry.max_attempts)
            self._failing[rs.name] = error.split(":")[0]

    def _dead(self, rs: ReceiverSettings, msg: Message, error: str, counted: bool = False) -> None:
        error = redact(error)
        if not counted:
            metrics.FAILURES.labels(rs.name).inc()
        metrics.DEAD.labels(rs.name).inc()
        self.queue.mark_dead(msg.key, error)
        log.error("%s: notification %s dead-lettered: %s (see `gshp notify status`)", rs.name, msg.key, error)

    # -- one receiver, on demand ---------------------------------------------------------------------

    def send_test(self, name: str, event: Mapping[str, Any] | None = None) -> float:
        """Send a sample incident notice through one receiver now, bypassing routing and the queue.

        Returns the seconds it took; raises `DeliveryError` with what went wrong.
        """
        if name not in self.receivers:
            known = ", ".join(self.receivers) or "none are configured"
            raise NotifyError(f"no receiver named {name!r} under notify: (known: {known})")
        ev = parse_event(dict(event) if event is not None else sample_event())
        site_state = {"site": ev.site, "site_name": ev.site_name, "district": ev.district, "state": "test",
                      "updated_at": ev.at.isoformat(), "incidents": [ev.incident.to_dict()]}
        start = time.monotonic()
        self.receivers[name].send(Delivery(f"test:{uuid.uuid4().hex[:12]}:{name}", (ev,), 0, site_state))
        return time.monotonic() - start

    def status(self) -> dict[str, ReceiverCounts]:
        counts = self.queue.counts()
        return {name: counts.get(name, ReceiverCounts(name)) for name in self.settings}

    def reconfigure(self, receivers: Sequence[ReceiverSettings], timeout: float = 10.0) -> tuple[
            list[str], list[str], list[str]]:
        """Take new receivers while running (a config reload); returns the names added, removed and changed.

        Everything is built and checked first (raises `NotifyError`, nothing changes). A removed or changed
        receiver's worker ends after its send in flight; a removed one's queued notifications stay in the queue
        (visible in `gshp notify status`) and are not sent, a changed one's go out through its new settings."""
        built = _build(receivers, self.timezone, self.public_url)
        new = {r.name: r for r in receivers}
        added = [n for n in new if n not in self.settings]
        removed = [n for n in self.settings if n not in new]
        changed = [n for n in new if n in self.settings and new[n] != self.settings[n]]
        running = bool(self._threads) and not self._stop.is_set()
        for name in removed + changed:  # the old worker ends before its receiver goes
            self._quit[name].set()
            self._wake_worker[name].set()
            worker = self._workers.pop(name, None)
            if worker is not None:
                worker.join(timeout)
        old = self.receivers
        for name in added + changed:
            self._wake_worker.setdefault(name, threading.Event())
            self._quit.setdefault(name, threading.Event())
            self._failing.setdefault(name, None)
        after = {n: (old[n] if n in old and n not in changed else built[n]) for n in new}
        self.receivers = {**old, **after}  # every name either settings dict holds, while they change
        self.settings = new
        self.receivers = after
        for name in removed + changed:
            try:
                old[name].close()
            except Exception:
                log.exception("%s: error while closing", name)
        for name, receiver in built.items():
            if self.receivers[name] is not receiver:  # built to check unchanged settings: the running one stays
                receiver.close()
        if running:
            for name in added + changed:
                self._start_worker(name)
            self._wake.set()
        return added, removed, changed

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> Notifier:
        self._stop.clear()
        self._threads = [threading.Thread(target=self._schedule, name="notify-scheduler", daemon=True)]
        self._threads[0].start()
        for name in self.settings:
            self._start_worker(name)
        if self.settings:
            log.info("notifier running: %s", ", ".join(f"{n} ({r.target()})" for n, r in self.receivers.items()))
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the threads (an in-flight send ends within its receiver's timeout); unsent stays queued."""
        self._stop.set()
        self._wake.set()
        for ev in self._wake_worker.values():
            ev.set()
        deadline = time.monotonic() + timeout
        for t in [*self._threads, *self._workers.values()]:
            t.join(max(0.1, deadline - time.monotonic()))
        for r in self.receivers.values():
            try:
                r.close()
            except Exception:
                log.exception("%s: error while closing", r.name)
        self.queue.close()

    def _schedule(self) -> None:
        failures = 0
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.tick()
                self._gauges()
                failures = 0
            except Exception:
                failures += 1
                log.exception("notification scheduler failed (attempt %d); retrying", failures)
                if self._stop.wait(Backoff(1.0, 60.0).delay(failures)):
                    return
                continue
            self._wake.wait(self.poll)

    def _start_worker(self, name: str) -> None:
        self._quit[name].clear()
        t = self._workers[name] = threading.Thread(target=self._work, args=(name,), name=f"notify-{name}",
                                                   daemon=True)
        t.start()

    def _work(self, name: str) -> None:
        wake, quit_ = self._wake_worker[name], self._quit[name]
        failures = 0
        while not self._stop.is_set() and not quit_.is_set():
            wake.clear()
            if quit_.is_set():  # asked to end between the check and the clear: its wake-up is gone
                return
            try:
                wait = self.deliver_once(name)
                failures = 0
            except Exception:  # the queue itself failed (disk full…): back off, keep the thread alive
                failures += 1
                log.exception("%s: delivery worker error (attempt %d)", name, failures)
                wait = Backoff(1.0, 60.0).delay(failures)
            if wait is None:
                wake.wait(self.poll * 4)
            elif wait > 0:
                wake.wait(min(wait, self.poll))

    def _gauges(self) -> None:
        now = time.monotonic()
        if now - self._last_gauges < 5.0:
            return
        self._last_gauges = now
        for name, c in self.status().items():
            metrics.UNSENT.labels(name).set(c.queued + c.failed)
