"""`gshp run --config FILE`: the service — collectors, outbox, InfluxDB, rules and the HTTP API, all in one
process, or one role (`--role collector|rules`) of one shard (`--shard K/N`) of a city (docs/scale.md)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from collector.problems import ZhEn
from gshp.citymap import OutlineError
from gshp.clock import Clock, DataClock, SystemClock
from gshp.commands.configfile import load_config_or_exit
from gshp.config import ApiSettings, Config
from gshp.config.exposure import exposed_secrets, readable_by_others
from gshp.config.planning import planning_problems
from gshp.config.schema import config_warnings
from gshp.evidence import EvidenceError
from gshp.reload import EarlyHangups, Reloader
from gshp.roles import ProcessRole, RoleError, for_process
from gshp.service import Service, Source
from gshp.shard import ShardSettings
from gshp.sources import SourceConfigError, build_sources, fanout_source
from gshp.statelock import StateDirBusy, lock_state_dir

log = logging.getLogger("gshp.run")


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "run", help="run the monitoring service",
        description="Run the service for the sites in the config: collect readings (Modbus, MQTT), commit "
                    "them to the durable outbox, write them to InfluxDB, evaluate the rules and serve the "
                    "HTTP API. Stops cleanly on Ctrl-C / SIGTERM; re-reads the config on SIGHUP (README: Reload). "
                    "Beyond one machine, run collectors and rule "
                    "workers per shard (docs/scale.md).")
    p.add_argument("--config", required=True, help="the YAML configuration file (re-read on SIGHUP)")
    p.add_argument("--role", choices=[r.value for r in ProcessRole], default=ProcessRole.ALL.value,
                   help="all: everything in one process (default); collector: read the shard's meters, store "
                        "the readings and publish them to the shard's rule worker over MQTT; rules: evaluate "
                        "the shard's sites from those readings, notify and serve the board")
    p.add_argument("--shard", metavar="K/N", default=None,
                   help="this process's shard, replacing `shard:` in the config (e.g. 0/4)")
    p.add_argument("--listen", metavar="HOST:PORT", default=None,
                   help="the HTTP API's address, replacing api.listen (one port per process on a machine)")
    p.add_argument("--clock", choices=("wall", "data"), default="wall",
                   help="when the rules are evaluated: wall (every rules.evaluate_every of real time, the "
                        "default) or data (at every evaluate_every boundary the reading stream crosses, as "
                        "`gshp replay` does; for tests and re-feeding recorded streams)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    early = EarlyHangups()  # from here on SIGHUP never ends the process: it reloads once the service runs
    config = load_config_or_exit(args.config, checks=(planning_problems,))
    logging.getLogger().setLevel(config.log_level)
    for warning in config_warnings(config):
        log.warning("%s %s", args.config, warning)
    role = ProcessRole(args.role)
    if args.listen is not None:
        try:
            ApiSettings.model_validate({**config.api.model_dump(), "listen": args.listen})
        except ValidationError:
            print(f"--listen {args.listen!r}: " + ZhEn("请写成 主机:端口，如 127.0.0.1:8081",
                                                       "write HOST:PORT, e.g. 127.0.0.1:8081"), file=sys.stderr)
            return 2
    try:
        shard = ShardSettings.model_validate(args.shard) if args.shard is not None else None
    except ValidationError as err:
        print(f"--shard {args.shard!r}: {err.errors()[0]['msg'].removeprefix('Value error, ')}", file=sys.stderr)
        return 2

    def plan_config(loaded: Config) -> Config:
        """This process's part of a config file (at start and at each reload): `--listen`, role and shard."""
        if args.listen is not None:
            api = ApiSettings.model_validate({**loaded.api.model_dump(), "listen": args.listen})
            loaded = loaded.model_copy(update={"api": api})
        return for_process(loaded, role, shard).config

    try:
        plan = for_process(config, role, shard)
        planned = plan_config(config)

        def sources_of(c: Config) -> list[Source]:
            return build_sources(c) if role.collects else [fanout_source(c, plan.rules_client_id)]

        sources = sources_of(planned)
    except (RoleError, SourceConfigError) as err:
        for text in err.problems:
            print(f"{args.config}: {text}", file=sys.stderr)
        return 2
    os.umask(0o077)  # every state file this process creates: 0600, directories 0700
    try:
        lock_state_dir(planned.state_dir)  # held until the process ends
    except StateDirBusy as err:
        print(f"{args.config}: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"{args.config}: state_dir {planned.state_dir} cannot be used: {err}", file=sys.stderr)
        return 2
    _warn_exposed(Path(args.config))
    clock: Clock = DataClock() if args.clock == "data" else SystemClock()
    try:
        service = Service(planned, sources, clock, role=role, fanout_client_id=plan.fanout_client_id)
    except (EvidenceError, OutlineError) as err:
        print(f"{args.config}: {err}", file=sys.stderr)
        return 2
    reloader = Reloader(service, args.config, plan_config, sources_of, early)
    asyncio.run(service.serve(extra=[reloader.run()]))
    return 0


def _warn_exposed(path: Path) -> None:
    """A config file that other users can read must not hold secrets written into it."""
    try:
        if not readable_by_others(path):
            return
        found = exposed_secrets(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return
    if found:
        mode, where = f"{path.stat().st_mode & 0o777:o}", ", ".join(found)
        log.warning("%s %s", path, ZhEn(
            f"可被其他用户读取（权限 {mode}），且其中直接写有密钥：{where} —— 请运行 `chmod 600 {path}`，"
            "或改从环境变量（${VAR}）读取",
            f"is readable by other users (mode {mode}) and holds secrets written into it: {where} — "
            f"run `chmod 600 {path}`, or take them from the environment (${{VAR}})"))
