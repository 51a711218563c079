"""`gshp sim …`: simulators for commissioning and tests. Each sub-subcommand is one `register_X(sub)`.

`gshp sim scenarios --out DIR` writes every named scenario as `DIR/<name>/config.yaml`, `readings.csv`
and `truth.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from collector.modbus import PROFILES, ProfileError, Transport
from gshp.commands.configfile import SITES, load_config_or_exit
from simulators.flow import DTU_SCENARIOS, Scenario, local_hour
from simulators.modbus import (
    Framer,
    ModbusSimServer,
    ModelClock,
    PtyPair,
    image_size,
    parse_units,
    range_units,
    site_units,
)
from simulators.scenarios import SCENARIOS, build

__all__ = ["register", "register_modbus", "register_mqtt", "register_scenarios", "register_site"]


USES = SITES
"""The config sections this command reads."""


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "sim", help="run flowmeter simulators", description="Run flowmeter simulators.")
    simsub = p.add_subparsers(dest="sim_command", metavar="SIMULATOR", required=True)
    register_modbus(simsub)
    register_site(simsub)
    register_mqtt(simsub)
    register_scenarios(simsub)


def _scenario(text: str) -> Scenario:
    try:
        return Scenario.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _dtu_scenario(text: str) -> Scenario:
    sc = _scenario(text)
    if sc.kind not in DTU_SCENARIOS:
        raise argparse.ArgumentTypeError(f"scenario {sc.kind.value} is a Modbus answer, not something a DTU "
                                         f"publishes; choose one of {Scenario.names(DTU_SCENARIOS)}")
    return sc


_SCENARIO_HELP = ("balanced, discharge:<pct>, night-discharge:<pct> (22:00-06:00), offline, exception, "
                  "slow:<ms>, frozen, reset[:<min>] (every <min> minutes, default 60), reverse, "
                  "swap[:<min>] (meter replaced after <min> minutes), rescale[:<min>] (multiplier x10)")


def _unit_scenario(text: str) -> tuple[int, Scenario]:
    unit, sep, name = text.partition("=")
    if not sep or not unit.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: write UNIT=SCENARIO, e.g. 3=offline")
    return int(unit), _scenario(name)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--speed", type=float, default=1.0, help="model time runs this many times faster")
    p.add_argument("--duration", type=float, default=0.0,
                   help="stop after this many seconds (default: run until interrupted)")


def register_modbus(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "modbus", help="serve simulated meters of one register profile",
        description="Serve simulated flowmeters whose registers are encoded from a register profile. "
                    "Odd units are extraction meters; each even unit is the reinjection meter of the "
                    "odd unit before it (so discharge:<pct> shows as an imbalance between the pair).")
    p.add_argument("--profile", default="tuf2000m", help="register profile (default tuf2000m)")
    p.add_argument("--profiles", metavar="DIR", help="a directory of extra register profiles (*.yaml)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5020)
    p.add_argument("--units", default="1", help="unit ids, e.g. 1-16 or 1,3,5-8 (default 1)")
    p.add_argument("--framer", choices=[Framer.TCP.value, Framer.RTU_OVER_TCP.value, "serial"],
                   default="tcp", help="tcp, rtu-over-tcp, or serial (RTU on a new pseudo-terminal pair)")
    p.add_argument("--scenario", type=_scenario, default=Scenario(), help=_SCENARIO_HELP)
    p.add_argument("--unit-scenario", type=_unit_scenario, action="append", default=[],
                   metavar="UNIT=SCENARIO", help="a scenario for one unit (repeatable)")
    p.add_argument("--flow", type=float, default=40.0, help="nominal extraction flow per meter, m3/h")
    _common(p)
    p.set_defaults(func=run_modbus)


def register_site(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "site", help="serve every Modbus meter of a configured site",
        description="Serve a site's Modbus meters on its gateways' hosts and ports, with the site physics "
                    "`gshp sim mqtt` publishes from: reinjection = extraction × (1 − discharge) on the local "
                    "day's load cycle. Meter-fault scenarios apply to the reinjection meters. Serial "
                    "gateways get a pseudo-terminal whose path is printed.")
    p.add_argument("--config", required=True)
    p.add_argument("--site", required=True)
    p.add_argument("--scenario", type=_scenario, default=Scenario(), help=_SCENARIO_HELP)
    p.add_argument("--flow", type=float, default=40.0, help="nominal flow per extraction meter, m3/h")
    _common(p)
    p.set_defaults(func=run_site)


def _quiet(args: argparse.Namespace) -> None:
    if not args.verbose:
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


async def _serve(servers: list[ModbusSimServer], ptys: list[PtyPair], duration: float,
                 lines: list[str]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    for pty in ptys:
        pty.start()
    started: list[ModbusSimServer] = []
    try:
        for s in servers:
            await s.start()
            started.append(s)
        for line in lines:
            print(line.format(*(s.port for s in servers)), flush=True)
        if duration > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), duration)
        else:
            await stop.wait()
    finally:
        for s in started:
            await s.stop()
        for pty in ptys:
            pty.close()


def run_modbus(args: argparse.Namespace) -> int:
    _quiet(args)
    try:
        profiles = PROFILES
        if args.profiles:
            profiles = PROFILES.copy()
            profiles.load_dir(args.profiles)
        profile = profiles.get(args.profile)
        units = parse_units(args.units)
    except (ProfileError, ValueError) as exc:
        print(f"gshp sim modbus: {exc}", file=sys.stderr)
        return 2
    start = datetime.now(UTC)
    clock = ModelClock(args.speed)
    try:
        meters = range_units(profile, units, args.scenario, clock, nominal_m3h=args.flow,
                             per_unit=dict(args.unit_scenario),
                             start_hour=local_hour(start, start.astimezone().tzinfo or UTC))
    except ValueError as exc:
        print(f"gshp sim modbus: {exc}", file=sys.stderr)
        return 2
    ptys: list[PtyPair] = []
    if args.framer == "serial":
        pty = PtyPair()
        ptys.append(pty)
        server = ModbusSimServer(meters, size=image_size(profile), framer=Framer.RTU, device=pty.server_path)
        where = f"serial RTU; connect the collector to {pty.client_path}"
    else:
        server = ModbusSimServer(meters, size=image_size(profile), framer=Framer(args.framer),
                                 host=args.host, port=args.port)
        where = f"{args.host}:{{0}} ({args.framer})"
    line = (f"serving {profile.name} units {args.units} on {where}, scenario {args.scenario}, "
            f"speed {args.speed:g}x")
    return _run_servers([server], ptys, args.duration, [line])


def _run_servers(servers: list[ModbusSimServer], ptys: list[PtyPair], duration: float,
                 lines: list[str]) -> int:
    try:
        asyncio.run(_serve(servers, ptys, duration, lines))
    except OSError as exc:
        print(f"gshp sim: {exc}", file=sys.stderr)
        return 1
    return 0


_FRAMERS = {Transport.TCP: Framer.TCP, Transport.RTU_OVER_TCP: Framer.RTU_OVER_TCP}


def run_site(args: argparse.Namespace) -> int:
    _quiet(args)
    config = load_config_or_exit(args.config, USES)
    try:
        site = config.site(args.site)
    except KeyError:
        print(f"gshp sim site: no site {args.site!r} in {args.config}", file=sys.stderr)
        return 2
    gateways = {g.id: g for g in config.gateways}
    start = datetime.now(UTC)
    clock = ModelClock(args.speed)
    try:
        by_gateway = site_units(site, gateways, args.scenario, start, config.tz, clock, nominal_m3h=args.flow)
    except (ProfileError, ValueError) as exc:
        print(f"gshp sim site: {exc}", file=sys.stderr)
        return 2
    servers: list[ModbusSimServer] = []
    ptys: list[PtyPair] = []
    lines: list[str] = []
    for gid, meters in by_gateway.items():
        gw = gateways[gid]
        size = max(image_size(m.profile) for m in meters.values())
        units = ",".join(str(u) for u in sorted(meters))
        if gw.transport is Transport.SERIAL:
            pty = PtyPair()
            ptys.append(pty)
            servers.append(ModbusSimServer(meters, size=size, framer=Framer.RTU, device=pty.server_path,
                                           baudrate=gw.baudrate))
            lines.append(f"gateway {gid}: units {units} on serial RTU; point `device:` at {pty.client_path}")
        else:
            assert gw.host is not None and gw.port is not None
            servers.append(ModbusSimServer(meters, size=size, framer=_FRAMERS[gw.transport], host=gw.host,
                                           port=gw.port))
            lines.append(f"gateway {gid}: units {units} on {gw.host}:{gw.port} ({gw.transport.value})")
    if not servers:
        print(f"gshp sim site: site {site.id} has no Modbus meters", file=sys.stderr)
        return 2
    lines.append(f"site {site.id}: scenario {args.scenario}, speed {args.speed:g}x")
    return _run_servers(servers, ptys, args.duration, lines)


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


def run_scenarios(args: argparse.Namespace) -> int:
    names = args.only or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        print(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}", file=sys.stderr)
        return 2
    for n in names:
        d = write_scenario(n, Path(args.out))
        print(f"wrote {d}", file=sys.stderr)
    return 0


def register_scenarios(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "scenarios", help="write the named scenarios as config + CSV + truth",
        description="Write each named scenario (reproducible by seed) as DIR/<name>/config.yaml, "
                    "readings.csv and truth.json (onset and expected outcome); replay with `gshp replay`.")
    p.add_argument("--out", required=True, help="directory to write into (created if missing)")
    p.add_argument("--only", nargs="*", metavar="NAME", help="only these scenarios")
    p.set_defaults(func=run_scenarios)


def register_mqtt(group: Any) -> None:
    p: argparse.ArgumentParser = group.add_parser(
        "mqtt", help="publish like the config's MQTT DTUs",
        description="Publish readings for the config's MQTT meters to its broker, encoded with each "
                    "meter's payload profile, from the site physics `gshp sim site` serves its Modbus "
                    "meters from (same scenarios; meter faults on the reinjection meters). Simulated time "
                    "runs over the last "
                    "--hours up to now (device times are never in the future), --speed times faster than "
                    "real time; stops at the end, after --count readings, or on Ctrl-C.")
    p.add_argument("--config", required=True, help="the YAML configuration file")
    p.add_argument("--sites", nargs="+", metavar="SITE", help="only these site ids (default: all)")
    p.add_argument("--scenario", type=_dtu_scenario, default=Scenario(),
                   help=f"one of {Scenario.names(DTU_SCENARIOS)} (default balanced)")
    p.add_argument("--flow", type=float, default=40.0, help="nominal flow per extraction meter, m3/h")
    p.add_argument("--speed", type=float, default=60.0, help="simulated seconds per real second (default 60)")
    p.add_argument("--hours", type=float, default=1.0, help="simulated span ending now (default 1)")
    p.add_argument("--interval", type=float, default=10.0, help="seconds between readings (default 10)")
    p.add_argument("--rate", type=float, help="at most this many messages per second")
    p.add_argument("--count", type=int, help="stop after this many readings")
    p.set_defaults(func=run_mqtt)


def run_mqtt(args: argparse.Namespace) -> int:
    from collector.mqtt.errors import PlanError, ProfileError
    from collector.mqtt.profile import load_profiles
    from collector.mqtt.topics import plan_routes
    from gshp.sources import REGISTER_CODEC
    from simulators.city import site_physics
    from simulators.mqtt.publisher import DtuSimulator, SimPlan

    config = load_config_or_exit(args.config, USES)
    if config.mqtt is None:
        print(f"{args.config}: has no `mqtt:` section", file=sys.stderr)
        return 2
    sites = [s for s in config.sites if not args.sites or s.id in args.sites]
    unknown = set(args.sites or ()) - {s.id for s in sites}
    if unknown:
        print(f"unknown site ids: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    end = datetime.now(UTC).replace(microsecond=0)
    plan = SimPlan(start=end - timedelta(hours=args.hours), end=end,
                   interval=timedelta(seconds=args.interval), speed=args.speed, rate=args.rate,
                   count=args.count)
    try:
        router = plan_routes(sites, load_profiles(config.mqtt.profiles_dir), REGISTER_CODEC)
        physics = site_physics(sites, args.scenario, plan.start, config.tz, flow_m3h=args.flow)
        sim = DtuSimulator(config.mqtt, router, physics, config.tz, REGISTER_CODEC)
    except (PlanError, ProfileError, ValueError) as err:
        print(f"{args.config}: {err}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sim.stop())
    try:
        sim.run(plan)
    except KeyboardInterrupt:
        sim.stop()
    print(f"published {sim.readings} readings in {sim.published} messages ({args.scenario})")
    return 0
