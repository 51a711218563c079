"""`gshp backtest`: run the rules over history for many sites at once, sites in parallel processes.

Each site's readings (CSV files in `gshp replay`'s format, or InfluxDB) go through the same engine and the same
`replay_steps` loop as `gshp replay`, once per rule set (`--rules`, and `--against` to compare). stdout holds
one result per site — the alerts and incidents each rule set raised and the difference between the two — and
a last summary line (rows, wall time, rows/s, the engine: `compiled` or `python`); the progress bar and bad
rows go to stderr.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import multiprocessing
import os
import queue
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from alerting.model import Alert, AlertState, IncidentNotice, iso
from collector.influx.reader import InfluxReader, QueryError
from gshp.commands.configfile import load_config_or_exit
from gshp.commands.replay import USES, instant
from gshp.config import Config, ConfigError
from gshp.config.loader import read_yaml
from rules.compiled import WORDS, running
from rules.engine import Engine

if TYPE_CHECKING:  # numpy and pandas: imported when a backtest runs, not by every `gshp` command
    import numpy as np
    import pandas as pd

    from rules.replay import BadRow
from rules.settings import RulesSettings

BAD_ROWS_SHOWN = 20
COLUMNS = ["ts", "site", "meter", "rate_m3h", "total_m3"]  # what `gshp replay --from-influx` reads too


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "backtest", help="run the rules over history for many sites at once and compare two rule sets",
        description="Run exactly the live rule code over recorded readings (CSV files or a directory of them in "
                    "gshp replay's format, or InfluxDB), sites in parallel processes, and print per site the "
                    "alerts and incidents each rule set raises and the difference between the two.")
    p.add_argument("--config", required=True, help="the YAML configuration file (sites, meters, rules)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--readings", help="a CSV file of readings, or a directory of *.csv files")
    src.add_argument("--from-influx", action="store_true",
                     help="read stored history from the config's InfluxDB (needs --start and --stop)")
    p.add_argument("--start", help="with --from-influx: first instant, ISO-8601 with offset")
    p.add_argument("--stop", help="with --from-influx: end instant (excluded), ISO-8601 with offset")
    p.add_argument("--rules", help="YAML file with a `rules:` section to run instead of the config's")
    p.add_argument("--against", help="YAML file with a second `rules:` section to compare with")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="parallel processes (default: the number of cores)")
    p.add_argument("--format", choices=("json", "table"), default="json",
                   help="one JSON object per site and a summary object (json), or a table")
    p.set_defaults(func=run)


# ---------------------------------------------------------------- plan


@dataclass(frozen=True, slots=True)
class Task:
    """Sites one worker runs: their readings come from `files` (CSV) or from InfluxDB over `span`.
    `strays`: this task also takes the rows of sites the config does not know (counted, not run)."""

    sites: tuple[str, ...]
    files: tuple[str, ...] = ()
    strays: bool = False
    whole: frozenset[str] = frozenset()  # the files holding only these sites: read without filtering
    span: tuple[datetime, datetime] | None = None  # --from-influx: [start, stop)


@dataclass(slots=True)
class SiteResult:
    """What each rule set raised at one site: alerts (one per alert, its last state) and incidents."""

    site: str
    rows: int = 0
    alerts: list[list[dict[str, Any]]] = field(default_factory=list)
    incidents: list[list[dict[str, Any]]] = field(default_factory=list)


@dataclass(slots=True)
class TaskResult:
    sites: list[SiteResult]
    rows: int
    bad: list[tuple[str, BadRow]]
    duplicates: int = 0
    late: int = 0
    unknown: int = 0


def _fail(message: str) -> int:
    print(f"gshp backtest: {message}", file=sys.stderr)
    return 2


def load_rules(path: str, config: Config) -> RulesSettings:
    """The `rules:` section of a YAML file (a rules file or a whole config), checked against the config's
    sites and districts; `ValueError` listing every problem."""
    try:
        data = read_yaml(path)  # the config's bounds: no alias bomb, no oversized file
    except ConfigError as err:
        raise ValueError(str(err)) from None
    if not isinstance(data, dict) or not isinstance(data.get("rules"), dict | None):
        raise ValueError(f"{path}: needs a top-level `rules:` mapping, shaped as the config's (see docs/rules.md)")
    try:
        rules = RulesSettings.model_validate(data.get("rules") or {})
    except ValidationError as err:
        lines = [f"{path}: rules.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors(include_url=False)]
        raise ValueError("\n".join(lines)) from None
    districts = {s.district for s in config.sites}
    problems = [f"{path}: rules.districts.{d}: names no district of any site" for d in rules.districts
                if d not in districts]
    problems += [f"{path}: {'.'.join(map(str, loc))}: {msg}"
                 for loc, msg in rules.problems({s.id: s.district for s in config.sites})]
    if problems:
        raise ValueError("\n".join(problems))
    return rules


def csv_files(path: str) -> list[str]:
    """The CSV files to read: `path` itself, or every *.csv in the directory (sorted)."""
    p = Path(path)
    if p.is_dir():
        files = sorted(str(f) for f in p.glob("*.csv") if f.is_file())
        if not files:
            raise ValueError(f"{path}: the directory holds no *.csv file")
        return files
    if not p.is_file():
        raise ValueError(f"{path}: no such file or directory")
    return [str(p)]


def file_sites(path: str) -> dict[str, int]:
    """How many rows each site has in one CSV file (only the `site` column is read)."""
    import pandas as pd

    try:
        with open(path, encoding="utf-8", newline="") as stream:
            head = stream.readline()
            if "site" not in [c.strip() for c in head.strip().split(",")]:
                raise ValueError(f"{path}: readings lack the column site; the header must be "
                                 f"{','.join(COLUMNS)} (signal_pct,error_code optional)")
            stream.seek(0)
            col = pd.read_csv(stream, usecols=["site"], dtype=object, keep_default_na=False, skipinitialspace=True)
    except OSError as exc:
        raise ValueError(f"{path}: cannot be read ({exc.strerror}); check the path") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: readings are not CSV ({exc})") from None
    counts: dict[str, int] = {}  # counted as written, then each distinct id stripped once (as `text_column` does)
    for value, n in col["site"].value_counts(dropna=False).items():
        site = "" if pd.isna(value) else str(value).strip()
        counts[site] = counts.get(site, 0) + int(n)
    return counts


def plan_csv(config: Config, rows: dict[str, dict[str, int]], jobs: int) -> tuple[list[Task], int]:
    """Tasks over CSV files: sites that share the same files run together, split so every process has work;
    and the total rows."""
    known = [s.id for s in config.sites]
    by_files: dict[tuple[str, ...], list[str]] = {}
    for site in known:
        files = tuple(f for f, counts in rows.items() if site in counts)
        if files:
            by_files.setdefault(files, []).append(site)
    parts = max(1, math.ceil(jobs / max(1, len(by_files))))
    tasks = []
    for files, sites in by_files.items():
        n = min(parts, len(sites))
        for part in (tuple(sites[i::n]) for i in range(n)):
            tasks.append(Task(part, files, whole=frozenset(f for f in files if rows[f].keys() <= set(part))))
    stray_files = tuple(f for f, counts in rows.items() if set(counts) - set(known))
    if stray_files:
        tasks.append(Task((), stray_files, strays=True))
    return tasks, sum(sum(c.values()) for c in rows.values())


# ---------------------------------------------------------------- worker

_progress: Callable[[tuple[int, int]], None] | None = None  # where a task reports (task, rows done)


def _init_worker(q: Any) -> None:
    global _progress
    _progress = q.put


def _report(task_id: int, rows: int) -> None:
    if _progress is not None:
        _progress((task_id, rows))


def _frame(task: Task, known: frozenset[str]) -> tuple[pd.DataFrame, np.ndarray[Any, Any], list[str]]:
    """The task's rows of every file, their line numbers and the file each came from."""
    import numpy as np
    import pandas as pd

    from rules.replay import read_frame, text_column

    frames, lines, names = [], [], []
    wanted = set(task.sites)
    for f in task.files:
        with open(f, encoding="utf-8", newline="") as stream:
            df = read_frame(stream)
        if f in task.whole:
            frames.append(df)
            lines.append(np.arange(len(df)) + 2)
            names += [f] * len(df)
            continue
        site = pd.Series(text_column(df["site"])[0])
        keep = site.isin(wanted).to_numpy()
        if task.strays:
            keep = keep | ~site.isin(known).to_numpy()
        frames.append(df if keep.all() else df.loc[keep])  # a file of the task's sites alone: no copy
        lines.append(np.flatnonzero(keep) + 2)
        names += [f] * int(keep.sum())
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)
    return df, np.concatenate(lines), names


