"""Notifications to enforcement: receivers (webhook, email, DingTalk, WeCom, MQTT), routing, grouping,
silences, a durable queue and templates. The service builds one `Notifier` and the rule engine calls
`Notifier.submit(event)` for every alert transition."""

from rules.notify.errors import (
    DeliveryError,
    NotifyError,
    PermanentDeliveryError,
    RetryableDeliveryError,
)
from rules.notify.event import AlertEvent, AlertState, Kind, Severity, parse_event, sample_event
from rules.notify.notifier import Notifier
from rules.notify.queue import MessageStatus, NotifyQueue, QueueFull
from rules.notify.receivers import RECEIVERS
from rules.notify.settings import ReceiverSettings
from rules.notify.silences import Matcher, Silence

__all__ = [
    "RECEIVERS",
    "AlertEvent",
    "AlertState",
    "DeliveryError",
    "Kind",
    "Matcher",
    "MessageStatus",
    "Notifier",
    "NotifyError",
    "NotifyQueue",
    "PermanentDeliveryError",
    "QueueFull",
    "ReceiverSettings",
    "RetryableDeliveryError",
    "Severity",
    "Silence",
    "parse_event",
    "sample_event",
]
