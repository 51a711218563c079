"""The service's own metrics, exported on ``/metrics`` in the Prometheus text format."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

__all__ = [
    "INGEST_REJECTED",
    "OUTBOX_DEPTH",
    "OUTBOX_OLDEST_AGE",
    "OUTBOX_REFUSED",
    "POINTS_DROPPED",
    "POINTS_WRITTEN",
    "READINGS_ACCEPTED",
    "WRITE_ERRORS",
]

OUTBOX_DEPTH = Gauge("gshp_outbox_depth",
                     "Lines committed to the outbox and not yet acknowledged by InfluxDB")
OUTBOX_OLDEST_AGE = Gauge("gshp_outbox_oldest_age_seconds", "Age of the oldest unsent line in the outbox")
OUTBOX_FILL = Gauge("gshp_outbox_fill_ratio", "Outbox depth as a fraction of its configured bound")
OUTBOX_REFUSED = Counter("gshp_outbox_refused_total", "Lines refused because the outbox was at its bound")
READINGS_ACCEPTED = Counter("gshp_readings_accepted_total", "Readings committed to the outbox", ["source"])
POINTS_WRITTEN = Counter("gshp_points_written_total", "Lines acknowledged by InfluxDB")
WRITE_ERRORS = Counter("gshp_write_errors_total", "Failed InfluxDB write requests", ["error_class"])
POINTS_DROPPED = Counter(
    "gshp_points_dropped_total", "Single lines InfluxDB rejected as invalid (dropped, logged)", ["reason"]
)
INGEST_REJECTED = Counter(
    "gshp_ingest_rejected_total", "Inputs rejected before the outbox (bad payload, Modbus error…)",
    ["source", "reason"],
)
