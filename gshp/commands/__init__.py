"""Subcommands of `gshp`. Each module exposes `register(subparsers)` and sets `func` on its parser."""

from gshp.commands import check_config, demo, notify, run

COMMANDS = [check_config, run, demo, notify]

__all__ = ["COMMANDS"]
