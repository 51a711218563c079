"""Subcommands of `gshp`. Each module exposes `register(subparsers)` and sets `func` on its parser."""

from gshp.commands import check_config

COMMANDS = [check_config]

__all__ = ["COMMANDS"]
