"""Subcommands of `gshp`. Each module exposes `register(subparsers)` and sets `func` on its parser."""

from gshp.commands import check_config, replay, sim

COMMANDS = [check_config, replay, sim]

__all__ = ["COMMANDS"]
