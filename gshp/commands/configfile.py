"""Loading the config file for a command: every problem on stderr and exit status 2 when it is unusable."""

from __future__ import annotations

import sys
from os import PathLike

from gshp.config import Config, ConfigError, load_config

__all__ = ["load_config_or_exit", "print_problems"]


def print_problems(err: ConfigError) -> int:
    """Every problem on stderr; the exit status of a command that cannot use its config (2)."""
    for problem in err.problems:
        print(problem, file=sys.stderr)
    return 2


def load_config_or_exit(path: str | PathLike[str]) -> Config:
    try:
        return load_config(path)
    except ConfigError as err:
        raise SystemExit(print_problems(err)) from None
