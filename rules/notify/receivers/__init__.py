"""Receivers by explicit registration: `RECEIVERS[type]` is the class that sends to that kind of peer."""

from __future__ import annotations

from rules.notify.receivers.base import RECEIVERS, Delivery, Receiver, register
from rules.notify.receivers.dingtalk import DingTalkReceiver
from rules.notify.receivers.email import EmailReceiver
from rules.notify.receivers.mqtt import MqttReceiver
from rules.notify.receivers.webhook import WebhookReceiver
from rules.notify.receivers.wecom import WeComReceiver

__all__ = [
           "RECEIVERS",
           "Delivery",
           "DingTalkReceiver",
           "EmailReceiver",
           "MqttReceiver",
           "Receiver",
           "WeComReceiver",
           "WebhookReceiver",
           "register",
]
