"""Subcommands of `gshp`. Each module exposes `register(subparsers)` and sets `func` on its parser."""

from gshp.commands import check_config, poll, sim

COMMANDS = [check_config, poll, sim]

__all__ = ["COMMANDS"]
