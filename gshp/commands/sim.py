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
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from collector.modbus import PROFILES, ProfileError, Transport
from gshp.commands.configfile import SITES, load_config_or_exit
from simulators.flow import DTU_SCENARIOS, Scenario, local_hour
from simulators.modbus import ModelClock, PtyPair, image_size, parse_units, range_units, site_units

if TYPE_CHECKING:
    from gshp.config import Config
    from simulators.modbus import ModbusSimServer

__all__ = ["register", "register_hj212", "register_modbus", "register_mqtt", "register_scenarios", "register_site",
           "register_szy206"]


USES = SITES
"""The config sections `gshp sim site` reads; `sim mqtt`, `sim hj212` and `sim szy206` read the section of
their broker or listener besides."""


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "sim", help="run flowmeter simulators", description="Run flowmeter simulators.")
    simsub = p.add_subparsers(dest="sim_command", metavar="SIMULATOR", required=True)
    register_modbus(simsub)
    register_site(simsub)
    register_mqtt(simsub)
    register_hj212(simsub)
    register_szy206(simsub)
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
    p.add_argument("--framer", choices=[t.value for t in Transport],
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
    from simulators.modbus import Framer, ModbusSimServer  # pymodbus: only when serving

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
    from simulators.modbus import Framer, ModbusSimServer  # pymodbus: only when serving

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
            servers.append(ModbusSimServer(meters, size=size, framer=Framer(gw.transport.value), host=gw.host,
                                           port=gw.port))
            lines.append(f"gateway {gid}: units {units} on {gw.host}:{gw.port} ({gw.transport.value})")
    if not servers:
        print(f"gshp sim site: site {site.id} has no Modbus meters", file=sys.stderr)
        return 2
    lines.append(f"site {site.id}: scenario {args.scenario}, speed {args.speed:g}x")
    return _run_servers(servers, ptys, args.duration, lines)


def write_scenario(name: str, out: Path) -> Path:
    from simulators.scenarios import SCENARIOS, build  # pandas and numpy: imported by this command only

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
    from simulators.scenarios import SCENARIOS

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

    config = load_config_or_exit(args.config, USES | {"mqtt"})
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


def _outage(text: str) -> tuple[timedelta, timedelta]:
    start, sep, length = text.partition(":")
    try:
        a, b = float(start), float(length)
    except ValueError:
        a = b = -1.0
    if not sep or a < 0 or b <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: write START:MINUTES in data minutes, e.g. 10:30")
    return timedelta(minutes=a), timedelta(minutes=b)


def _fraction(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not 0 <= v <= 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a fraction from 0 to 1, e.g. 0.05")
    return v


def _uplink_args(p: argparse.ArgumentParser, what: str, interval: str) -> None:
    p.add_argument("--config", required=True, help="the YAML configuration file")
    p.add_argument("--sites", nargs="+", metavar="SITE", help="only these site ids (default: all)")
    p.add_argument("--scenario", type=_dtu_scenario, default=Scenario(),
                   help=f"one of {Scenario.names(DTU_SCENARIOS)} (default balanced)")
    p.add_argument("--flow", type=float, default=40.0, help="nominal flow per extraction meter, m3/h")
    p.add_argument("--speed", type=float, default=60.0, help="simulated seconds per real second (default 60)")
    p.add_argument("--hours", type=float, default=1.0, help="simulated span ending now (default 1)")
    p.add_argument("--interval", type=float, default=None, help=f"seconds between uploads (default {interval})")
    p.add_argument("--host", default=None, help=f"the collector's host (default: from `{what}: listen`)")
    p.add_argument("--port", type=int, default=None, help=f"the collector's port (default: from `{what}: listen`)")
    p.add_argument("--window", type=int, default=1, help="frames in flight per logger (default 1)")
    p.add_argument("--answer-timeout", type=float, default=2.0,
                   help="seconds to wait for an answer before sending a frame again (default 2)")
    p.add_argument("--bad-crc", type=_fraction, default=0.0, metavar="FRACTION",
                   help="send this fraction of frames with a broken CRC (sent once, not waited for)")
    p.add_argument("--outage", type=_outage, metavar="START:MINUTES",
                   help="no connection from START for MINUTES (data minutes): frames are buffered, uploaded after")


def register_hj212(group: Any) -> None:
    p: argparse.ArgumentParser = group.add_parser(
        "hj212", help="upload like the config's HJ 212 data loggers",
        description="Upload the config's HJ 212 meters as their data loggers would (real-time data with "
                    "rate and totalizer; minute data with the interval volume for `volume:` meters) from the "
                    "site physics every simulator shares, waiting for each data answer and sending again what "
                    "is not answered. Simulated time runs over the last --hours up to now, --speed times "
                    "faster than real time.")
    _uplink_args(p, "hj212", "hj212.minute_interval, which a `volume:` meter's uploads must span")
    p.add_argument("--wrong-password", action="store_true", help="upload with a wrong password (PW)")
    p.set_defaults(func=run_hj212)


def register_szy206(group: Any) -> None:
    p: argparse.ArgumentParser = group.add_parser(
        "szy206", help="report like the config's SZY 206 terminals",
        description="Report the config's SZY 206 meters as their terminals would (self-reported real-time "
                    "data, AFN C0H, flow points of instantaneous flow and cumulative volume) from the site "
                    "physics every simulator shares, waiting for each confirmation and sending again what is "
                    "not confirmed. Simulated time runs over the last --hours up to now, --speed times faster "
                    "than real time.")
    _uplink_args(p, "szy206", "60")
    p.set_defaults(func=run_szy206)


def _run_uplinks(args: argparse.Namespace, config: Config, name: str, listen: str,
                 build: Any, answers: Any) -> int:
    from simulators.city import site_physics
    from simulators.datalogger import DataLogger, UplinkPlan, run_uplinks

    sites = [s for s in config.sites if not args.sites or s.id in args.sites]
    unknown = set(args.sites or ()) - {s.id for s in sites}
    if unknown:
        print(f"unknown site ids: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    host, _, port = listen.rpartition(":")
    host = args.host or (host.strip("[]") if host not in ("0.0.0.0", "::", "[::]", "") else "127.0.0.1")
    end = datetime.now(UTC).replace(microsecond=0)
    plan = UplinkPlan(start=end - timedelta(hours=args.hours), end=end, interval=timedelta(seconds=args.interval or 60),
                      speed=args.speed, outage=args.outage)
    physics = site_physics(sites, args.scenario, plan.start, config.tz, flow_m3h=args.flow)
    encoders = build(config, sites)
    if not encoders:
        print(f"{args.config}: no {name} meters in the chosen sites", file=sys.stderr)
        return 2
    stations = [(e, DataLogger(host, args.port or int(port), answers, window=args.window,
                               answer_timeout=args.answer_timeout)) for e in encoders]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"{name}: {len(stations)} loggers to {host}:{args.port or port}, scenario {args.scenario}, "
          f"speed {args.speed:g}x", flush=True)
    try:
        left = run_uplinks(plan, lambda t: physics.readings(t, source=name), stations, stop)
    except KeyboardInterrupt:
        left = sum(lg.pending for _, lg in stations)
    sent = sum(lg.sent for _, lg in stations)
    print(f"{name}: sent {sent} frames ({sum(lg.resent for _, lg in stations)} again), "
          f"{sum(lg.answered for _, lg in stations)} answered, {left} unanswered, "
          f"{sum(lg.dropped for _, lg in stations)} dropped from full buffers")
    return 0 if left == 0 else 1


def run_hj212(args: argparse.Namespace) -> int:
    from simulators.hj212 import Hj212Faults, hj212_answers, hj212_stations

    def build(config: Any, sites: Any) -> Any:
        passwords = config.hj212.passwords() if config.hj212 is not None else {}
        minute = config.hj212.minute_interval if config.hj212 is not None else timedelta(minutes=1)
        faults = Hj212Faults(bad_crc=args.bad_crc, wrong_password=args.wrong_password)
        return hj212_stations(sites, passwords, config.tz, minute, faults)

    config = load_config_or_exit(args.config, USES | {"hj212"})
    if config.hj212 is None:
        print(f"{args.config}: has no `hj212:` section", file=sys.stderr)
        return 2
    minute = config.hj212.minute_interval.total_seconds()
    args.interval = args.interval or minute
    if args.interval != minute and any(m.hj212 and m.hj212.volume for s in config.sites for m in s.meters):
        print(f"--interval {args.interval:g}s: minute data must span hj212.minute_interval ({minute:g}s)",
              file=sys.stderr)
        return 2
    return _run_uplinks(args, config, "hj212", config.hj212.listen, build, hj212_answers)


def run_szy206(args: argparse.Namespace) -> int:
    from simulators.szy206 import szy206_answers, szy206_terminals

    def build(config: Any, sites: Any) -> Any:
        unit = config.szy206.flow_unit
        return szy206_terminals(sites, config.tz, unit, bad_crc=args.bad_crc)

    config = load_config_or_exit(args.config, USES | {"szy206"})
    if config.szy206 is None:
        print(f"{args.config}: has no `szy206:` section", file=sys.stderr)
        return 2
    return _run_uplinks(args, config, "szy206", config.szy206.listen, build, szy206_answers)
