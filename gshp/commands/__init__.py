"""Subcommands of `gshp`. Each module exposes `register(subparsers)` and sets `func` on its parser."""

from gshp.commands import check_config, demo, run

COMMANDS = [check_config, run, demo]

__all__ = ["COMMANDS"]
