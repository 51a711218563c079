"""Loading the config file for a command: every problem on stderr and exit status 2 when it is unusable."""

from __future__ import annotations

import sys
from os import PathLike

from gshp.config import Config, ConfigError, load_config

__all__ = ["load_config_or_exit"]


def load_config_or_exit(path: str | PathLike[str]) -> Config:
    try:
        return load_config(path)
    except ConfigError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        raise SystemExit(2) from None
