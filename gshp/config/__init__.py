"""Loading and validating the configuration file."""

from gshp.config.errors import ConfigError, Problem
from gshp.config.loader import load_config, parse_config
from gshp.config.schema import ApiSettings, Config, OutboxSettings

__all__ = ["ApiSettings", "Config", "ConfigError", "OutboxSettings", "Problem", "load_config", "parse_config"]
