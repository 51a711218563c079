"""Subcommands of `gshp`. Each module exposes `register(subparsers)` and sets `func` on its parser."""

from gshp.commands import check_config, deadletter, run, sim

COMMANDS = [check_config, run, sim, deadletter]

__all__ = ["COMMANDS"]
