"""Durable delivery: SIGKILL during delivery, a receiver down for a while, dead letters, and grouping
timings end to end on an injected clock (no sleeping)."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from alerting.model import IncidentNotice
from gshp.devstack import free_port
from rules.audit import Actor, AuditChain
from rules.notify import MessageStatus, Notifier
from rules.notify.settings import ReceiverSettings
from rules.notify.silences import Matcher
from rules.silence_store import SilenceStore
from rules.store import AlertStore
from tests.helpers import wait_until
from tests.integration.notify_child import events
from tests.notify_peers import HttpPeer, Received, notice

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
SETTINGS: TypeAdapter[ReceiverSettings] = TypeAdapter(ReceiverSettings)


def expected_keys(n: int) -> set[str]:
    return {f"{IncidentNotice.from_dict(e).key}:hook" for e in events(n)}


def test_sigkill_during_delivery_then_restart_delivers_each_notification_exactly_once(tmp_path: Path) -> None:
    n = 30
    state = tmp_path / "notify.sqlite"
    hold = threading.Event()  # set: the peer keeps the next request open (the kill lands mid-delivery)
    in_flight = threading.Event()

    def respond(r: Received) -> tuple[int, bytes]:
        if hold.is_set():
            hold.clear()
            in_flight.set()
            threading.Event().wait(5)  # the sender is killed while we hold its request
        return 200, b"{}"

    peer = HttpPeer(respond=respond).start()
    # the HTTP server counts a request only once it answered 2xx; count arrivals separately
    arrivals: Counter[str] = Counter()
    inner = peer.respond

    def counting(r: Received) -> tuple[int, bytes]:
        arrivals[r.headers["x-gshp-idempotency-key"]] += 1
        return inner(r) if inner else (200, b"{}")

    peer.respond = counting
    cmd = [sys.executable, str(ROOT / "tests" / "integration" / "notify_child.py"), str(state), peer.url, str(n)]
    kills = 0
    try:
        for stop_after in (8, 20, 33):
            child = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            try:
                wait_until(lambda s=stop_after: sum(arrivals.values()) >= s, 30, 0.005)  # type: ignore[misc]
                hold.set()
                in_flight.clear()
                assert in_flight.wait(10)
                child.send_signal(signal.SIGKILL)
                child.wait(10)
                kills += 1
            finally:
                if child.poll() is None:
                    child.kill()
                    child.wait(10)
        child = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            want = expected_keys(n)
            wait_until(lambda: set(arrivals) >= want, 30)
            threading.Event().wait(0.5)  # nothing more may arrive
        finally:
            child.kill()
            child.wait(10)
    finally:
        peer.stop()
    print(f"{kills} kills, {sum(arrivals.values())} requests for {len(want)} notifications")
    assert set(arrivals) == want, "every notification arrives, none invented"
    dupes = {k: c for k, c in arrivals.items() if c > 1}
    # only a request in flight at a kill may arrive twice, and the idempotency key names it
    assert len(dupes) <= kills and all(c == 2 for c in dupes.values())
    assert sum(arrivals.values()) == len(want) + len(dupes)
    # resolutions arrive after their opening (FIFO per receiver survives the crashes)
    seen = [r.headers["x-gshp-idempotency-key"] for r in peer.received]
    keys = {(IncidentNotice.from_dict(e).id, str(e["change"])): f"{IncidentNotice.from_dict(e).key}:hook"
            for e in events(n)}
    for (incident, change), k in keys.items():
        if change == "resolved":
            assert seen.index(keys[incident, "opened"]) < seen.index(k)


def hook(url: str, **kw: Any) -> ReceiverSettings:
    return SETTINGS.validate_python({"name": "hook", "type": "webhook", "url": url, "group_wait": "0s",
                                     "group_interval": "0s", "timeout": "1s",
                                     "retry": {"backoff_base": "20ms", "backoff_cap": "100ms"}, **kw})


def test_a_receiver_down_for_a_while_gets_everything_in_order_once_it_is_up(tmp_path: Path) -> None:
    port = free_port()
    notifier = Notifier([hook(f"http://127.0.0.1:{port}/in")], tmp_path / "n.sqlite", poll=0.02).start()
    try:
        for i in range(10):
            notifier.submit(notice(site=f"s{i}", id=f"a{i}"))
        wait_until(lambda: notifier.status()["hook"].failed >= 1, 10)
        c = notifier.status()["hook"]
        assert c.sent == 0 and c.last_error is not None and "127.0.0.1" in c.last_error
        peer = HttpPeer(port=port).start()
        try:
            wait_until(lambda: len(peer.received) == 10, 20)
            assert [r.json()["incident"]["id"] for r in peer.received] == [f"a{i}" for i in range(10)]
            assert notifier.status()["hook"].sent == 10
        finally:
            peer.stop()
    finally:
        notifier.stop()


def test_retry_budget_dead_letters_then_requeue_delivers(tmp_path: Path) -> None:
    peer = HttpPeer(respond=lambda r: (503, b"down")).start()
    notifier = Notifier([hook(peer.url, retry={"max_attempts": 3, "backoff_base": "10ms", "backoff_cap": "20ms"})],
                        tmp_path / "n.sqlite", poll=0.02).start()
    try:
        notifier.submit(notice())
        wait_until(lambda: notifier.status()["hook"].dead == 1, 10)
        (dead,) = notifier.queue.messages([MessageStatus.DEAD])
        assert dead.attempts == 3 and "retry budget of 3 attempts spent" in (dead.error or "")
        peer.respond = None
        assert notifier.queue.requeue_dead("hook") == 1
        wait_until(lambda: len(peer.received) == 1, 10)
    finally:
        notifier.stop()
        peer.stop()


def test_a_refusal_is_dead_at_once_and_later_notifications_still_flow(tmp_path: Path) -> None:
    peer = HttpPeer(respond=lambda r: (400, b"no") if r.json()["incident"]["id"] == "bad" else (200, b"{}")).start()
    notifier = Notifier([hook(peer.url)], tmp_path / "n.sqlite", poll=0.02).start()
    try:
        notifier.submit(notice(id="bad"))
        notifier.submit(notice(site="other", id="good"))
        wait_until(lambda: len(peer.received) == 1, 10)
        c = notifier.status()["hook"]
        assert c.dead == 1 and c.sent == 1 and "HTTP 400" in (c.last_error or "")
    finally:
        notifier.stop()
        peer.stop()


class Clock:
    def __init__(self) -> None:
        self.t = datetime(2026, 7, 1, tzinfo=UTC).timestamp()

    def __call__(self) -> float:
        return self.t

    def at(self, seconds: float) -> None:
        self.t = datetime(2026, 7, 1, tzinfo=UTC).timestamp() + seconds


def test_grouping_timings_on_an_accelerated_clock(tmp_path: Path) -> None:
    """group_wait 30s, group_interval 5m, repeat_interval 1h, to a DingTalk robot (one digest per group)."""
    peer = HttpPeer().start()
    clock = Clock()
    robot = SETTINGS.validate_python({"name": "ding", "type": "dingtalk", "url": peer.url, "access_token": "t",
                                      "group_wait": "30s", "group_interval": "5m", "repeat_interval": "1h"})
    store = AlertStore(tmp_path / "alerts.sqlite")
    silences = SilenceStore(store, AuditChain(store), clock=clock)
    n = Notifier([robot], tmp_path / "n.sqlite", clock=clock, silences=silences.silences)

    def step(seconds: float) -> list[str]:
        clock.at(seconds)
        n.tick()
        before = len(peer.received)
        while n.deliver_once("ding") == 0:
            pass
        return [r.json()["markdown"]["title"] for r in peer.received[before:]]

    t0 = datetime(2026, 7, 1, tzinfo=UTC)
    a = {**notice(id="A"), "at": t0.isoformat()}
    b = {**notice(id="B", rules={"balance_day": {}}), "at": (t0 + timedelta(seconds=40)).isoformat()}
    try:
        n.submit(a)
        assert step(29) == []
        (title,) = step(30)
        assert "新事件" in title
        clock.at(40)
        n.submit(b)
        clock.at(50)
        n.submit({**notice("resolved", id="A"), "at": (t0 + timedelta(seconds=50)).isoformat()})
        assert step(329) == []  # news wait for group_interval after the last notification
        (title,) = step(330)  # one digest: B opened and A resolved
        text = peer.received[-1].json()["markdown"]["text"]
        assert "等2起" in title and text.index("🔴") < text.index("🟢")
        assert step(330 + 3599) == []
        (title,) = step(330 + 3600)  # only B is still open: reminded
        assert title.startswith("[重复提醒]") and "等" not in title
        # a silence on B stops its reminders; the state is kept (the next reminder resumes after expiry)
        silences.add(Actor("张三", "local"), [Matcher.parse("id=B")], clock(), clock() + 7200, "回扬 backwash")
        assert step(330 + 7200) == []  # the reminder due now is suppressed
        assert step(330 + 3600 + 7199) == []  # the silence lasts until 2h after it was set
        (title,) = step(330 + 3600 + 7200)  # expired: B is still open, so the reminder goes out
        assert title.startswith("[重复提醒]")
        # re-submitting known changes (a rule engine replaying after a restart) sends nothing
        assert n.submit(a) == [] and n.submit(b) == []
    finally:
        n.stop()
        peer.stop()
        store.close()
