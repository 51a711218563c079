"""`gshp sim …`: simulators. Each sub-subcommand is one small `_add_<name>` function listed in `SUBCOMMANDS`.

`gshp sim scenarios --out DIR` writes every named scenario as `DIR/<name>/config.yaml`, `readings.csv`
and `truth.json`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from simulators.scenarios import SCENARIOS, build


def write_scenario(name: str, out: Path) -> Path:
    sc = SCENARIOS[name]
    data = build(name)
    d = out / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.yaml").write_text(yaml.safe_dump(data.config(), allow_unicode=True, sort_keys=False),
                                   encoding="utf-8")
    data.readings.to_csv(d / "readings.csv", index=False)
    truth = {
        "name": name, "description": sc.description, "seed": sc.seed, "days": sc.days,
        "onset": data.onset.isoformat() if data.onset else None,
        "expect": {"kind": sc.expect.kind, "rule": sc.expect.rule,
                   "within_s": sc.expect.within.total_seconds() if sc.expect.within else None},
    }
    (d / "truth.json").write_text(json.dumps(truth, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return d


def _scenarios(args: argparse.Namespace) -> int:
    names = args.only or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        print(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}", file=sys.stderr)
        return 2
    for n in names:
        d = write_scenario(n, Path(args.out))
        print(f"wrote {d}", file=sys.stderr)
    return 0


def _add_scenarios(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "scenarios", help="write the named scenarios as config + CSV + truth",
        description="Write each named scenario (reproducible by seed) as DIR/<name>/config.yaml, "
                    "readings.csv and truth.json (onset and expected outcome); replay with `gshp replay`.")
    p.add_argument("--out", required=True, help="directory to write into (created if missing)")
    p.add_argument("--only", nargs="*", metavar="NAME", help="only these scenarios")
    p.set_defaults(func=_scenarios)


SUBCOMMANDS: list[Callable[[Any], None]] = [_add_scenarios]


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("sim", help="simulators (scenarios, …)")
    inner = p.add_subparsers(dest="sim_command", metavar="SIMULATOR", required=True)
    for add in SUBCOMMANDS:
        add(inner)
