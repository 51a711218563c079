"""`type: email` — SMTP (STARTTLS, implicit TLS or plain) with auth; a plain-text and an HTML part.

The Message-ID is derived from the idempotency key, so a notification re-sent after a crash carries the
same Message-ID and mail clients show it once.
"""

from __future__ import annotations

import hashlib
import smtplib
import ssl
from email.errors import MessageError
from email.message import EmailMessage
from email.utils import formatdate

from rules.notify.errors import PermanentDeliveryError, RetryableDeliveryError
from rules.notify.receivers.base import Delivery, Receiver, register
from rules.notify.settings import EmailSettings
from rules.notify.templates import Renderer

__all__ = ["EmailReceiver"]


def message_id(key: str) -> str:
    return f"<{hashlib.sha256(key.encode('utf-8')).hexdigest()[:32]}@gshp-monitor>"


@register
class EmailReceiver(Receiver[EmailSettings]):
    type = "email"
    digest = True

    def __init__(self, settings: EmailSettings, renderer: Renderer) -> None:
        super().__init__(settings, renderer)

    def target(self) -> str:
        s = self.settings
        user = f"{s.username}@" if s.username else ""
        return f"smtp {s.security} {user}{s.host}:{s.effective_port} → {', '.join(s.to)}"

    def message(self, delivery: Delivery) -> EmailMessage:
        s = self.settings
        msg = EmailMessage()
        msg["Subject"] = self.renderer.render("subject", delivery.events, delivery.repeat)
        msg["From"] = s.from_
        msg["To"] = ", ".join(s.to)
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        msg["Message-ID"] = message_id(delivery.key)
        msg["X-Gshp-Idempotency-Key"] = delivery.key
        msg.set_content(self.renderer.render("text", delivery.events, delivery.repeat), charset="utf-8")
        msg.add_alternative(self.renderer.render("html", delivery.events, delivery.repeat), subtype="html",
                            charset="utf-8")
        return msg

    def _tls(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        if not self.settings.verify_tls:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def send(self, delivery: Delivery) -> None:
        s = self.settings
        try:
            msg = self.message(delivery)
        except (ValueError, TypeError, MessageError) as exc:  # e.g. a line break in a header: no retry helps
            raise PermanentDeliveryError(f"the e-mail cannot be built: {exc}") from None
        timeout = s.timeout.total_seconds()
        where = f"{s.host}:{s.effective_port}"
        try:
            smtp: smtplib.SMTP
            if s.security == "ssl":
                smtp = smtplib.SMTP_SSL(s.host, s.effective_port, timeout=timeout, context=self._tls())
            else:
                smtp = smtplib.SMTP(s.host, s.effective_port, timeout=timeout)
            with smtp:
                if s.security == "starttls":
                    smtp.starttls(context=self._tls())
                if s.username is not None and s.password is not None:
                    smtp.login(s.username, s.password.get_secret_value())
                refused = smtp.send_message(msg)
        except smtplib.SMTPAuthenticationError as exc:
            raise PermanentDeliveryError(f"{where}: login as {s.username} refused ({exc.smtp_code})") from None
        except smtplib.SMTPRecipientsRefused as exc:
            raise PermanentDeliveryError(f"{where}: every recipient refused: {', '.join(exc.recipients)}") from None
        except smtplib.SMTPResponseException as exc:
            text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc)
            cls = PermanentDeliveryError if 500 <= exc.smtp_code < 600 else RetryableDeliveryError
            raise cls(f"{where}: SMTP {exc.smtp_code} {text[:200]}") from None
        except smtplib.SMTPNotSupportedError as exc:
            raise PermanentDeliveryError(f"{where}: {exc} (check `security:`)") from None
        except (smtplib.SMTPException, OSError) as exc:
            raise RetryableDeliveryError(f"{where}: {type(exc).__name__}: {exc}") from None
        if refused:
            # some recipients got it: re-sending would duplicate for them, so report without retrying
            raise PermanentDeliveryError(f"{where}: refused for {', '.join(refused)} (others accepted)")
