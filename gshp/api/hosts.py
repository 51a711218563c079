"""The Host header check: a page on another site must not read the API through DNS rebinding.

Where the API can be read without a token (`ApiSettings.open_read`: on loopback), a browser that visits a
hostile page can be made to send requests to it under the hostile site's name (``Host: attacker.example``)
— the browser then lets that page read the answers. So every request must name the API by a loopback
name (``localhost``, ``127.0.0.1``, ``[::1]``, with or without a port), by the address it listens on, by
one of `api.allowed_hosts` or by the host of `api.public_url` (the name the notifications' links use);
any other Host is answered 421 with a JSON reason. When `api.allowed_hosts` is set the check applies in
every mode.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from gshp.config import ApiSettings

__all__ = ["LOOPBACK_HOSTS", "HostCheck", "host_allowed"]

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")


def _name(host: str) -> str:
    """``example.org:8080`` → ``example.org``; ``[::1]:8080`` → ``[::1]``."""
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def host_allowed(host: str, allowed: Iterable[str]) -> bool:
    """Whether a Host header value names one of `allowed` (entries without a port accept any port)."""
    host = host.strip().lower().rstrip(".")
    names = set(allowed)
    return bool(host) and (host in names or _name(host) in names)


class HostCheck:
    """ASGI middleware answering 421 to a request whose Host is not one the API is reached by."""

    def __init__(self, app: ASGIApp, settings: ApiSettings) -> None:
        self.app = app
        self.enforced = settings.open_read or bool(settings.allowed_hosts)
        public = urlsplit(settings.public_url).netloc.lower() if settings.public_url else ""
        listen = f"[{settings.host}]" if ":" in settings.host else settings.host  # e.g. 127.0.0.2
        self.allowed = frozenset((*LOOPBACK_HOSTS, listen.lower(), *settings.allowed_hosts,
                                  *([public] if public else [])))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.enforced and scope["type"] in ("http", "websocket"):
            host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
            if not host_allowed(host, self.allowed):
                await self._refuse(host, scope, send)
                return
        await self.app(scope, receive, send)

    async def _refuse(self, host: str, scope: Scope, send: Send) -> None:
        shown = json.dumps(host[:100], ensure_ascii=True)
        detail = (f"Host {shown} is not a name of this API: it answers to "
                  f"{', '.join(sorted(self.allowed))}; a name it is reached by through a proxy or on the network "
                  "goes under api.allowed_hosts")
        body = json.dumps({"detail": detail}).encode()
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await send({"type": "http.response.start", "status": 421,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
