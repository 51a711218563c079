"""Real peers on loopback for the notifier's tests: an HTTP server that records what it receives."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from gshp.devstack import free_port


@dataclass
class Received:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


Responder = Callable[[Received], tuple[int, bytes]]


@dataclass
class HttpPeer:
    """Records every POST; `respond` decides the answer (default 200 with a robot's ``errcode: 0``)."""

    port: int = 0
    respond: Responder | None = None
    received: list[Received] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HttpPeer:
        if not self.port:
            self.port = free_port()
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                parts = urlsplit(self.path)
                rec = Received(parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()},
                               {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(n))
                status, body = (peer.respond or (lambda r: (200, b'{"errcode":0,"errmsg":"ok"}')))(rec)
                if 200 <= status < 300:
                    with peer._lock:
                        peer.received.append(rec)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def keys(self) -> Counter[str]:
        with self._lock:
            return Counter(r.headers.get("x-gshp-idempotency-key", "") for r in self.received)


def notice(change: str = "opened", **incident: Any) -> dict[str, Any]:
    """A sample incident notice (`rules.notify.sample_event`) with another change and incident fields."""
    from rules.notify import sample_event

    d = sample_event(**{k: incident.pop(k) for k in ("site", "site_name", "district") if k in incident})
    d["change"] = change
    d["incident"].update(incident)
    if change == "resolved":
        d["incident"].update(state="resolved", ended_at=d["at"])
    return d
