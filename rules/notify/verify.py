"""Webhook signatures, both sides: how `type: webhook` signs a request and how a receiver checks it.

With a `secret`, every request carries

- ``X-Gshp-Timestamp: <Unix seconds when it was sent>``,
- ``X-Gshp-Signature-V2: sha256=<hex HMAC-SHA256 of "<timestamp>.<idempotency key>.<raw body>">``,
- ``X-Gshp-Signature: sha256=<hex HMAC-SHA256 of the raw body>`` (v1, kept for existing receivers; it does
  not cover the time, so a captured request verifies forever).

A receiver checks v2 with `verify_signature` on the raw bytes, before parsing them: a request older (or
newer) than five minutes is refused, so a captured request cannot be replayed later, and one replayed
within the five minutes carries an idempotency key the receiver has already seen. This module needs the
standard library only: a receiver may copy it as it is.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

__all__ = [
    "IDEMPOTENCY_HEADER",
    "MAX_AGE_S",
    "SIGNATURE_HEADER",
    "SIGNATURE_V2_HEADER",
    "TIMESTAMP_HEADER",
    "SignatureError",
    "sign_body",
    "sign_v2",
    "verify_signature",
]

SIGNATURE_HEADER = "X-Gshp-Signature"
SIGNATURE_V2_HEADER = "X-Gshp-Signature-V2"
TIMESTAMP_HEADER = "X-Gshp-Timestamp"
IDEMPOTENCY_HEADER = "X-Gshp-Idempotency-Key"
MAX_AGE_S = 300


class SignatureError(ValueError):
    """The request is not a genuine, fresh request from gshp-monitor; the message says why."""


def _key(secret: str | bytes) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else secret


def sign_body(secret: str | bytes, body: bytes) -> str:
    """v1: ``sha256=<hex>`` of the raw body."""
    return "sha256=" + hmac.new(_key(secret), body, hashlib.sha256).hexdigest()


def sign_v2(secret: str | bytes, timestamp: int, idempotency_key: str, body: bytes) -> str:
    """v2: ``sha256=<hex>`` of ``<timestamp>.<idempotency key>.<raw body>``."""
    message = f"{timestamp}.{idempotency_key}.".encode() + body
    return "sha256=" + hmac.new(_key(secret), message, hashlib.sha256).hexdigest()


def verify_signature(secret: str | bytes, headers: Mapping[str, str], body: bytes, *, now: float | None = None,
                     max_age_s: float = MAX_AGE_S) -> None:
    """Raise `SignatureError` unless `headers` carry a v2 signature of `body` made with `secret` at most
    `max_age_s` seconds from `now` (default: the clock). Header names are matched case-insensitively."""
    given = {k.lower(): v for k, v in headers.items()}
    stamp = given.get(TIMESTAMP_HEADER.lower(), "")
    signature = given.get(SIGNATURE_V2_HEADER.lower(), "")
    key = given.get(IDEMPOTENCY_HEADER.lower(), "")
    if not stamp or not signature:
        raise SignatureError(f"unsigned: {TIMESTAMP_HEADER} and {SIGNATURE_V2_HEADER} are required")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise SignatureError(f"{TIMESTAMP_HEADER} is not Unix seconds") from None
    age = (time.time() if now is None else now) - timestamp
    if abs(age) > max_age_s:
        raise SignatureError(f"the request's timestamp is {age:+.0f} s off this clock, beyond ±{max_age_s:.0f} s: "
                             "a replay, or a clock that is off")
    if not hmac.compare_digest(signature.encode(), sign_v2(secret, timestamp, key, body).encode()):
        raise SignatureError("the signature does not match (another secret, or a changed request)")