def run_task(task_id: int, task: Task, config: Config, rule_sets: Sequence[RulesSettings],
             known: frozenset[str]) -> TaskResult:
    """Read one task's readings and run each rule set over them (in a worker process, or in-process)."""
    import pandas as pd

    from rules.replay import readings_from_frame, replay_steps

    bad: list[tuple[str, BadRow]] = []
    if task.files:
        df, lines, names = _frame(task, known)
        readings = readings_from_frame(df, lines=lines)
        where = {int(ln): n for ln, n in zip(lines.tolist(), names, strict=True)} if readings.bad else {}
        bad = [(where.get(b.line, ""), b) for b in readings.bad]
    else:
        assert task.span is not None
        reader = InfluxReader(config.influx)
        try:  # one query per site keeps each answer small
            frames = [reader.flow(*task.span, s) for s in task.sites]
        finally:
            reader.close()
        frames = [f for f in frames if not f.empty]
        df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
        readings = readings_from_frame(df[COLUMNS])
        bad = [("influx", b) for b in readings.bad]
    sites = tuple(s for s in config.sites if s.id in task.sites)
    results = {s.id: SiteResult(s.id) for s in sites}
    for sid, count in Counter(readings.site).items():
        if sid in results:
            results[sid].rows = count
    out = TaskResult(list(results.values()), len(readings) + len(readings.bad), bad)
    for rules in rule_sets:
        engine = Engine(sites, rules, config.tz)
        alerts: dict[str, dict[str, dict[str, Any]]] = {s.id: {} for s in sites}
        incidents: dict[str, dict[str, dict[str, Any]]] = {s.id: {} for s in sites}
        last = 0

        def progress(_t: float, rows: int) -> None:
            nonlocal last
            _report(task_id, rows - last)
            last = rows

        for step in replay_steps(engine, readings, progress):
            for a in step.alerts:
                _note_alert(alerts[a.site], a)
            for n in step.notices:
                _note_incident(incidents[n.incident.site], n)
        _report(task_id, len(readings) - last)
        for r in out.sites:
            r.alerts.append(sorted(alerts[r.site].values(), key=lambda a: (a["starts_at"], a["rule"])))
            r.incidents.append(sorted(incidents[r.site].values(), key=lambda i: (i["started_at"], i["kind"])))
        s = engine.stats
        out.duplicates, out.late, out.unknown = s.duplicates, s.late, s.unknown
    return out


