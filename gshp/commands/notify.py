"""`gshp notify …`: try a receiver, see the notification queue, manage silences and dead letters."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from collector.duration import format_duration, parse_duration
from collector.redact import redact
from gshp.commands.configfile import ALWAYS, load_config_or_exit
from gshp.config import Config
from rules.audit import Actor, AuditChain
from rules.notify import (
    DeliveryError,
    MessageStatus,
    Notifier,
    NotifyError,
    RetryableDeliveryError,
    sample_event,
)
from rules.notify.silences import Matcher
from rules.silence_store import SilenceStore
from rules.store import AlertStore, StoreError

USES = ALWAYS | {"notify", "api"}
"""The config sections this command reads."""


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "notify", help="test receivers, show the notification queue, manage silences",
        description="Notifications to enforcement: send a sample incident notice through one receiver, list what "
                    "is queued, failing or dead per receiver, and silence notifications for a while.")
    cmds = p.add_subparsers(dest="notify_command", metavar="ACTION", required=True)

    t = cmds.add_parser("test", help="send a sample incident notice through one receiver and report the result",
                        description="Sends a sample notice of an opened discharge incident (the full notice shape) "
                                    "through one receiver now, bypassing routing, grouping and the queue. Exit 0 when "
                                    "the receiver accepted it, 1 otherwise.")
    t.add_argument("--config", required=True, help="the YAML configuration file")
    t.add_argument("--receiver", required=True, help="the receiver's name under notify:")
    t.add_argument("--event", type=Path, help="a JSON file with the incident notice to send instead of the sample")
    t.set_defaults(func=run_test)

    s = cmds.add_parser("status", help="queued / failed / dead notifications per receiver",
                        description="Counts per receiver from <state_dir>/notify.sqlite, the last error, and "
                                    "with --list the failing and dead notifications themselves.")
    s.add_argument("--config", required=True, help="the YAML configuration file")
    s.add_argument("--list", action="store_true", help="also list failing and dead notifications")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=run_status)

    r = cmds.add_parser("retry", help="give dead-lettered notifications a fresh retry budget",
                        description="Re-queues dead letters (e.g. after fixing a robot token); the running "
                                    "service picks them up.")
    r.add_argument("--config", required=True, help="the YAML configuration file")
    r.add_argument("--receiver", help="only this receiver's dead letters")
    r.set_defaults(func=run_retry)

    sil = cmds.add_parser("silence", help="add, list or expire silences",
                          description="A silence suppresses sending (not alert state) for alerts matching all "
                                      "its matchers, for a while. Silences are kept in <state_dir>/alerts.sqlite; "
                                      "adding and expiring one is recorded in the audit chain.")
    sc = sil.add_subparsers(dest="silence_command", metavar="ACTION", required=True)
    a = sc.add_parser("add", help="silence matching alerts for a duration")
    a.add_argument("--config", required=True, help="the YAML configuration file")
    a.add_argument("--match", action="append", required=True, metavar="MATCHER",
                   help="label=value, label!=value, label=~regex or label!~regex on site, district, rule, kind, "
                        "severity, id or receiver; repeat for several (all must match)")
    a.add_argument("--duration", required=True, help="how long, e.g. 2h, 30m, 1d")
    a.add_argument("--start", help="ISO-8601 start time with offset (default: now)")
    a.add_argument("--author", required=True, help="who silences (kept with the silence)")
    a.add_argument("--comment", required=True, help="why (e.g. declared backwash 回扬 of well R2)")
    a.set_defaults(func=run_silence_add)
    ls = sc.add_parser("list", help="list active and future silences")
    ls.add_argument("--config", required=True, help="the YAML configuration file")
    ls.add_argument("--all", action="store_true", help="include expired silences")
    ls.set_defaults(func=run_silence_list)
    ex = sc.add_parser("expire", help="end a silence now")
    ex.add_argument("--config", required=True, help="the YAML configuration file")
    ex.add_argument("id", help="the silence id shown by `silence list`")
    ex.add_argument("--author", help="who ends it (kept in the audit chain; default: your login name)")
    ex.set_defaults(func=run_silence_expire)


def _notifier(config: Config) -> Notifier:
    """A notifier over the same queue as the running service; its threads are not started."""
    return Notifier(config.notify, config.state_dir / "notify.sqlite", timezone=config.timezone,
                    public_url=config.api.public_url)


def _open(path: str) -> tuple[Config, Notifier] | None:
    config = load_config_or_exit(path, USES)
    try:
        return config, _notifier(config)
    except NotifyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def _local(ts: float, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(ts, tz).strftime("%Y-%m-%d %H:%M:%S")


def run_test(args: argparse.Namespace) -> int:
    opened = _open(args.config)
    if opened is None:
        return 2
    _, notifier = opened
    try:
        event = json.loads(args.event.read_text(encoding="utf-8")) if args.event else sample_event()
        if args.receiver not in notifier.receivers:
            known = ", ".join(notifier.receivers) or "none are configured"
            print(f"error: no receiver named {args.receiver!r} under notify: (known: {known})", file=sys.stderr)
            return 2
        target = notifier.receivers[args.receiver].target()
        incident = event.get("incident") or {}
        print(f"sending a sample {incident.get('kind')} incident for {incident.get('site_name')} to {args.receiver} "
              f"({target}) …")
        try:
            took = notifier.send_test(args.receiver, event)
        except DeliveryError as exc:
            kind = "retryable" if isinstance(exc, RetryableDeliveryError) else "permanent"
            print(f"FAILED ({kind}): {redact(str(exc))}")
            return 1
        except NotifyError as exc:
            print(f"FAILED: {redact(str(exc))}")
            return 1
        print(f"OK: {args.receiver} accepted it in {took * 1000:.0f} ms")
        return 0
    finally:
        notifier.stop()


def run_status(args: argparse.Namespace) -> int:
    opened = _open(args.config)
    if opened is None:
        return 2
    config, notifier = opened
    try:
        counts = notifier.queue.counts()
        names = list(notifier.settings) + sorted(set(counts) - set(notifier.settings))
        now = time.time()
        rows = []
        for name in names:
            c = counts.get(name)
            target = notifier.receivers[name].target() if name in notifier.receivers else "(no longer configured)"
            rows.append({"receiver": name, "target": target, "pending": c.pending if c else 0,
                         "queued": c.queued if c else 0, "failed": c.failed if c else 0,
                         "dead": c.dead if c else 0, "sent": c.sent if c else 0,
                         "silenced": c.silenced if c else 0,
                         "oldest_unsent_s": round(now - c.oldest_unsent) if c and c.oldest_unsent else None,
                         "last_error": redact(c.last_error) if c and c.last_error else None})
        listed = [{"receiver": m.receiver, "key": m.key, "status": m.status.value, "attempts": m.attempts,
                   "next_try": _local(m.next_at, config.tz) if m.status is MessageStatus.FAILED else None,
                   "error": redact(m.error or "")}
                  for m in notifier.queue.messages([MessageStatus.FAILED, MessageStatus.DEAD])] if args.list else []
        if args.json:
            print(json.dumps({"receivers": rows, "messages": listed}, ensure_ascii=False, indent=2))
            return 0
        if not rows:
            print("no receivers configured under notify:")
        print(f"{'receiver':<20} {'pending':>7} {'queued':>6} {'failed':>6} {'dead':>5} {'sent':>6} "
              f"{'silenced':>8}  target")
        for r in rows:
            print(f"{r['receiver']:<20} {r['pending']:>7} {r['queued']:>6} {r['failed']:>6} {r['dead']:>5} "
                  f"{r['sent']:>6} {r['silenced']:>8}  {r['target']}")
            if r["oldest_unsent_s"] is not None:
                print(f"{'':<20} oldest unsent: {format_duration(parse_duration(r['oldest_unsent_s']))} ago")
            if r["last_error"]:
                print(f"{'':<20} last error: {r['last_error']}")
        for m in listed:
            when = f", next try {m['next_try']}" if m["next_try"] else ""
            print(f"{m['status']:<6} {m['receiver']}: {m['key']} after {m['attempts']} attempt(s){when}: "
                  f"{m['error']}")
        return 0
    finally:
        notifier.stop()


def run_retry(args: argparse.Namespace) -> int:
    opened = _open(args.config)
    if opened is None:
        return 2
    _, notifier = opened
    try:
        n = notifier.queue.requeue_dead(args.receiver)
        print(f"{n} dead notification(s) queued again")
        return 0
    finally:
        notifier.stop()


class _Silences:
    """The silence store in the alert database (where the running service reads silences from)."""

    def __init__(self, config: Config) -> None:
        self.store = AlertStore(config.state_dir / "alerts.sqlite")
        self.silences = SilenceStore(self.store, AuditChain(self.store))

    def __enter__(self) -> SilenceStore:
        return self.silences

    def __exit__(self, *exc: object) -> None:
        self.store.close()


def _local_actor(name: str | None) -> Actor:
    """Someone at the command line: the name given, else the login name."""
    return Actor(name or getpass.getuser(), "local")


def run_silence_add(args: argparse.Namespace) -> int:
    config = load_config_or_exit(args.config, USES)
    try:
        matchers = [Matcher.parse(m) for m in args.match]
        duration = parse_duration(args.duration).total_seconds()
        start = datetime.fromisoformat(args.start).timestamp() if args.start else time.time()
        if args.start and datetime.fromisoformat(args.start).tzinfo is None:
            raise NotifyError("--start needs an offset, e.g. 2026-07-01T08:00:00+08:00")
        with _Silences(config) as silences:
            s = silences.add(_local_actor(args.author), matchers, start, start + duration, args.comment)
    except (NotifyError, StoreError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"silence {s.id}: {', '.join(str(m) for m in s.matchers)} from {_local(s.starts_at, config.tz)} "
          f"until {_local(s.ends_at, config.tz)} ({config.timezone}) by {s.author}: {s.comment}")
    return 0


def run_silence_list(args: argparse.Namespace) -> int:
    config = load_config_or_exit(args.config, USES)
    try:
        with _Silences(config) as store:
            silences = store.silences(include_expired=args.all)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    now = time.time()
    if not silences:
        print("no silences")
    for s in silences:
        state = "active" if s.active(now) else ("expired" if s.ends_at <= now else "pending")
        print(f"{s.id}  {state:<7}  {_local(s.starts_at, config.tz)} → {_local(s.ends_at, config.tz)}  "
              f"{', '.join(str(m) for m in s.matchers)}  by {s.author}: {s.comment}")
    return 0


def run_silence_expire(args: argparse.Namespace) -> int:
    config = load_config_or_exit(args.config, USES)
    try:
        with _Silences(config) as silences:
            ok = silences.expire(_local_actor(args.author), args.id)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not ok:
        print(f"error: no active silence {args.id!r} (see `gshp notify silence list`)", file=sys.stderr)
        return 1
    print(f"silence {args.id} expired")
    return 0
