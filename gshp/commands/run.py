"""`gshp run --config FILE`: the service — collectors, outbox, InfluxDB, rules and the HTTP API."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

from gshp.config import ConfigError, load_config
from gshp.service import Service
from gshp.sources import SourceConfigError, build_sources


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "run", help="run the monitoring service",
        description="Run the service for the sites in the config: collect readings (Modbus, MQTT), commit "
                    "them to the durable outbox, write them to InfluxDB, evaluate the rules and serve the "
                    "HTTP API. Stops cleanly on Ctrl-C / SIGTERM.")
    p.add_argument("--config", required=True, help="the YAML configuration file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        return 2
    logging.getLogger().setLevel(config.log_level)
    try:
        sources = build_sources(config)
    except SourceConfigError as err:
        for text in err.problems:
            print(f"{args.config}: {text}", file=sys.stderr)
        return 2
    service = Service(config, sources)
    asyncio.run(service.serve())
    return 0
