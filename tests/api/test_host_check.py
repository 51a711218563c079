"""Where the API reads without a token, a request must name it by a loopback name or one of
`api.allowed_hosts`: a DNS-rebinding page (``Host: attacker.example``) gets 421, over a real socket."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import requests

from gshp.api.hosts import HostCheck, host_allowed
from gshp.config import ApiSettings, parse_config
from gshp.devstack import Influxd, free_port
from tests.api.conftest import TOKENS, serving

pytestmark = pytest.mark.integration

SITES = """\
sites:
  - {id: hehua-plaza, name: 向阳荷花广场, district: 宛城区,
     meters: [{id: E1, role: extraction}, {id: R1, role: reinjection}]}
"""


def _get(port: int, path: str, host: str, token: str | None = None) -> requests.Response:
    headers = {"Host": host, "Connection": "close", **({"Authorization": f"Bearer {token}"} if token else {})}
    return requests.get(f"http://127.0.0.1:{port}{path}", headers=headers, timeout=10)


def test_open_read_answers_loopback_names_and_allowed_hosts_only(tmp_path: Path, influxd: Influxd) -> None:
    port = free_port()
    config = parse_config(f"""\
state_dir: {tmp_path / "state"}
influx: {{url: "{influxd.url}", api: v1, bucket: host_check}}
api: {{listen: "127.0.0.1:{port}", allowed_hosts: [board.example.gov.cn, "gshp.lan:8443"],
       public_url: "https://gshp.example.gov.cn/board"}}
{SITES}""", env={})
    assert config.api.open_read
    with serving(config):
        for host in ("attacker.example", f"attacker.example:{port}", "127.0.0.1.attacker.example",
                     "localhost.attacker.example", "gshp.lan", "gshp.lan:80", "0.0.0.0", ""):
            for path in ("/api/sites", "/healthz", "/metrics", "/"):
                r = _get(port, path, host)
                assert r.status_code == 421, (host, path, r.status_code)
                assert r.headers["content-type"] == "application/json"
                assert "is not a name of this API" in r.json()["detail"]
                assert "api.allowed_hosts" in r.json()["detail"]
        for host in ("localhost", f"localhost:{port}", "127.0.0.1", f"127.0.0.1:{port}", "[::1]", f"[::1]:{port}",
                     "LOCALHOST", "board.example.gov.cn", "board.example.gov.cn:443", "gshp.lan:8443",
                     "gshp.example.gov.cn"):
            r = _get(port, "/api/sites", host)
            assert r.status_code == 200, (host, r.status_code)
            assert "hehua-plaza" in r.text


def test_loopback_read_with_tokens_refuses_a_foreign_host_even_with_a_token(tmp_path: Path,
                                                                           influxd: Influxd) -> None:
    port = free_port()
    config = parse_config(f"""\
state_dir: {tmp_path / "state"}
influx: {{url: "{influxd.url}", api: v1, bucket: host_check}}
api:
  listen: "127.0.0.1:{port}"
  loopback_read: true
  tokens: [{{token: {TOKENS["viewer"]}, role: viewer}}]
{SITES}""", env={})
    assert config.api.open_read
    with serving(config):
        assert _get(port, "/api/sites", "attacker.example").status_code == 421
        assert _get(port, "/api/sites", "attacker.example", TOKENS["viewer"]).status_code == 421
        assert _get(port, "/api/sites", f"127.0.0.1:{port}").status_code == 200
        assert _get(port, "/api/sites", f"localhost:{port}", TOKENS["viewer"]).status_code == 200


@pytest.mark.parametrize(("host", "allowed"), [
    ("localhost", True), ("localhost:8080", True), ("127.0.0.1:1", True), ("[::1]", True), ("[::1]:8080", True),
    ("LocalHost.", True), ("board.example:9", True), ("attacker.example", False), ("", False), ("[::1", False),
    ("localhost:8080:1", False), ("127.0.0.2", False), ("[::2]:8080", False), ("board.example.evil", False),
])
def test_host_names_match_with_or_without_a_port(host: str, allowed: bool) -> None:
    assert host_allowed(host, ("localhost", "127.0.0.1", "[::1]", "board.example")) is allowed


@pytest.mark.parametrize(("listen", "tokens", "host", "status"), [
    ("127.0.0.2:8080", False, "127.0.0.2:8080", 200),  # the address it listens on names it too
    ("[::1]:8080", False, "[::1]:8080", 200),
    ("127.0.0.2:8080", False, "127.0.0.3:8080", 421),
    ("0.0.0.0:8443", True, "attacker.example", 200),  # a token is needed anyway, no allowed_hosts set: no check
])
def test_which_hosts_the_check_lets_through(listen: str, tokens: bool, host: str, status: int) -> None:
    api = ApiSettings.model_validate({"listen": listen, "tokens": [{"token": TOKENS["viewer"], "role": "viewer"}]
                                      if tokens else []})
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})

    async def record(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "headers": [(b"host", host.encode())]}
    asyncio.run(HostCheck(app, api)(scope, record, record))  # type: ignore[arg-type]
    assert sent[0]["status"] == status
