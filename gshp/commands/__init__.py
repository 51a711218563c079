"""Subcommands of `gshp`. Each module exposes `register(subparsers)` and sets `func` on its parser."""

from gshp.commands import (
    audit,
    backtest,
    backup,
    check_config,
    deadletter,
    demo,
    evidence,
    notify,
    poll,
    replay,
    report,
    run,
    sim,
)

COMMANDS = [check_config, run, poll, replay, backtest, report, sim, notify, deadletter, audit, demo, backup, evidence]

__all__ = ["COMMANDS"]
