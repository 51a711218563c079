"""The receiver interface, the registry, and the HTTP plumbing the HTTP-based receivers share."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar, Generic, TypeVar

import requests

from alerting.model import IncidentNotice
from collector.redact import redact
from rules.notify.errors import PermanentDeliveryError, RetryableDeliveryError
from rules.notify.settings import ReceiverSettings
from rules.notify.templates import Renderer

__all__ = ["RECEIVERS", "Delivery", "Receiver", "post", "register"]

S = TypeVar("S", bound=Any)


@dataclass(frozen=True)
class Delivery:
    """What a receiver sends: one event, or a group's digest, under one idempotency key."""

    key: str
    events: tuple[IncidentNotice, ...]
    repeat: int = 0
    site_state: dict[str, Any] | None = None


class Receiver(ABC, Generic[S]):
    """Sends deliveries to one configured peer. `send` returns once the peer acknowledged, or raises
    `RetryableDeliveryError` / `PermanentDeliveryError` with a message that holds no secret."""

    type: ClassVar[str]
    digest: ClassVar[bool] = False  # True: one message per group notification; False: one per event

    def __init__(self, settings: S, renderer: Renderer) -> None:
        self.settings = settings
        self.renderer = renderer
        self.name: str = settings.name

    @abstractmethod
    def send(self, delivery: Delivery) -> None: ...

    @abstractmethod
    def target(self) -> str:
        """Where it sends, for logs and status output, with credentials masked."""

    def close(self) -> None:
        """Release connections (called when the notifier stops)."""


RECEIVERS: dict[str, type[Receiver[Any]]] = {}

R = TypeVar("R", bound=type[Receiver[Any]])


def register(cls: R) -> R:
    """Class decorator: make a receiver type available under its `type` name."""
    if cls.type in RECEIVERS:
        raise ValueError(f"receiver type {cls.type!r} is registered twice")
    RECEIVERS[cls.type] = cls
    return cls


def build(settings: ReceiverSettings, renderer: Renderer) -> Receiver[Any]:
    return RECEIVERS[settings.type](settings, renderer)


_RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}


def _retry_after(resp: requests.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            from datetime import UTC, datetime

            return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
        except (TypeError, ValueError):
            return None


def post(session: requests.Session, url: str, body: bytes, headers: dict[str, str], timeout: float,
         verify: bool = True, params: dict[str, str] | None = None) -> requests.Response:
    """POST and classify the outcome: 2xx returns; 408/429/5xx and network errors are retryable; other
    statuses are permanent. Error messages show the URL with its credentials masked."""
    shown = redact(url)
    try:
        resp = session.post(url, data=body, headers=headers, timeout=timeout, verify=verify, params=params,
                            allow_redirects=False)
    except requests.Timeout:
        raise RetryableDeliveryError(f"{shown}: no answer within {timeout:g}s") from None
    except requests.RequestException as exc:
        raise RetryableDeliveryError(f"{shown}: {redact(type(exc).__name__)}: "
                                     f"{redact(str(exc))[:300]}") from None
    if 200 <= resp.status_code < 300:
        return resp
    text = redact(resp.text[:200].strip())
    msg = f"{shown}: HTTP {resp.status_code} {resp.reason or ''} {text}".rstrip()
    if resp.status_code in _RETRY_STATUS:
        raise RetryableDeliveryError(msg, _retry_after(resp))
    raise PermanentDeliveryError(msg)


def robot_result(resp: requests.Response, shown: str, rate_limited: Callable[[int], bool]) -> None:
    """DingTalk and WeCom answer HTTP 200 with ``{"errcode": 0, "errmsg": "ok"}``; anything else failed.

    A rate-limit code is retried after a minute; other codes are retried too (they may be transient),
    and the retry budget dead-letters a persistent misconfiguration.
    """
    try:
        data = resp.json()
    except (json.JSONDecodeError, ValueError):
        raise RetryableDeliveryError(f"{shown}: answer is not JSON: {redact(resp.text[:200])}") from None
    code = int(data.get("errcode", -1)) if isinstance(data, dict) else -1
    if code == 0:
        return
    msg = f"{shown}: errcode {code} {redact(str(data.get('errmsg', '')))[:200]}"
    raise RetryableDeliveryError(msg, 60.0 if rate_limited(code) else None)


def truncate_utf8(text: str, max_bytes: int, marker: str = "\n\n…") -> str:
    """Cut text to at most `max_bytes` UTF-8 bytes without splitting a character."""
    raw = text.encode("utf-8")
    if len(raw) <= max_bytes:
        return text
    room = max_bytes - len(marker.encode("utf-8"))
    return raw[:room].decode("utf-8", errors="ignore") + marker
