"""`gshp replay --config FILE --readings FILE.csv`: run the live rules over recorded readings.

stdout carries only the alert transitions (one JSON object per line, or a table with --format table) and,
with --incidents, the incident changes (`{"change": …, "at": …, "incident": {…}}` lines, after the alerts of
the same evaluation); progress and bad rows go to stderr.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from alerting.model import Alert, IncidentNotice
from collector.influx.reader import InfluxReader, QueryError
from gshp.commands.configfile import SITES, load_config_or_exit
from gshp.config import Config
from rules.compiled import WORDS, running
from rules.engine import Engine

if TYPE_CHECKING:  # pandas and numpy: imported when a replay runs, not by every `gshp` command
    from rules.replay import Readings

BAD_ROWS_SHOWN = 20


USES = SITES | {"rules", "influx"}
"""The config sections this command reads."""


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "replay", help="run the rules over recorded readings and print alert transitions",
        description="Run exactly the live rule code over recorded readings in data time and print one JSON "
                    "object per alert transition on stdout. CSV header: ts,site,meter,rate_m3h,total_m3 "
                    "(ts ISO-8601 with offset, or Unix seconds).")
    p.add_argument("--config", required=True, help="the YAML configuration file (sites, meters, rules)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--readings", help="CSV file of readings ('-' for stdin)")
    src.add_argument("--from-influx", action="store_true",
                     help="replay stored history from the config's InfluxDB (needs --start and --stop)")
    p.add_argument("--start", help="with --from-influx: first instant, ISO-8601 with offset")
    p.add_argument("--stop", help="with --from-influx: end instant (excluded), ISO-8601 with offset")
    p.add_argument("--site", action="append", help="with --from-influx: only this site (repeatable)")
    p.add_argument("--format", choices=("json", "table"), default="json", help="output format (json lines)")
    p.add_argument("--language", choices=("zh", "en"), default=None, help="summary language (rules.language)")
    p.add_argument("--incidents", action="store_true",
                   help="also print the incident changes (opened, escalated, resolved…) as JSON lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rules.replay import ReplayError, parse_readings

    config = load_config_or_exit(args.config, USES)
    started = time.monotonic()
    if args.from_influx:
        return _from_influx(args, config, started)
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
    return _replay(args, config, readings, started)


def instant(text: str | None, flag: str) -> datetime:
    """An ISO-8601 instant with its offset, from a command-line flag (`ValueError` saying what is wrong)."""
    if not text:
        raise ValueError(f"{flag} is required with --from-influx (ISO-8601 with offset, e.g. 2026-07-01T00:00+08:00)")
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{flag} {text!r} is not ISO-8601 (e.g. 2026-07-01T00:00+08:00)") from None
    if t.tzinfo is None:
        raise ValueError(f"{flag} {text!r} needs a time zone offset (e.g. +08:00 or Z)")
    return t


def _from_influx(args: argparse.Namespace, config: Config, started: float) -> int:
    """Replay what InfluxDB holds: the case an enforcement officer builds from stored data."""
    import pandas as pd

    from rules.replay import readings_from_frame

    try:
        start, stop = instant(args.start, "--start"), instant(args.stop, "--stop")
    except ValueError as exc:
        print(f"gshp replay: {exc}", file=sys.stderr)
        return 2
    if stop <= start:
        print("gshp replay: --stop must be after --start", file=sys.stderr)
        return 2
    known = {s.id for s in config.sites}
    unknown = sorted(set(args.site or ()) - known)
    if unknown:
        print(f"gshp replay: unknown site(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}",
              file=sys.stderr)
        return 2
    if args.site:
        config = config.model_copy(update={"sites": tuple(s for s in config.sites if s.id in args.site)})
    reader = InfluxReader(config.influx)
    frames = []
    try:
        for site in config.sites:  # one query per site keeps each answer small
            print(f"replay: reading {site.id} from InfluxDB …", file=sys.stderr)
            frames.append(reader.flow(start, stop, site.id))
    except QueryError as exc:
        print(f"gshp replay: {exc}", file=sys.stderr)
        return 1
    finally:
        reader.close()
    frames = [f for f in frames if not f.empty]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["ts", "site", "meter", "rate_m3h", "total_m3"])
    readings = readings_from_frame(df[["ts", "site", "meter", "rate_m3h", "total_m3"]])
    return _replay(args, config, readings, started)


def _replay(args: argparse.Namespace, config: Config, readings: Readings, started: float) -> int:
    from rules.replay import replay_steps
    from rules.settings import Language

    engine = Engine(config.sites, config.rules, config.tz,
                    language=Language(args.language) if args.language else None)
    out = sys.stdout
    if args.format == "table":
        out.write(f"{'at':25} {'site':16} {'rule':20} {'state':9} {'severity':9} summary\n")

    def progress(t: float, rows: int) -> None:
        print(f"replay: {rows}/{len(readings)} rows", file=sys.stderr)

    count = 0
    for step in replay_steps(engine, readings, progress if sys.stderr.isatty() else None):
        for event in step.alerts:
            count += 1
            out.write(_format(event, args.format))
        if args.incidents:
            for notice in step.notices:
                out.write(_format_notice(notice, args.format, args.language or config.rules.language.value))
    out.flush()
    s = engine.stats
    print(f"replay: {len(readings)} readings ({len(readings.bad)} bad rows skipped, "
          f"{s.duplicates} duplicates, "
          f"{s.late} out of order, {s.unknown} for unknown sites/meters), {count} transitions, "
          f"{time.monotonic() - started:.1f}s, {WORDS[running()]}", file=sys.stderr)
    return 0


def _format_notice(notice: IncidentNotice, fmt: str, language: str) -> str:
    if fmt == "json":
        return notice.to_json() + "\n"
    i = notice.incident
    volume = "" if i.volume_m3 is None else f"{i.volume_m3.estimate:.1f} m³ "
    return (f"{notice.to_dict()['at']:25} {i.site:16} {'incident:' + i.kind.value:20} {notice.change.value:9} "
            f"{i.severity.value:9} {volume}{i.text((i.summary and next(iter(i.summary))) or 'zh')}\n")


def _format(event: Alert, fmt: str) -> str:
    if fmt == "json":
        return event.to_json() + "\n"
    d = event.to_dict()
    return f"{d['at']:25} {d['site']:16} {d['rule']:20} {d['state']:9} {d['severity']:9} {d['summary']}\n"
