"""`gshp poll`: the commissioning tool — read every configured Modbus meter and show what came back."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from typing import TYPE_CHECKING, Any, TextIO

from collector.modbus import CollectionPlan, ModbusConfigError, ProfileError, plan_collection
from gshp.commands.configfile import SITES, load_config_or_exit

if TYPE_CHECKING:
    from collector.modbus import MeterPoll

__all__ = ["format_table", "register", "run"]


USES = SITES | {"modbus_profiles"}
"""The config sections this command reads: the Modbus meters, their gateways and register profiles."""


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "poll", help="read every configured Modbus meter and print decoded values with raw registers",
        description="Commissioning tool: reads every Modbus meter of the configuration (or of one site), "
                    "prints decoded values with units and the raw registers in hex, and a line saying "
                    "why for each meter that failed (timeout, exception code, connection refused). Exits "
                    "1 if any meter failed, 2 if the configuration is unusable.")
    p.add_argument("--config", required=True, help="the YAML configuration file")
    p.add_argument("--site", help="only this site's meters")
    p.add_argument("--once", action="store_true", help="read once and exit (default: repeat every interval)")
    p.add_argument("--count", type=int, default=0, help="stop after this many rounds (default: until ^C)")
    p.add_argument("--format", choices=("table", "json"), default="table",
                   help="table for people, json for one object per meter per line")
    p.add_argument("--profiles", metavar="DIR",
                   help="a directory of extra register profiles (*.yaml), besides the config's `modbus_profiles`")
    p.set_defaults(func=run)


def _value(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.10g}"
    return str(v)


def format_table(poll: MeterPoll, units: dict[str, str | None], out: TextIO) -> None:
    head = f"{poll.site}/{poll.meter}  {poll.gateway}:{poll.unit}  {poll.profile}"
    if poll.error is not None:
        print(f"{head}  FAILED {poll.error}", file=out)
    else:
        r = poll.reading
        assert r is not None
        parts = [f"rate {_value(r.rate_m3h)} m3/h", f"total {_value(r.total_m3)} m3"]
        if r.signal_pct is not None:
            parts.append(f"signal {_value(r.signal_pct)} %")
        if r.error_code is not None:
            parts.append(f"error 0x{r.error_code:04x}")
        print(f"{head}  OK  " + "  ".join(parts), file=out)
        extra = [f"{k}={_value(v)}{' ' + u if (u := units.get(k)) else ''}"
                 for k, v in poll.values.items() if v is not None and k not in
                 ("rate_m3h", "total_m3", "signal_pct", "error_code")]
        if extra:
            print("    values:   " + "  ".join(extra), file=out)
    if poll.identity:
        print("    identity: " + "  ".join(f"{k}={_value(v)}" for k, v in poll.identity.items()), file=out)
    for block in poll.raw:
        regs = block.hex()
        for i in range(0, len(regs), 16):
            line = " ".join(regs[i:i + 16])
            print(f"    raw {block.function.value}:{block.address + i:<5} {line}", file=out)


def run(args: argparse.Namespace) -> int:
    if not args.verbose:
        logging.getLogger("collector.modbus").setLevel(logging.ERROR)
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    config = load_config_or_exit(args.config, USES)
    from gshp.sources import register_profiles  # the service's sources: only for this command

    try:
        profiles = register_profiles(config)
        if args.profiles:
            profiles = profiles.copy()
            profiles.load_dir(args.profiles)
        plan = plan_collection(config.gateways, config.sites, profiles, only_site=args.site)
    except (ModbusConfigError, ProfileError) as err:
        print(f"{args.config}: {err}", file=sys.stderr)
        return 2
    if plan.meter_count == 0:
        print(f"{args.config}: no Modbus meters to poll", file=sys.stderr)
        return 2
    rounds = 1 if args.once else (args.count or None)
    return asyncio.run(_poll(plan, rounds, args.format))


async def _poll(plan: CollectionPlan, rounds: int | None, fmt: str) -> int:
    from collector.modbus import ModbusCollector  # pymodbus: only for this command

    collector = ModbusCollector(plan, on_readings=lambda readings: None)
    units = {m.profile.name: {k: v.unit for k, v in m.profile.values.items()}
             for g in plan.gateways for m in g.meters}
    interval = min(g.gateway.interval.total_seconds() for g in plan.gateways)
    failed = False
    done = 0
    loop = asyncio.get_running_loop()
    try:
        while rounds is None or done < rounds:
            started = loop.time()
            polls = await collector.poll_once()
            failed = any(not p.ok for p in polls)
            for poll in polls:
                if fmt == "json":
                    print(json.dumps(poll.as_dict(), ensure_ascii=False), flush=True)
                else:
                    format_table(poll, units[poll.profile], sys.stdout)
            if fmt == "table":
                bad = sum(1 for p in polls if not p.ok)
                print(f"-- {len(polls)} meter(s), {bad} failed", flush=True)
            done += 1
            if rounds is None or done < rounds:
                await asyncio.sleep(max(0.0, interval - (loop.time() - started)))
    finally:
        collector.close()
    return 1 if failed else 0
