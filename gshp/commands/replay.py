"""`gshp replay --config FILE --readings FILE.csv`: run the live rules over recorded readings.

stdout carries only the alert transitions (one JSON object per line, or a table with --format table);
progress and bad rows go to stderr.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from gshp.config import ConfigError, load_config
from rules.engine import Engine
from rules.events import AlertEvent
from rules.replay import ReplayError, parse_readings, replay

BAD_ROWS_SHOWN = 20


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "replay", help="run the rules over recorded readings and print alert transitions",
        description="Run exactly the live rule code over recorded readings in data time and print one JSON "
                    "object per alert transition on stdout. CSV header: ts,site,meter,rate_m3h,total_m3 "
                    "(ts ISO-8601 with offset, or Unix seconds).")
    p.add_argument("--config", required=True, help="the YAML configuration file (sites, meters, rules)")
    p.add_argument("--readings", required=True, help="CSV file of readings ('-' for stdin)")
    p.add_argument("--format", choices=("json", "table"), default="json", help="output format (json lines)")
    p.add_argument("--language", choices=("zh", "en"), default=None, help="summary language (rules.language)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        return 2
    started = time.monotonic()
    try:
        if args.readings == "-":
            readings = parse_readings(sys.stdin)
        else:
            with open(args.readings, encoding="utf-8", newline="") as f:
                readings = parse_readings(f)
    except OSError as exc:
        print(f"{args.readings}: cannot be read ({exc.strerror}); check the path", file=sys.stderr)
        return 2
    except ReplayError as exc:
        print(f"{args.readings}: {exc}", file=sys.stderr)
        return 2
    for bad in readings.bad[:BAD_ROWS_SHOWN]:
        print(f"{args.readings}:{bad.line}: skipped: {bad.reason}", file=sys.stderr)
    if len(readings.bad) > BAD_ROWS_SHOWN:
        print(f"{args.readings}: … and {len(readings.bad) - BAD_ROWS_SHOWN} more bad rows", file=sys.stderr)
    from rules.settings import Language

    engine = Engine(config.sites, config.rules, config.tz,
                    language=Language(args.language) if args.language else None)
    out = sys.stdout
    if args.format == "table":
        out.write(f"{'at':25} {'site':16} {'rule':20} {'state':9} {'severity':9} summary\n")

    def progress(t: float, rows: int) -> None:
        print(f"replay: {rows}/{len(readings)} rows", file=sys.stderr)

    count = 0
    for event in replay(engine, readings, progress if sys.stderr.isatty() else None):
        count += 1
        out.write(_format(event, args.format))
    out.flush()
    s = engine.stats
    print(f"replay: {len(readings)} readings ({len(readings.bad)} bad rows skipped, "
          f"{s.duplicates} duplicates, "
          f"{s.late} out of order, {s.unknown} for unknown sites/meters), {count} transitions, "
          f"{time.monotonic() - started:.1f}s", file=sys.stderr)
    return 0


def _format(event: AlertEvent, fmt: str) -> str:
    if fmt == "json":
        return event.to_json() + "\n"
    d = event.to_dict()
    return f"{d['at']:25} {d['site']:16} {d['rule']:20} {d['state']:9} {d['severity']:9} {d['summary']}\n"
