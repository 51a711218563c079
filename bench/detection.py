"""Detection benchmark: replay every scenario with the default rules and print a table of detection delay
per case and false discharge alerts per honest site-day.

    python -m bench.detection [--jobs 2] [NAME ...]

The honest set holds the fleet of `simulators.scenarios.fleet_names()` (2 000 site-days with every nuisance)
beside the hand-made honest sites; replaying it all takes minutes on two cores (`--jobs`).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

import yaml

from alerting.model import Alert
from bench.table import Row
from gshp.config import parse_config
from rules.engine import Engine
from rules.replay import readings_from_frame, replay
from simulators.scenarios import SCENARIOS, Scenario, build_scenario, with_days

__all__ = ["ROW_PREFIXES", "Outcome", "main", "rows", "run_scenario"]

# the README rows this benchmark writes (`python -m bench --only bench.detection --update-readme` keeps the rest)
ROW_PREFIXES = ("detection:", "false discharge alerts", "pending discharge alerts")


@dataclass(frozen=True, slots=True)
class Outcome:
    name: str
    expect_kind: str
    expect_rule: str | None
    within_s: float | None
    days: float
    delay_s: float | None  # first matching firing alert after onset
    first_rule: str | None
    false_discharge: int  # discharge alerts firing before the onset (or at all, when none is expected)
    false_pending: int
    dq_alerts: int
    rows: int
    seconds: float

    @property
    def ok(self) -> bool:
        if self.false_discharge:
            return False
        if self.expect_kind == "none":
            return True
        return self.delay_s is not None and self.within_s is not None and self.delay_s <= self.within_s


def run_scenario(name: str, days: float | None = None) -> Outcome:
    """Replay one scenario (shortened or lengthened to `days`, when given) and judge its alerts."""
    started = time.perf_counter()
    sc: Scenario = SCENARIOS[name] if days is None else with_days(name, days)
    data = build_scenario(sc)
    config = parse_config(yaml.safe_dump(data.config(), allow_unicode=True), f"<{name}>", env={})
    engine = Engine(config.sites, config.rules, config.tz)
    readings = readings_from_frame(data.readings)
    events: list[Alert] = list(replay(engine, readings))
    onset = data.onset.timestamp() if data.onset else None
    delay = None
    first_rule = None
    false_discharge = 0
    false_pending = 0
    dq = 0
    for e in events:
        at = e.at.timestamp()
        before = onset is None or at < onset
        if e.kind.value == "data_quality" and e.state == "firing":
            dq += 1
        if e.kind.value == "discharge" and before and (sc.expect.kind != "data_quality" or onset is None):
            if e.state == "firing":
                false_discharge += 1
            elif e.state == "pending":
                false_pending += 1
        if e.kind.value == "discharge" and sc.expect.kind == "data_quality" and e.state == "firing":
            false_discharge += 1  # evasion must surface as data quality, not as a volume verdict
        if (onset is not None and delay is None and e.state == "firing" and at >= onset
                and e.kind.value == sc.expect.kind
                and (sc.expect.rule is None or e.rule == sc.expect.rule)):
            delay, first_rule = at - onset, e.rule
    return Outcome(name, sc.expect.kind, sc.expect.rule,
                   sc.expect.within.total_seconds() if sc.expect.within else None, sc.days, delay, first_rule,
                   false_discharge, false_pending, dq, len(readings), time.perf_counter() - started)


def run_all(names: Sequence[str], jobs: int, days: Sequence[float | None] | None = None) -> list[Outcome]:
    """Every scenario of `names` (each `days` long, when given), in `jobs` processes."""
    lengths = list(days) if days is not None else [None] * len(names)
    if jobs <= 1:
        return [run_scenario(n, d) for n, d in zip(names, lengths, strict=True)]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(run_scenario, names, lengths))


def _fmt_delay(s: float | None) -> str:
    return "—" if s is None else str(timedelta(seconds=round(s)))


def table(outcomes: Sequence[Outcome]) -> str:
    lines = [f"| {'scenario':24} | expected | target | delay | by rule | false discharge | result |",
             "|---|---|---|---|---|---|---|"]
    for o in outcomes:
        exp = o.expect_kind if o.expect_rule is None else f"{o.expect_kind}/{o.expect_rule}"
        delay = "no alert" if o.delay_s is None and o.expect_kind != "none" else _fmt_delay(o.delay_s)
        lines.append(f"| {o.name:24} | {exp} | {_fmt_delay(o.within_s)} | {delay} | "
                     f"{o.first_rule or '—'} | {o.false_discharge} | {'ok' if o.ok else 'MISSED'} |")
    honest = [o for o in outcomes if o.expect_kind == "none"]
    site_days = sum(o.days for o in honest)
    false = sum(o.false_discharge for o in honest)
    pend = sum(o.false_pending for o in honest)
    lines.append("")
    lines.append(f"honest site-days: {site_days:g}; false discharge alerts: {false} "
                 f"({false / site_days if site_days else 0:.3f} per site-day); pending (not firing): {pend} "
                 f"({10 * pend / site_days if site_days else 0:.2f} per 10 site-days)")
    return "\n".join(lines)


def run() -> list[Row]:
    """Detection delay per case (each against its target) and false discharge alerts per honest site-day."""
    return rows(run_all(list(SCENARIOS), 2))


def rows(outcomes: Sequence[Outcome]) -> list[Row]:
    """The table rows of `outcomes`: a case that raised no alert is a miss ("no alert"), never 0 min."""
    out = []
    for o in outcomes:
        if o.expect_kind == "none" or o.within_s is None:
            continue
        goal = f"≤ {o.within_s / 60:.0f} min" + ("" if o.ok else " — MISSED")
        out.append(Row(f"detection: {o.name}" + (f" → {o.first_rule}" if o.first_rule else ""),
                       None if o.delay_s is None else o.delay_s / 60, "min", goal=goal, missing="no alert"))
    honest = [o for o in outcomes if o.expect_kind == "none"]
    days = sum(o.days for o in honest)
    out.append(Row(f"false discharge alerts over {days:g} honest site-days", sum(o.false_discharge for o in honest),
                   "alerts", None, "", "0"))
    pending = sum(o.false_pending for o in honest)
    out.append(Row("pending discharge alerts that never fired, honest sites",
                   10 * pending / days if days else None, "per 10 site-days", None, "", "≤ 1"))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", help="scenarios (default: all)")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args(argv)
    names = args.names or list(SCENARIOS)
    started = time.perf_counter()
    outcomes = run_all(names, args.jobs)
    print(table(outcomes))
    rows = sum(o.rows for o in outcomes)
    took = time.perf_counter() - started
    print(f"{len(outcomes)} scenarios, {rows} readings in {took:.1f}s", file=sys.stderr)
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
