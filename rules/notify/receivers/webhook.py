"""`type: webhook` — POST the alert event JSON, signed with HMAC-SHA256 when a `secret` is set (v1 over the
body, v2 over the time, the idempotency key and the body: see `rules.notify.verify`)."""

from __future__ import annotations

import json
import time

import requests

from collector.redact import redact
from rules.notify.receivers.base import Delivery, Receiver, post, register
from rules.notify.settings import WebhookSettings
from rules.notify.templates import Renderer
from rules.notify.verify import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    SIGNATURE_V2_HEADER,
    TIMESTAMP_HEADER,
    sign_body,
    sign_v2,
)

__all__ = ["WebhookReceiver", "body_of"]


def body_of(delivery: Delivery) -> bytes:
    """The incident notice as compact UTF-8 JSON; a reminder carries ``"repeat": n``."""
    (event,) = delivery.events
    data = event.to_dict()
    if delivery.repeat:
        data["repeat"] = delivery.repeat
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


@register
class WebhookReceiver(Receiver[WebhookSettings]):
    type = "webhook"

    def __init__(self, settings: WebhookSettings, renderer: Renderer) -> None:
        super().__init__(settings, renderer)
        self.session = requests.Session()

    def target(self) -> str:
        return redact(self.settings.url)

    def send(self, delivery: Delivery) -> None:
        s = self.settings
        body = body_of(delivery)
        headers = {k: v.get_secret_value() for k, v in s.headers.items()}
        headers.update({
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "gshp-monitor",
            IDEMPOTENCY_HEADER: delivery.key,
            "X-Gshp-Event": delivery.events[0].change.value,
        })
        if s.secret is not None:
            secret, now = s.secret.get_secret_value(), int(time.time())  # signed at each attempt
            headers[SIGNATURE_HEADER] = sign_body(secret, body)
            headers[TIMESTAMP_HEADER] = str(now)
            headers[SIGNATURE_V2_HEADER] = sign_v2(secret, now, delivery.key, body)
        post(self.session, s.url, body, headers, s.timeout.total_seconds(), s.verify_tls)

    def close(self) -> None:
        self.session.close()
