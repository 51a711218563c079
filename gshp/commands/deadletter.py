"""`gshp deadletter list|purge --config FILE`: inspect and clear payloads that could not be used."""

from __future__ import annotations

import argparse
import base64
import json
import sys
from datetime import UTC, datetime
from typing import Any

from collector.deadletter import DeadLetter, DeadLetterStore
from collector.duration import parse_duration
from gshp.commands.configfile import ALWAYS, load_config_or_exit
from gshp.sources import deadletter_path

USES = ALWAYS
"""The config sections this command reads: the dead letters are in `state_dir`, whichever source kept them."""


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "deadletter", help="inspect payloads that were rejected (bad JSON, unknown meter, …)",
        description="Payloads that could not be turned into readings are acknowledged (so they never block "
                    "the stream) and kept in a bounded dead-letter store under state_dir, with the raw "
                    "bytes, the topic, the reason and the time.")
    group = p.add_subparsers(dest="deadletter_command", metavar="ACTION", required=True)
    register_list(group)
    register_purge(group)


def register_list(group: Any) -> None:
    p: argparse.ArgumentParser = group.add_parser("list", help="show dead letters, newest first")
    p.add_argument("--config", required=True, help="the YAML configuration file")
    p.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    p.add_argument("--reason", help="only this reason (e.g. bad_json, unknown_meter, conflict, retained)")
    p.add_argument("--topic", help="only this exact topic")
    p.add_argument("--format", choices=["table", "json"], default="table",
                   help="table for people, json (one object per line) for tools")
    p.set_defaults(func=run_list)


def register_purge(group: Any) -> None:
    p: argparse.ArgumentParser = group.add_parser("purge", help="delete dead letters")
    p.add_argument("--config", required=True, help="the YAML configuration file")
    p.add_argument("--older-than", metavar="DURATION", help="only those older than e.g. 7d (default: all)")
    p.set_defaults(func=run_purge)


def _open(config_file: str) -> DeadLetterStore:
    config = load_config_or_exit(config_file, USES)
    return DeadLetterStore(deadletter_path(config))


def _payload_text(d: DeadLetter) -> tuple[str, str]:
    try:
        return "utf-8", d.payload.decode("utf-8")
    except UnicodeDecodeError:
        return "base64", base64.b64encode(d.payload).decode("ascii")


def _json(d: DeadLetter) -> str:
    encoding, text = _payload_text(d)
    return json.dumps({"id": d.id, "received": d.received.isoformat(), "source": d.source, "topic": d.topic,
                       "reason": d.reason, "detail": d.detail, "size": d.size, "truncated": d.truncated,
                       "payload_encoding": encoding, "payload": text}, ensure_ascii=False)


def _row(d: DeadLetter) -> str:
    encoding, text = _payload_text(d)
    shown = (text if encoding == "utf-8" else f"base64:{text}").replace("\n", "\\n")
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return (f"{d.id:>8}  {d.received.strftime('%Y-%m-%d %H:%M:%S')}  {d.reason:<15} {d.topic[:40]:<40}  "
            f"{shown}\n{'':>10}{d.detail[:150]}")


def run_list(args: argparse.Namespace) -> int:
    store = _open(args.config)
    try:
        letters = store.list(limit=max(1, args.limit), reason=args.reason, topic=args.topic)
        if args.format == "json":
            for d in letters:
                print(_json(d))
            return 0
        counts = store.counts()
        total = sum(counts.values())
        print(f"{total} dead letters" + (" — " + ", ".join(f"{r}: {n}" for r, n in counts.items())
                                         if counts else ""))
        if letters:
            print(f"{'id':>8}  {'received (UTC)':<19}  {'reason':<15} {'topic':<40}  payload")
            for d in letters:
                print(_row(d))
        return 0
    finally:
        store.close()


def run_purge(args: argparse.Namespace) -> int:
    before = None
    if args.older_than:
        try:
            before = datetime.now(UTC) - parse_duration(args.older_than)
        except ValueError as exc:
            print(f"--older-than: {exc}", file=sys.stderr)
            return 2
    store = _open(args.config)
    try:
        n = store.purge(before)
    finally:
        store.close()
    print(f"deleted {n} dead letters")
    return 0
