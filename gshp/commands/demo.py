"""`gshp demo`: a simulated city end to end on this machine."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "demo", help="run a simulated city end to end on this machine",
        description="Start a private mosquitto and influxd on loopback, simulate a city of 12 sites in 4 "
                    "districts (Modbus TCP meters and MQTT DTUs; one site drains 35 %, one drains at night, "
                    "one reinjection meter goes silent), run the service on it with its board, and print each "
                    "alert as a webhook receives it. Ctrl-C stops everything.")
    p.add_argument("--speed", type=float, default=60.0, help="simulated seconds per wall second (default 60)")
    p.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT of the board and API")
    p.add_argument("--dir", type=Path, default=Path("var/demo"), help="where the demo keeps its data")
    p.add_argument("--hours", type=float, help="stop after this many hours of data time (default: run until "
                                               "Ctrl-C)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gshp.demo import run_demo

    return run_demo(args.dir.resolve(), args.speed, args.listen, args.hours)
