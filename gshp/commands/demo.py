"""`gshp demo`: a simulated city end to end on this machine."""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "demo", help="run a simulated city end to end on this machine",
        description="Start a private mosquitto and influxd on loopback (or use those --config names), simulate "
                    "a city of 14 sites in 4 districts (Modbus TCP meters, MQTT DTUs, HJ 212 data loggers and an "
                    "SZY 206 terminal; one site drains 35 %, "
                    "one drains at night, one reinjection meter goes silent), run the service on it with its "
                    "board, and print each alert as a webhook receives it. The start prints a viewer and an "
                    "enforcement token for this run: on loopback reading needs none and acknowledging needs the "
                    "enforcement token; on another address every request needs a token. Ctrl-C stops "
                    "everything.")
    p.add_argument("--speed", type=float, default=60.0, help="simulated seconds per wall second (default 60)")
    p.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT of the board and API")
    p.add_argument("--dir", type=Path, default=Path("var/demo"), help="where the demo keeps its data")
    p.add_argument("--hours", type=float, help="stop after this many hours of data time (default: run until "
                                               "Ctrl-C)")
    p.add_argument("--start", type=_start, metavar="TIME",
                   help="where data time starts: an ISO time (2026-12-01T21:30, in the city's zone Asia/Shanghai "
                        "unless an offset is given); default an hour ago. 21:30 the day before shows the night "
                        "discharge begin at 22:00 and end at 06:00")
    p.add_argument("--config", type=Path, metavar="FILE",
                   help="use the InfluxDB (`influx:`) and MQTT broker (`mqtt:`) this config file names instead of "
                        "starting private ones; the demo starts only what the file does not give. Its simulated "
                        "city writes into that InfluxDB and publishes under gshp-demo/ on that broker")
    p.set_defaults(func=run)


def _start(text: str) -> datetime:
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: write an ISO time, e.g. 2026-12-01T21:30") from None
    return t if t.tzinfo is not None else t.replace(tzinfo=ZoneInfo("Asia/Shanghai"))


def run(args: argparse.Namespace) -> int:
    from gshp.commands.configfile import print_problems
    from gshp.config import ConfigError
    from gshp.demo import external_servers, run_demo

    try:
        external = external_servers(args.config) if args.config is not None else None
        return run_demo(args.dir.resolve(), args.speed, args.listen, args.hours, external, args.start)
    except ConfigError as err:
        return print_problems(err)
