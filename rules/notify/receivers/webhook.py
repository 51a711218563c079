"""`type: webhook` — POST the alert event JSON, signed with HMAC-SHA256 when a `secret` is set."""

from __future__ import annotations

import hashlib
import hmac
import json

import requests

from rules.notify.mask import mask_url
from rules.notify.receivers.base import Delivery, Receiver, post, register
from rules.notify.settings import WebhookSettings
from rules.notify.templates import Renderer

__all__ = ["SIGNATURE_HEADER", "WebhookReceiver", "body_of", "sign"]

SIGNATURE_HEADER = "X-Gshp-Signature"
IDEMPOTENCY_HEADER = "X-Gshp-Idempotency-Key"


def sign(secret: bytes, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 of the raw request body with the shared secret."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


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
        return mask_url(self.settings.url)

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
            headers[SIGNATURE_HEADER] = sign(s.secret.get_secret_value().encode("utf-8"), body)
        post(self.session, s.url, body, headers, s.timeout.total_seconds(), s.verify_tls)

    def close(self) -> None:
        self.session.close()
