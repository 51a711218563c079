"""`type: mqtt` — publish each event at QoS 1, and each site's current alerts as a retained message.

Topics are templates over the event (``gshp/alerts/{district}/{site}``); MQTT-special characters in the
values (``/ + #``) become ``_``. A send returns when the broker acknowledged (PUBACK) both messages.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from alerting.model import IncidentNotice
from rules.notify.errors import PermanentDeliveryError, RetryableDeliveryError
from rules.notify.receivers.base import Delivery, Receiver, register
from rules.notify.settings import MqttReceiverSettings
from rules.notify.templates import Renderer

__all__ = ["MqttReceiver", "topic_for"]

log = logging.getLogger(__name__)


def _safe(value: str) -> str:
    return "".join("_" if c in "/+#\x00" else c for c in value) or "_"


def topic_for(template: str, event: IncidentNotice) -> str:
    """`{rule}` is the incident's first rule; `{state}` open or resolved; `{change}` what happened."""
    return template.format(district=_safe(event.district), site=_safe(event.site),
                           rule=_safe(event.label("rule") or ""), kind=event.kind.value,
                           severity=event.severity.value, state=event.state.value, change=event.change.value)


@register
class MqttReceiver(Receiver[MqttReceiverSettings]):
    type = "mqtt"

    def __init__(self, settings: MqttReceiverSettings, renderer: Renderer) -> None:
        super().__init__(settings, renderer)
        self._client: mqtt.Client | None = None
        self._connected = threading.Event()
        self._lock = threading.Lock()
        self._refused: str | None = None

    def target(self) -> str:
        s = self.settings
        user = f"{s.username}@" if s.username else ""
        return f"mqtt{'s' if s.tls else ''}://{user}{s.host}:{s.port} {s.topic}"

    # -- connection ----------------------------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self._refused = str(reason)
            return
        self._refused = None
        self._connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._connected.clear()

    def _connect(self, timeout: float) -> mqtt.Client:
        if self._client is not None and self._connected.is_set():
            return self._client
        if self._client is not None and self._connected.wait(timeout):  # the loop reconnects by itself
            return self._client
        self._drop()
        s = self.settings
        v5 = s.protocol.value == "5"
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=s.client_id,
                             protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311, clean_session=None if v5 else True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.reconnect_delay_set(1, 30)
        client.connect_timeout = timeout
        if s.username is not None:
            client.username_pw_set(s.username, s.password.get_secret_value() if s.password else None)
        if s.tls is not None:
            client.tls_set(ca_certs=str(s.tls.ca) if s.tls.ca else None,
                           certfile=str(s.tls.cert) if s.tls.cert else None,
                           keyfile=str(s.tls.key) if s.tls.key else None)
            client.tls_insecure_set(s.tls.insecure)
        try:
            client.connect(s.host, s.port, keepalive=int(s.keepalive.total_seconds()))
        except OSError as exc:
            raise RetryableDeliveryError(f"{self.target()}: cannot connect: {exc}") from None
        client.loop_start()
        self._client = client
        if not self._connected.wait(timeout):
            refused = self._refused
            self._drop()
            if refused:
                raise PermanentDeliveryError(f"{self.target()}: broker refused the connection: {refused}")
            raise RetryableDeliveryError(f"{self.target()}: no CONNACK within {timeout:g}s")
        return client

    def _drop(self) -> None:
        client, self._client = self._client, None
        self._connected.clear()
        if client is not None:
            client.disconnect()
            client.loop_stop()

    # -- sending -------------------------------------------------------------------------------------

    def _publish(self, client: mqtt.Client, topic: str, payload: bytes, retain: bool, timeout: float) -> None:
        try:
            info = client.publish(topic, payload, qos=1, retain=retain)
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError) as exc:
            raise RetryableDeliveryError(f"{self.target()}: publish to {topic} failed: {exc}") from None
        if not info.is_published():
            raise RetryableDeliveryError(f"{self.target()}: no PUBACK for {topic} within {timeout:g}s")

    def send(self, delivery: Delivery) -> None:
        s = self.settings
        timeout = s.timeout.total_seconds()
        with self._lock:
            client = self._connect(timeout)
            for event in delivery.events:
                data = event.to_dict()
                data["idempotency_key"] = delivery.key
                if delivery.repeat:
                    data["repeat"] = delivery.repeat
                self._publish(client, topic_for(s.topic, event),
                              json.dumps(data, ensure_ascii=False).encode("utf-8"), False, timeout)
            if s.state_topic is not None and delivery.site_state is not None and delivery.events:
                self._publish(client, topic_for(s.state_topic, delivery.events[-1]),
                              json.dumps(delivery.site_state, ensure_ascii=False).encode("utf-8"), True, timeout)

    def close(self) -> None:
        with self._lock:
            self._drop()
