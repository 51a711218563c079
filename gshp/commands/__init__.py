"""Subcommands of `gshp`. Each module exposes `register(subparsers)` and sets `func` on its parser."""

from gshp.commands import check_config, deadletter, demo, notify, poll, replay, run, sim

COMMANDS = [check_config, run, poll, replay, sim, notify, deadletter, demo]

__all__ = ["COMMANDS"]