def _note_alert(seen: dict[str, dict[str, Any]], a: Alert) -> None:
    """One alert per id: its rule, severity, start, whether it fired, and its end."""
    item = seen.setdefault(a.id, {"rule": a.rule, "severity": a.severity.value, "starts_at": iso(a.starts_at),
                                  "fired_at": None, "ends_at": None})
    if a.state is AlertState.FIRING and item["fired_at"] is None:
        item["fired_at"] = iso(a.at)
    if a.ends_at is not None:
        item["ends_at"] = iso(a.ends_at)


def _note_incident(seen: dict[str, dict[str, Any]], n: IncidentNotice) -> None:
    i = n.incident
    seen[i.id] = {"kind": i.kind.value, "severity": i.severity.value, "started_at": iso(i.started_at),
                  "ended_at": None if i.ended_at is None else iso(i.ended_at),
                  "volume_m3": None if i.volume_m3 is None else round(i.volume_m3.estimate, 1),
                  "changes": [*seen.get(i.id, {}).get("changes", []), n.change.value]}


# ---------------------------------------------------------------- driver


class Progress:
    """A progress bar on stderr, in both languages, redrawn at most every `every` seconds (a terminal) or
    written as a line at most every `every_line` seconds (a file or pipe), and always once at the end."""

    def __init__(self, total: int, every: float = 0.2, every_line: float = 10.0) -> None:
        self.total, self.done = total, 0
        self.tty = sys.stderr.isatty()
        self.every = every if self.tty else every_line
        self.started = time.monotonic()
        self.shown = -math.inf

    def add(self, rows: int, final: bool = False) -> None:
        self.done += rows
        now = time.monotonic()
        if not final and now - self.shown < self.every:
            return
        self.shown = now
        secs = now - self.started
        rate = self.done / secs if secs > 0 else 0.0
        if self.total:
            frac = min(1.0, self.done / self.total)
            bar = "#" * round(30 * frac) + "." * (30 - round(30 * frac))
            done = f"[{bar}] {100 * frac:5.1f}% {self.done:,}/{self.total:,}"
        else:
            done = f"{self.done:,}"
        text = f"回测 backtest {done} 行 rows {secs:.0f} s {rate:,.0f} 行/秒 rows/s"
        sys.stderr.write(f"\r{text}" + ("\n" if final else "") if self.tty else f"{text}\n")
        sys.stderr.flush()


