"""The notifier's exception types: one for the layer, two that tell a delivery what to do next."""

from __future__ import annotations

__all__ = ["DeliveryError", "NotifyError", "PermanentDeliveryError", "RetryableDeliveryError"]


class NotifyError(Exception):
    """The notifier cannot do what was asked (bad event, bad template, unusable state directory)."""


class DeliveryError(NotifyError):
    """A receiver did not accept a notification. The message never contains a secret."""


class RetryableDeliveryError(DeliveryError):
    """Worth trying again later: timeout, connection refused, 5xx, 429, a robot's rate limit."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentDeliveryError(DeliveryError):
    """Trying again cannot help (bad credentials, malformed request): dead-lettered at once."""
