"""`gshp sim …`: simulators for commissioning and load tests. One `register_X(sub)` per simulator."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from gshp.config import ConfigError, load_config

log = logging.getLogger("gshp.sim")


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "sim", help="simulate meters and DTUs", description="Simulators that behave like the real devices.")
    group = p.add_subparsers(dest="sim_command", metavar="SIMULATOR", required=True)
    register_mqtt(group)


def register_mqtt(group: Any) -> None:
    from simulators.mqtt.flow import SCENARIOS

    p: argparse.ArgumentParser = group.add_parser(
        "mqtt", help="publish like the config's MQTT DTUs",
        description="Publish readings for the config's MQTT meters to its broker, encoded with each "
                    "meter's payload profile, from a site flow model. Simulated time runs over the last "
                    "--hours up to now (device times are never in the future), --speed times faster than "
                    "real time; stops at the end, after --count readings, or on Ctrl-C.")
    p.add_argument("--config", required=True, help="the YAML configuration file")
    p.add_argument("--sites", nargs="+", metavar="SITE", help="only these site ids (default: all)")
    p.add_argument("--scenario", choices=sorted(SCENARIOS), default="balanced")
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
    from simulators.mqtt.flow import SCENARIOS, FlowModel
    from simulators.mqtt.publisher import DtuSimulator, SimPlan

    try:
        config = load_config(args.config)
    except ConfigError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        return 2
    if config.mqtt is None:
        print(f"{args.config}: has no `mqtt:` section", file=sys.stderr)
        return 2
    sites = [s for s in config.sites if not args.sites or s.id in args.sites]
    unknown = set(args.sites or ()) - {s.id for s in sites}
    if unknown:
        print(f"unknown site ids: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    try:
        router = plan_routes(sites, load_profiles(config.mqtt.profiles_dir), REGISTER_CODEC)
        model = FlowModel(sites, SCENARIOS[args.scenario], config.tz)
        sim = DtuSimulator(config.mqtt, router, model, config.tz, REGISTER_CODEC)
    except (PlanError, ProfileError, ValueError) as err:
        print(f"{args.config}: {err}", file=sys.stderr)
        return 2
    end = datetime.now(UTC).replace(microsecond=0)
    plan = SimPlan(start=end - timedelta(hours=args.hours), end=end,
                   interval=timedelta(seconds=args.interval), speed=args.speed, rate=args.rate,
                   count=args.count)
    signal.signal(signal.SIGTERM, lambda *_: sim.stop())
    try:
        sim.run(plan)
    except KeyboardInterrupt:
        sim.stop()
    print(f"published {sim.readings} readings in {sim.published} messages ({args.scenario})")
    return 0