class Workers:
    """The worker processes of one backtest, forked once (none for one job): they read the files' site columns
    to plan the tasks, then run the tasks."""

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs
        self.pool: ProcessPoolExecutor | None = None
        self.queue: Any = None  # where the workers report their progress

    def __enter__(self) -> Workers:
        if self.jobs > 1:
            gc.freeze()  # what the workers inherit stays out of their collections: no pages copied to walk it
            ctx = multiprocessing.get_context("fork")
            self.queue = ctx.Queue()
            self.pool = ProcessPoolExecutor(self.jobs, mp_context=ctx, initializer=_init_worker,
                                            initargs=(self.queue,))
        return self

    def __exit__(self, *_: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)

    def sites_in(self, files: Sequence[str]) -> dict[str, dict[str, int]]:
        """Per file, how many rows each site has: the files read in parallel."""
        counts = self.pool.map(file_sites, files) if self.pool is not None else map(file_sites, files)
        return dict(zip(files, counts, strict=True))

    def run(self, tasks: Sequence[Task], config: Config, rule_sets: Sequence[RulesSettings],
            on_rows: Callable[[int], None]) -> list[TaskResult]:
        """Run the tasks, in the worker processes when there is more than one of either."""
        known = frozenset(s.id for s in config.sites)
        if self.pool is None or len(tasks) <= 1:
            global _progress

            def report(message: tuple[int, int]) -> None:
                on_rows(message[1])

            _progress = report
            try:
                return [run_task(i, t, config, rule_sets, known) for i, t in enumerate(tasks)]
            finally:
                _progress = None
        futures: dict[Future[TaskResult], int] = {
            self.pool.submit(run_task, i, t, config, rule_sets, known): i for i, t in enumerate(tasks)}
        pending = set(futures)
        while pending:
            _, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            _drain(self.queue, on_rows)
        _drain(self.queue, on_rows)
        return [f.result() for f in sorted(futures, key=futures.__getitem__)]


def _drain(q: Any, on_rows: Callable[[int], None]) -> None:
    while True:
        try:
            on_rows(q.get_nowait()[1])
        except queue.Empty:
            return


def run(args: argparse.Namespace) -> int:
    from rules.replay import ReplayError

    started = time.monotonic()
    config = load_config_or_exit(args.config, USES)
    if args.jobs < 1:
        return _fail("--jobs must be at least 1")
    try:
        rule_sets = [load_rules(args.rules, config) if args.rules else config.rules]
        if args.against:
            rule_sets.append(load_rules(args.against, config))
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.from_influx:
        try:
            span = instant(args.start, "--start"), instant(args.stop, "--stop")
        except ValueError as exc:
            return _fail(str(exc))
        if span[1] <= span[0]:
            return _fail("--stop must be after --start")
    with Workers(args.jobs) as workers:
        if args.from_influx:
            tasks, total = [Task((s.id,), span=span) for s in config.sites], 0
        else:
            try:
                tasks, total = plan_csv(config, workers.sites_in(csv_files(args.readings)), args.jobs)
            except (ValueError, ReplayError) as exc:
                print(exc, file=sys.stderr)
                return 2
        bar = Progress(total * len(rule_sets))  # InfluxDB: rows unknown until read, no percentage
        try:
            results = workers.run(tasks, config, rule_sets, bar.add)
        except (QueryError, ReplayError) as exc:
            return _fail(str(exc))
    rows = sum(r.rows for r in results)
    # the workers' last progress messages may still be in flight: the final line counts every row read
    bar.add(max(0, rows * len(rule_sets) - bar.done), final=True)
    _bad_rows(results)
    by_site = {r.site: r for t in results for r in t.sites}
    sites = [by_site.get(s.id) or SiteResult(s.id, alerts=[[] for _ in rule_sets],
                                             incidents=[[] for _ in rule_sets]) for s in config.sites]
    seconds = time.monotonic() - started
    summary = {"sites": len(sites), "rows": rows, "bad_rows": sum(len(t.bad) for t in results),
               "duplicates": sum(t.duplicates for t in results), "out_of_order": sum(t.late for t in results),
               "unknown": sum(t.unknown for t in results), "rule_sets": len(rule_sets), "jobs": args.jobs,
               "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds) if seconds > 0 else None,
               "engine": running()}
    out = sys.stdout
    if args.format == "json":
        for r in sites:
            out.write(json.dumps(site_json(r, len(rule_sets) > 1), ensure_ascii=False) + "\n")
        out.write(json.dumps({"summary": summary}, ensure_ascii=False) + "\n")
    else:
        out.write(table(sites, len(rule_sets) > 1, summary))
    out.flush()
    return 0


