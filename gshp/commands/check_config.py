"""`gshp check-config FILE`: validate a configuration file, print every problem, exit 2 if any."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from collector.problems import ZhEn
from gshp.config import ConfigError, load_config
from gshp.config.planning import planning_problems
from gshp.config.schema import config_warnings
from gshp.shard import plan_shards


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "check-config", help="validate a configuration file",
        description="Validate a configuration file: each setting, the checks across sections and the "
                    "collector's planning (register and payload profiles, Modbus units, MQTT topics), as "
                    "`gshp run` would. Prints every problem with file:line, field, the bad value and what is "
                    "allowed, and exits 2; exits 0 with a summary when the file is valid.")
    p.add_argument("file", help="the YAML configuration file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file, checks=(planning_problems,))
    except ConfigError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        n = len(err.problems)
        print(ZhEn(f"{args.file} 中有 {n} 个问题", f"{n} problem(s) in {args.file}"), file=sys.stderr)
        return 2
    for warning in config_warnings(config):
        print(f"{args.file}: {ZhEn(f'警告：{warning.zh}', f'warning: {warning.en}')}", file=sys.stderr)
    meters = sum(len(s.meters) for s in config.sites)
    sites, gateways = len(config.sites), len(config.gateways)
    print(f"{args.file}: " + ZhEn(f"配置有效：{sites} 个站点、{meters} 个计量表、{gateways} 个网关，"
                                  f"时区 {config.timezone}",
                                  f"OK — {sites} sites, {meters} meters, {gateways} gateways, "
                                  f"timezone {config.timezone}"))
    if config.shard.sharded:
        plan = plan_shards(config.sites, config.gateways, config.shard.count)
        per = ", ".join(f"{k}: {len(plan.sites_of(k))}" for k in range(config.shard.count))
        print(ZhEn(f"{config.shard.count} 个分片各有站点：{per}", f"sites per shard of {config.shard.count} — {per}"))
    return 0
