"""The service's own metrics, exported on ``/metrics`` in the Prometheus text format."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "BROKER_DROPPED",
    "BROKER_STORED",
    "DEADLETTERS",
    "DEADLETTERS_EVICTED",
    "FANOUT_CONNECTED",
    "FANOUT_DEPTH",
    "FANOUT_PUBLISHED",
    "FANOUT_REFUSED",
    "FANOUT_RETRIES",
    "INGEST_REJECTED",
    "MODBUS_CYCLE_SECONDS",
    "MODBUS_EVENTS",
    "MODBUS_FAILURES",
    "MODBUS_OFFLINE",
    "MODBUS_OVERRUNS",
    "MODBUS_POLLS",
    "MODBUS_RECONNECTS",
    "MODBUS_SKIPPED",
    "MQTT_ACKED",
    "MQTT_CONNECTED",
    "MQTT_CONNECTS",
    "MQTT_MESSAGES",
    "MQTT_PAUSES",
    "MQTT_PENDING",
    "MQTT_REDELIVERED",
    "MQTT_SUBSCRIBED",
    "OUTBOX_DEPTH",
    "OUTBOX_OLDEST_AGE",
    "OUTBOX_REFUSED",
    "POINTS_DROPPED",
    "POINTS_WRITTEN",
    "READINGS_ACCEPTED",
    "READINGS_CONFLICT",
    "READINGS_DUPLICATE",
    "READINGS_INDEXED",
    "READINGS_INDEX_BYTES",
    "READINGS_TOO_OLD",
    "RULE_READINGS",
    "RULE_SITES",
    "STORE_ERRORS",
    "TELEMETRY_CLOSED",
    "TELEMETRY_CONNECTIONS",
    "TELEMETRY_FRAMES",
    "WRITE_ERRORS",
]

OUTBOX_DEPTH = Gauge("gshp_outbox_depth",
                     "Lines committed to the outbox and not yet acknowledged by InfluxDB")
OUTBOX_OLDEST_AGE = Gauge("gshp_outbox_oldest_age_seconds", "Age of the oldest unsent line in the outbox")
OUTBOX_FILL = Gauge("gshp_outbox_fill_ratio", "Outbox depth as a fraction of its configured bound")
OUTBOX_REFUSED = Counter("gshp_outbox_refused_total", "Lines refused because the outbox was at its bound")
STORE_ERRORS = Counter("gshp_store_errors_total",
                       "Errors of a SQLite store: failed reads and writes, damage found and repaired", ["store"])
READINGS_ACCEPTED = Counter("gshp_readings_accepted_total", "Readings committed to the outbox", ["source"])
READINGS_DUPLICATE = Counter("gshp_readings_duplicate_total",
                             "Readings identical to one stored at the same device time (not written again)",
                             ["source"])
READINGS_CONFLICT = Counter("gshp_readings_conflict_total",
                            "Readings refused: another value is stored at the same device time (dead-lettered)",
                            ["source"])
READINGS_TOO_OLD = Counter("gshp_readings_too_old_total",
                           "Readings refused: older than the checked horizon of their meter (dead-lettered)",
                           ["source"])
READINGS_INDEXED = Gauge("gshp_readings_index_entries", "Device times in the index of stored readings")
READINGS_INDEX_BYTES = Gauge("gshp_readings_index_bytes", "Memory held by the index of stored readings")
POINTS_WRITTEN = Counter("gshp_points_written_total", "Lines acknowledged by InfluxDB")
WRITE_ERRORS = Counter("gshp_write_errors_total", "Failed InfluxDB write requests", ["error_class"])
NOTICES_DROPPED = Counter("gshp_incident_notices_dropped_total",
                          "Incident notices given up after the notifier refused them too long (they stay stored)")
POINTS_DROPPED = Counter(
    "gshp_points_dropped_total", "Single lines InfluxDB rejected as invalid (dropped, logged)", ["reason"]
)
INGEST_REJECTED = Counter(
    "gshp_ingest_rejected_total", "Inputs rejected before the outbox (bad payload, Modbus error…)",
    ["source", "reason"],
)

MODBUS_POLLS = Counter("gshp_modbus_polls_total", "Meter polls that produced a reading", ["gateway"])
MODBUS_FAILURES = Counter(
    "gshp_modbus_failures_total", "Failed meter polls by meter and error class",
    ["site", "meter", "error_class"],
)
MODBUS_OVERRUNS = Counter(
    "gshp_modbus_overruns_total", "Gateway poll cycles that took longer than the interval", ["gateway"]
)
MODBUS_SKIPPED = Counter(
    "gshp_modbus_cycles_skipped_total", "Cycles not started because the previous one still ran", ["gateway"]
)
MODBUS_RECONNECTS = Counter("gshp_modbus_connects_total", "Connection attempts to a gateway",
                            ["gateway", "outcome"])
MODBUS_OFFLINE = Gauge("gshp_modbus_meters_offline", "Meters marked offline", ["gateway"])
MODBUS_CYCLE_SECONDS = Histogram(
    "gshp_modbus_cycle_seconds", "Duration of one gateway poll cycle", ["gateway"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
MODBUS_EVENTS = Counter("gshp_modbus_meter_events_total", "Meter identity changes", ["kind"])
# -- MQTT ingestion ---------------------------------------------------------------------------------------

MQTT_MESSAGES = Counter("gshp_mqtt_messages_total", "MQTT messages received (redeliveries included)")
MQTT_REDELIVERED = Counter("gshp_mqtt_redelivered_total", "MQTT messages received with the DUP flag")
MQTT_ACKED = Counter("gshp_mqtt_acked_total", "MQTT messages acknowledged after their durable commit")
MQTT_PENDING = Gauge("gshp_mqtt_pending", "MQTT messages received and not yet acknowledged")
MQTT_CONNECTED = Gauge("gshp_mqtt_connected", "1 while connected to the broker")
MQTT_SUBSCRIBED = Gauge("gshp_mqtt_subscribed", "1 once the broker acknowledged every subscription")
MQTT_CONNECTS = Counter("gshp_mqtt_connects_total", "Successful MQTT connections (first one included)")
MQTT_PAUSES = Counter("gshp_mqtt_pauses_total",
                      "Times MQTT consumption paused because readings could not be committed")
DEADLETTERS = Counter("gshp_deadletters_total", "Payloads kept in the dead-letter store", ["source"])
BROKER_DROPPED = Counter("gshp_broker_dropped", "Messages the MQTT broker reported dropping ($SYS) since this "
                                                "process started watching: readings lost upstream")
BROKER_STORED = Gauge("gshp_broker_stored_messages", "Messages the MQTT broker holds in its store ($SYS)")
DEADLETTERS_EVICTED = Counter("gshp_deadletters_evicted_total",
                              "Oldest dead letters removed to keep the store within its bound")

# -- telemetry servers (HJ 212, SZY 206) -----------------------------------------------------------------

TELEMETRY_FRAMES = Counter("gshp_telemetry_frames_total", "Telemetry frames received, by outcome "
                                                          "(committed, rejected, failed: not committed, not answered)",
                           ["protocol", "outcome"])
TELEMETRY_CONNECTIONS = Gauge("gshp_telemetry_connections", "Open telemetry connections", ["protocol"])
TELEMETRY_CLOSED = Counter("gshp_telemetry_closed_total", "Telemetry connections closed by the server, by reason "
                                                          "(idle, limit, framing, commit_failed)",
                           ["protocol", "reason"])

# -- fan-out to rule workers and the rules of one shard --------------------------------------------------

FANOUT_DEPTH = Gauge("gshp_fanout_depth", "Readings committed for the rule workers and not yet acknowledged "
                                          "by the broker")
FANOUT_PUBLISHED = Counter("gshp_fanout_published_total", "Readings published to the rule workers and "
                                                          "acknowledged by the broker (republished ones included)")
FANOUT_RETRIES = Counter("gshp_fanout_retries_total", "Publish rounds not acknowledged in time, published again")
FANOUT_REFUSED = Counter("gshp_fanout_refused_total", "Readings refused because the fan-out outbox was full")
FANOUT_CONNECTED = Gauge("gshp_fanout_connected", "1 while the fan-out publisher is connected to the broker")
RULE_SITES = Gauge("gshp_rule_sites", "Sites whose rules this process evaluates (its shard)")
RULE_READINGS = Counter("gshp_rule_readings_total", "Readings handed to this process's rule engine")
