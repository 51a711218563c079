"""gshp-monitor: the application shell (config, wiring, API, CLI)."""

__version__ = "0.1.0"
