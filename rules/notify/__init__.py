"""Notifications to enforcement: receivers (webhook, email, DingTalk, WeCom, MQTT), routing, grouping,
silences, a durable queue and templates. The service builds one `Notifier` and submits every incident
notice (`alerting.model.IncidentNotice`: opened, escalated, resolved, case closed) with
`Notifier.submit(notice)`. The package depends on `alerting` and `collector` only."""

from rules.notify.errors import (
    DeliveryError,
    NotifyError,
    PermanentDeliveryError,
    RetryableDeliveryError,
)
from rules.notify.event import IncidentNotice, parse_event, sample_event
from rules.notify.notifier import Notifier
from rules.notify.queue import MessageStatus, NotifyQueue, QueueFull
from rules.notify.receivers import RECEIVERS
from rules.notify.settings import ReceiverSettings
from rules.notify.silences import Matcher, Silence

__all__ = [
    "RECEIVERS",
    "DeliveryError",
    "IncidentNotice",
    "Matcher",
    "MessageStatus",
    "Notifier",
    "NotifyError",
    "NotifyQueue",
    "PermanentDeliveryError",
    "QueueFull",
    "ReceiverSettings",
    "RetryableDeliveryError",
    "Silence",
    "parse_event",
    "sample_event",
]
