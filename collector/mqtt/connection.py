"""Building a paho-mqtt client from `MqttSettings`: protocol, persistent session, TLS, credentials."""

from __future__ import annotations

import ssl
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from collector.mqtt.settings import MqttProtocol, MqttSettings

__all__ = ["connect_args", "make_client", "subscribe_args"]


def make_client(settings: MqttSettings, client_id: str | None = None) -> mqtt.Client:
    """A VERSION2-callback client with a fixed id and a persistent session (not connected yet)."""
    cid = client_id or settings.client_id
    if settings.protocol is MqttProtocol.V5:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
    else:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid, clean_session=False,
                             protocol=mqtt.MQTTv311)
    if settings.username is not None:
        client.username_pw_set(settings.username,
                               settings.password.get_secret_value() if settings.password else None)
    if settings.tls is not None:
        tls = settings.tls
        client.tls_set(ca_certs=str(tls.ca) if tls.ca else None,
                       certfile=str(tls.cert) if tls.cert else None,
                       keyfile=str(tls.key) if tls.key else None,
                       cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        client.tls_insecure_set(tls.insecure)
    client.reconnect_delay_set(max(1, round(settings.reconnect_min.total_seconds())),
                               max(1, round(settings.reconnect_max.total_seconds())))
    return client


def connect_args(settings: MqttSettings) -> dict[str, Any]:
    """Keyword arguments for `connect`/`connect_async`: a session that survives disconnects."""
    args: dict[str, Any] = {"host": settings.host, "port": settings.port,
                            "keepalive": max(5, round(settings.keepalive.total_seconds()))}
    if settings.protocol is MqttProtocol.V5:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = min(0xFFFFFFFF, round(settings.session_expiry.total_seconds()))
        props.ReceiveMaximum = settings.max_inflight
        args.update(clean_start=False, properties=props)
    return args


def subscribe_args(settings: MqttSettings, filters: tuple[str, ...]) -> list[tuple[str, Any]]:
    """[(filter, qos or options)] with the shared-subscription prefix when configured."""
    prefix = f"$share/{settings.shared_group}/" if settings.shared_group else ""
    if settings.protocol is MqttProtocol.V5:
        return [(prefix + f, SubscribeOptions(qos=settings.qos)) for f in filters]
    return [(prefix + f, settings.qos) for f in filters]
