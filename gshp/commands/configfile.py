"""Loading the config file for a command: every problem on stderr and exit status 2 when it is unusable."""

from __future__ import annotations

import sys
from collections.abc import Collection, Sequence
from os import PathLike

from gshp.config import Config, ConfigError, load_config
from gshp.config.loader import Check

__all__ = ["ALWAYS", "SITES", "load_config_or_exit", "print_problems"]


def print_problems(err: ConfigError) -> int:
    """Every problem on stderr; the exit status of a command that cannot use its config (2)."""
    for problem in err.problems:
        print(problem, file=sys.stderr)
    return 2


ALWAYS = frozenset({"timezone", "state_dir", "log_level"})
SITES = ALWAYS | {"sites", "gateways"}
"""The sections a command reading the sites uses: the sites, and the gateways their Modbus meters name (which
poll them, how often). A broker or listener section (`mqtt:`, `hj212:`, `szy206:`) is read only by the
commands that talk to it."""


def load_config_or_exit(path: str | PathLike[str], uses: Collection[str] | None = None,
                        checks: Sequence[Check] = ()) -> Config:
    """The config, or every problem on stderr and exit 2. A command that reads only some sections names
    them in `uses` (problems elsewhere are not its concern); None: every section. `checks` run over the
    whole config too (the collector's planning, for a command that collects)."""
    try:
        return load_config(path, uses=uses, checks=checks)
    except ConfigError as err:
        raise SystemExit(print_problems(err)) from None
