"""`gshp report --config FILE --date YYYY-MM-DD`: the daily extraction/reinjection balance report;
`--monthly YYYY-MM` / `--annual YYYY`: the permit compliance report of a month or a year.

Reads the day's readings from InfluxDB (or a recorded CSV with --readings), the alerts from
`<state_dir>/alerts.sqlite` when it exists, and writes CSV, xlsx or HTML. The report goes to stdout (csv,
html) or --output; progress and messages go to stderr.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from collector.influx.reader import InfluxReader, QueryError
from gshp.commands.configfile import SITES, load_config_or_exit
from gshp.config import Config
from gshp.report import FORMATS, render
from rules.audit import AuditChain
from rules.period import Period
from rules.report import ONLINE_THRESHOLD_PCT, DailyReport, ReportError
from rules.store import AlertStore, StoreError

if TYPE_CHECKING:
    from rules.replay import Readings

MAX_DAYS = 366


USES = SITES | {"rules", "influx"}
"""The config sections this command reads."""


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "report", help="daily balance report per site and district (csv, xlsx, html)",
        description="Per site: extracted, reinjected and deficit m³ and %, data coverage, alerts and declared "
                    "maintenance of one local day (00:00–24:00 in the configured time zone); per district: "
                    "totals, online rate and sites with alerts. Volumes are computed by the rule engine "
                    "itself, so they equal what `gshp replay` counts for the same data.")
    p.add_argument("--config", required=True, help="the YAML configuration file")
    when = p.add_mutually_exclusive_group(required=True)
    when.add_argument("--date", type=_day, help="the local day, YYYY-MM-DD (first day with --days)")
    when.add_argument("--monthly", type=_month, metavar="YYYY-MM",
                      help="the compliance report of a calendar month: per district and site, extraction against "
                           "the permitted quota, reinjection ratio, incidents, sealed sites checked, online and "
                           "arrival rate")
    when.add_argument("--annual", type=_year, metavar="YYYY", help="the compliance report of a calendar year")
    p.add_argument("--days", type=int, default=1, help=f"consecutive days from --date (1–{MAX_DAYS}) [1]")
    p.add_argument("--district", default=None, help="only the sites of this district")
    p.add_argument("--format", choices=FORMATS, default="csv", help="output format [csv]")
    p.add_argument("--output", "-o", default=None, help="file to write (default stdout; xlsx needs a file)")
    p.add_argument("--readings", default=None,
                   help="read a recorded CSV (ts,site,meter,rate_m3h,total_m3) instead of InfluxDB")
    p.add_argument("--language", choices=("zh", "en"), default=None,
                   help="labels and headers (default rules.language, zh)")
    p.add_argument("--online-threshold", type=float, default=ONLINE_THRESHOLD_PCT, metavar="PCT",
                   help=f"a site is online on a day with at least this data coverage [{ONLINE_THRESHOLD_PCT:g}]")
    p.set_defaults(func=run)


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date: write YYYY-MM-DD, e.g. 2026-05-05") from None


def _month(text: str) -> date:
    try:
        return date.fromisoformat(f"{text}-01")
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a month: write YYYY-MM, e.g. 2026-05") from None


def _year(text: str) -> date:
    if not (len(text) == 4 and text.isdigit() and int(text) >= 1970):
        raise argparse.ArgumentTypeError(f"{text!r} is not a year: write YYYY, e.g. 2026")
    return date(int(text), 1, 1)


class Bar:
    """A progress bar on stderr: redrawn in place on a terminal, one line per day otherwise."""

    def __init__(self, total: int, stream: TextIO, width: int = 30) -> None:
        self.total, self.stream, self.width = max(total, 1), stream, width
        self.tty = stream.isatty()
        self.started = time.monotonic()

    def update(self, done: int, what: str) -> None:
        if not self.tty:
            return
        filled = round(self.width * done / self.total)
        pct = 100 * done / self.total
        self.stream.write(f"\rreport [{'#' * filled}{'.' * (self.width - filled)}] {pct:5.1f}% {what[:30]:30}")
        self.stream.flush()

    def day_done(self, day: date, n: int, days: int) -> None:
        if not self.tty and days > 1:
            print(f"report: {day.isoformat()} done ({n}/{days})", file=self.stream)

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def run(args: argparse.Namespace) -> int:
    from gshp.report.build import build_daily_report  # pandas: imported by this command only
    from rules.replay import ReplayError, parse_readings

    config = load_config_or_exit(args.config, USES)
    if not 1 <= args.days <= MAX_DAYS:
        print(f"--days {args.days}: give 1 to {MAX_DAYS}", file=sys.stderr)
        return 2
    if args.format == "xlsx" and args.output in (None, "-"):
        print("--format xlsx writes a binary file: give --output FILE.xlsx", file=sys.stderr)
        return 2
    language = args.language or config.rules.language.value
    started = time.monotonic()

    source: Readings | InfluxReader
    if args.readings is not None:
        try:
            with open(args.readings, encoding="utf-8-sig", newline="") as f:
                source = parse_readings(f)
        except OSError as exc:
            print(f"{args.readings}: cannot be read ({exc.strerror}); check the path", file=sys.stderr)
            return 2
        except ReplayError as exc:
            print(f"{args.readings}: {exc}", file=sys.stderr)
            return 2
        if source.bad:
            print(f"{args.readings}: {len(source.bad)} bad rows skipped (first: line {source.bad[0].line}: "
                  f"{source.bad[0].reason})", file=sys.stderr)
    else:
        source = InfluxReader(config.influx)

    store_path = config.state_dir / "alerts.sqlite"
    store: AlertStore | None = None
    if store_path.exists():
        try:
            store = AlertStore(store_path)
        except StoreError as exc:
            print(f"{exc}; the report is made without alerts", file=sys.stderr)
    else:
        print(f"report: no alert store at {store_path}: alert columns are left empty", file=sys.stderr)

    if args.monthly is not None or args.annual is not None:
        return _period(args, config, source, store, language, started)
    n_sites = sum(1 for s in config.sites if args.district is None or s.district == args.district)
    today = datetime.now(config.tz).date()
    bar = Bar(args.days * max(n_sites, 1), sys.stderr)
    reports: list[DailyReport] = []
    try:
        for n in range(args.days):
            day = args.date + timedelta(days=n)
            base = n * n_sites

            def progress(done: int, total: int, what: str, base: int = base, day: date = day) -> None:
                bar.update(base + done, f"{day.isoformat()} {what}")

            reports.append(build_daily_report(config, day, args.district, source, store,
                                              online_threshold_pct=args.online_threshold, progress=progress,
                                              today=today))
            bar.day_done(day, n + 1, args.days)
    except (ReportError, QueryError) as exc:
        return _failed(exc, bar, args.config)
    finally:
        _close(store, source)
    bar.close()

    out = render(reports, args.format, language)
    where = _write(args.output, out.body)
    if where is None:
        return 1
    incomplete = sum(1 for r in reports for s in r.sites if not s.complete)
    print(f"report: {len(reports)} day(s), {n_sites} site(s), {incomplete} site-day(s) with incomplete data "
          f"→ {where} ({len(out.body)} bytes, {time.monotonic() - started:.1f}s)", file=sys.stderr)
    return 0


def _period(args: argparse.Namespace, config: Config, source: Readings | InfluxReader, store: AlertStore | None,
            language: str, started: float) -> int:
    """The monthly or annual compliance report, day by day up to today (a period in progress)."""
    from gshp.report.period import build_period_report, render_period  # pandas: imported by this command only

    period, first = (Period.MONTHLY, args.monthly) if args.monthly is not None else (Period.ANNUAL, args.annual)
    today = datetime.now(config.tz).date()
    if first > today:
        print(f"report: {first.isoformat()} has not begun", file=sys.stderr)
        return 2
    bar = Bar(1000, sys.stderr)
    try:
        report = build_period_report(config, period, first, args.district, source, store, today,
                                     args.online_threshold,
                                     lambda done, total, what: bar.update(round(1000 * done / max(total, 1)), what))
    except (ReportError, QueryError) as exc:
        return _failed(exc, bar, args.config)
    finally:
        _close(store, source)
    bar.close()
    out = render_period(report, args.format, language)
    where = _write(args.output, out.body)
    if where is None:
        return 1
    print(f"report: {period.value} {report.label}, {len(report.sites)} site(s), "
          f"{sum(d.sealed for d in report.districts)} sealed → {where} ({len(out.body)} bytes, "
          f"{time.monotonic() - started:.1f}s)", file=sys.stderr)
    return 0


def _failed(exc: ReportError | QueryError, bar: Bar, config: str) -> int:
    """Say why the report could not be made: 2 for what was asked, 1 for InfluxDB."""
    bar.close()
    if isinstance(exc, ReportError):
        print(f"report: {exc}", file=sys.stderr)
        return 2
    print(f"report: {exc}; check influx: in {config} and that InfluxDB is running", file=sys.stderr)
    return 1


def _close(store: AlertStore | None, source: Readings | InfluxReader) -> None:
    """Close what the report read, naming the audit chain's head it was made at."""
    from gshp.report.build import audit_note

    if store is not None:
        last = AuditChain(store).last()
        if last is not None:
            print(f"report: {audit_note(last.seq, last.hash, last.at)}", file=sys.stderr)
        store.close()
    if isinstance(source, InfluxReader):
        source.close()


def _write(output: str | None, body: bytes) -> str | None:
    """Write a rendered report to `output` (stdout for None or "-"); where it went, None if it could not be."""
    if output in (None, "-"):
        sys.stdout.buffer.write(body)
        sys.stdout.buffer.flush()
        return "stdout"
    try:
        Path(output).write_bytes(body)
    except OSError as exc:
        print(f"{output}: cannot be written ({exc.strerror})", file=sys.stderr)
        return None
    return output
