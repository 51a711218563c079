"""The v2 path makes exactly the request InfluxDB 2.x expects (checked against a local HTTP server)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from collector.influx.lineproto import FlowSchema
from collector.influx.settings import InfluxSettings
from collector.influx.writer import InfluxTargetMissing, RejectedWrite, RetryableWriteError, V2Writer
from collector.model import Reading, Role
from tests.helpers import make_site


class Recorder(ThreadingHTTPServer):
    requests: list[dict[str, Any]]
    answers: list[tuple[int, dict[str, str], bytes]]


class Handler(BaseHTTPRequestHandler):
    server: Recorder

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.server.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                                     "body": self.rfile.read(length)})
        status, headers, body = self.server.answers.pop(0) if self.server.answers else (204, {}, b"")
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _handle

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[Recorder]:
    srv = Recorder(("127.0.0.1", 0), Handler)
    srv.requests, srv.answers = [], []
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()


def writer(server: Recorder) -> V2Writer:
    return V2Writer(InfluxSettings(url=f"http://127.0.0.1:{server.server_address[1]}", api="v2",  # type: ignore[arg-type]
                                   org="water-bureau", bucket="gshp", token="s3cr3t-token"))


def test_write_request_is_exactly_what_influxdb_2_expects(server: Recorder) -> None:
    line = FlowSchema([make_site()]).line(
        Reading("s1", "E1", Role.EXTRACTION, datetime(2026, 7, 1, tzinfo=UTC), 12.5, 100.0))
    writer(server).write([line, line])
    (req,) = server.requests
    assert req["method"] == "POST"
    path, _, query = req["path"].partition("?")
    assert path == "/api/v2/write"
    assert sorted(query.split("&")) == ["bucket=gshp", "org=water-bureau", "precision=ms"]
    assert req["headers"]["Authorization"] == "Token s3cr3t-token"
    assert req["headers"]["Content-Type"].startswith("text/plain")
    assert req["body"].decode() == f"{line}\n{line}"


def test_v2_errors_map_to_the_drainer_vocabulary(server: Recorder) -> None:
    w = writer(server)
    server.answers = [(400, {}, b'{"code":"invalid","message":"unable to parse"}'),
                      (429, {"Retry-After": "3"}, b""), (401, {}, b'{"code":"unauthorized"}')]
    with pytest.raises(RejectedWrite, match="unable to parse"):
        w.write(["x"])
    with pytest.raises(RetryableWriteError) as info:
        w.write(["x"])
    assert info.value.error_class == "overloaded" and info.value.retry_after == 3.0
    with pytest.raises(RetryableWriteError, match=r"check influx\.token") as info:
        w.write(["x"])
    assert "s3cr3t-token" not in str(info.value)


def test_missing_bucket_says_how_to_create_it(server: Recorder) -> None:
    server.answers = [(200, {"Content-Type": "application/json"}, json.dumps({"buckets": []}).encode())]
    with pytest.raises(InfluxTargetMissing, match="influx bucket create -n gshp -o water-bureau"):
        writer(server).ensure_target()
    assert server.requests[0]["path"].startswith("/api/v2/buckets?")
    assert "name=gshp" in server.requests[0]["path"]


def test_unreachable_server_is_retryable() -> None:
    w = V2Writer(InfluxSettings(url="http://127.0.0.1:9", api="v2", org="o", token="t"))  # type: ignore[arg-type]
    with pytest.raises(RetryableWriteError) as info:
        w.write(["x"])
    assert info.value.error_class == "connection"