def _bad_rows(results: Iterable[TaskResult]) -> None:
    bad = sorted((b for t in results for b in t.bad), key=lambda fb: (fb[0], fb[1].line))
    for f, b in bad[:BAD_ROWS_SHOWN]:
        print(f"{f}:{b.line}: skipped: {b.reason}", file=sys.stderr)
    if len(bad) > BAD_ROWS_SHOWN:
        print(f"… and {len(bad) - BAD_ROWS_SHOWN} more bad rows", file=sys.stderr)


# ---------------------------------------------------------------- output


def _alert_key(a: dict[str, Any]) -> tuple[str, str]:
    return a["rule"], a["starts_at"]


def _incident_key(i: dict[str, Any]) -> tuple[str, str]:
    return i["kind"], i["started_at"]


def difference(r: SiteResult) -> dict[str, list[dict[str, Any]]]:
    """Alerts (by rule and start) and incidents (by kind and start) raised by only one of the two rule sets."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name, items, key in (("alerts", r.alerts, _alert_key), ("incidents", r.incidents, _incident_key)):
        a, b = {key(x): x for x in items[0]}, {key(x): x for x in items[1]}
        out[f"{name}_only_rules"] = [x for k, x in a.items() if k not in b]
        out[f"{name}_only_against"] = [x for k, x in b.items() if k not in a]
    return out


def _counts(alerts: list[dict[str, Any]], incidents: list[dict[str, Any]]) -> dict[str, int]:
    return {"alerts": len(alerts), "fired": sum(a["fired_at"] is not None for a in alerts),
            "incidents": len(incidents)}


def site_json(r: SiteResult, compare: bool) -> dict[str, Any]:
    d: dict[str, Any] = {"site": r.site, "rows": r.rows,
                         "rules": {**_counts(r.alerts[0], r.incidents[0]), "alert_list": r.alerts[0],
                                   "incident_list": r.incidents[0]}}
    if compare:
        d["against"] = {**_counts(r.alerts[1], r.incidents[1]), "alert_list": r.alerts[1],
                        "incident_list": r.incidents[1]}
        d["difference"] = difference(r)
    return d


def table(sites: Sequence[SiteResult], compare: bool, summary: dict[str, Any]) -> str:
    """Per site: rows, then alerts / fired / incidents of each rule set and what only one of them raised."""
    head = f"{'站点 site':24} {'行 rows':>10} {'告警 alerts':>12} {'触发 fired':>11} {'事件 incidents':>15}"
    if compare:
        head += f" {'对照告警 alerts²':>16} {'对照触发 fired²':>15} {'对照事件 incidents²':>19} 差异 difference"
    lines = [head]
    for r in sites:
        c = _counts(r.alerts[0], r.incidents[0])
        line = f"{r.site:24} {r.rows:>10,} {c['alerts']:>12} {c['fired']:>11} {c['incidents']:>15}"
        if compare:
            c2 = _counts(r.alerts[1], r.incidents[1])
            d = difference(r)
            only = [f"-{a['rule']}@{a['starts_at']}" for a in d["alerts_only_rules"]] + \
                   [f"+{a['rule']}@{a['starts_at']}" for a in d["alerts_only_against"]]
            line += f" {c2['alerts']:>16} {c2['fired']:>15} {c2['incidents']:>19} {' '.join(only) or '—'}"
        lines.append(line)
    s = summary
    lines.append(f"合计 total: {s['sites']} 站点 sites, {s['rows']:,} 行 rows ({s['bad_rows']} 坏行 bad), "
                 f"{s['rule_sets']} 套规则 rule sets, {s['jobs']} 进程 jobs, {s['seconds']:.1f} s, "
                 f"{s['rows_per_s'] or 0:,} 行/秒 rows/s, {WORDS[s['engine']]}")
    return "\n".join(lines) + "\n"
