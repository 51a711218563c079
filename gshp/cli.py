"""The `gshp` command line: one subcommand per module in `gshp.commands`."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from collector.redact import install_log_redaction
from gshp import __version__
from gshp.commands import COMMANDS

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gshp",
        description="gshp-monitor: watches open-loop ground-source heat-pump sites for groundwater "
                    "discharge.",
    )
    parser.add_argument("--version", action="version", version=f"gshp-monitor {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(encoding="utf-8", errors="replace")
    parser = build_parser()
    args = parser.parse_args(argv)
    install_log_redaction()  # before anything logs: no handler may print a secret
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # the scheduler logs every job run at INFO: far too chatty for an interval of seconds
    logging.getLogger("apscheduler").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    # pymodbus logs every failed transaction with its raw frames; the poller reports failures itself
    logging.getLogger("pymodbus").setLevel(logging.DEBUG if args.verbose else logging.CRITICAL)
    try:
        return int(args.func(args) or 0)
    except SystemExit as exc:  # a command gave up with a status (e.g. an unusable config file)
        return exc.code if isinstance(exc.code, int) else 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
