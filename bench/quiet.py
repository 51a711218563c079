"""Data-quality noise on honest sites: replay every honest scenario with the default rules and count what an
officer would have to dismiss — data-quality incidents (evasion and meter fault) per 100 site-days, alerts
that went pending and resolved without firing (flicker) per 10 site-days, and data-quality alerts that
fired per 100 site-days.

The honest scenarios are nuisance-heavy: most of them hold a DTU gap, a meter replacement or nightly
stop/start cycles within their 6 days, so these rates are an upper bound for a city's mix.

    python -m bench.quiet [--jobs 2] [NAME ...]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import yaml

from alerting.model import AlertKind, IncidentChange, IncidentKind
from bench.table import Row, text
from gshp.config import parse_config
from rules.engine import Engine
from rules.replay import readings_from_frame, replay_steps
from simulators.scenarios import SCENARIOS, build, honest_names

__all__ = ["Noise", "main", "rows", "run_scenario"]

_DQ_INCIDENTS = frozenset({IncidentKind.EVASION, IncidentKind.METER_FAULT})


@dataclass(frozen=True, slots=True)
class Noise:
    name: str
    days: float
    dq_incidents: int  # evasion or meter-fault incidents opened or reopened
    flicker: int  # alerts (any kind) that went pending and resolved without firing
    dq_firing: int  # data-quality alerts that fired


def run_scenario(name: str) -> Noise:
    data = build(name)
    config = parse_config(yaml.safe_dump(data.config(), allow_unicode=True), f"<{name}>", env={})
    engine = Engine(config.sites, config.rules, config.tz)
    states: dict[str, set[str]] = {}
    incidents = dq_firing = 0
    for step in replay_steps(engine, readings_from_frame(data.readings)):
        for a in step.alerts:
            states.setdefault(a.id, set()).add(a.state.value)
            dq_firing += a.kind is AlertKind.DATA_QUALITY and a.state.value == "firing"
        incidents += sum(1 for n in step.notices if n.incident.kind in _DQ_INCIDENTS
                         and n.change in (IncidentChange.OPENED, IncidentChange.REOPENED))
    flicker = sum(1 for s in states.values() if "resolved" in s and "firing" not in s)
    return Noise(name, SCENARIOS[name].days, incidents, flicker, dq_firing)


def run_all(names: Sequence[str], jobs: int) -> list[Noise]:
    if jobs <= 1:
        return [run_scenario(n) for n in names]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(run_scenario, names))


def rows(outcomes: Sequence[Noise]) -> list[Row]:
    """Rates over all `outcomes`, against the goals for a city's data-quality noise."""
    days = sum(o.days for o in outcomes) or 1.0
    return [
        Row(f"data-quality incidents per 100 honest site-days ({days:g} nuisance-heavy site-days)",
            100.0 * sum(o.dq_incidents for o in outcomes) / days, "incidents", goal="≤ 3"),
        Row("pending without firing (flicker) per 10 honest site-days",
            10.0 * sum(o.flicker for o in outcomes) / days, "alerts", goal="≤ 1"),
        Row("data-quality alerts firing per 100 honest site-days",
            100.0 * sum(o.dq_firing for o in outcomes) / days, "alerts"),
    ]


def run() -> list[Row]:
    return rows(run_all(honest_names(), 2))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", help="honest scenarios (default: all)")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args(argv)
    outcomes = run_all(args.names or honest_names(), args.jobs)
    for o in outcomes:
        print(f"{o.name:24} {o.days:g} d: {o.dq_incidents} data-quality incidents, {o.flicker} flicker, "
              f"{o.dq_firing} data-quality alerts firing", file=sys.stderr)
    print(text(rows(outcomes)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
