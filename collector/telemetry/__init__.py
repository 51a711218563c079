"""TCP servers for the national telemetry protocols (HJ 212-2017, SZY 206-2016): one shared server that
frames, decodes, commits and only then answers; each protocol brings its framer and decoder."""

from collector.telemetry.server import Decoded, Framing, Protocol, TelemetryServer
from collector.telemetry.settings import ListenerSettings

__all__ = ["Decoded", "Framing", "ListenerSettings", "Protocol", "TelemetryServer"]
