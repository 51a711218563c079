"""The notifier's Prometheus metrics (served on the service's ``/metrics`` with the others)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

__all__ = ["DEAD", "EVENTS", "FAILURES", "REFUSED", "SENT", "SILENCED", "UNSENT"]

EVENTS = Counter("gshp_notify_events_total", "Alert transitions recorded for a receiver", ["receiver"])
SENT = Counter("gshp_notify_sent_total", "Notifications a receiver acknowledged", ["receiver"])
FAILURES = Counter("gshp_notify_failures_total", "Failed delivery attempts (retried or dead-lettered)",
                   ["receiver"])
DEAD = Counter("gshp_notify_dead_total", "Notifications dead-lettered (retry budget spent or refused)",
               ["receiver"])
SILENCED = Counter("gshp_notify_silenced_total", "Alert transitions not sent because a silence matched",
                   ["receiver"])
REFUSED = Counter("gshp_notify_refused_total", "Alert events refused because the notification queue was full")
UNSENT = Gauge("gshp_notify_unsent", "Notifications waiting (queued or retrying) per receiver", ["receiver"])
