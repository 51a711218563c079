"""With `api.tls: {cert, key}` the service serves HTTPS only, with that certificate, and still asks for a token."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from gshp.clock import DataClock
from gshp.config import parse_config
from gshp.devstack import Influxd, free_port
from tests.api.conftest import TOKENS, city_yaml, serving
from tests.helpers import make_pki

pytestmark = pytest.mark.integration


def server_certificate(d: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a certificate for 127.0.0.1 / localhost signed by it: (ca, cert, key)."""
    make_pki(d)
    return d / "ca.crt", d / "server.crt", d / "server.key"


def test_the_api_serves_https_with_the_configured_certificate_only_and_asks_for_a_token(
        influxd: Influxd, tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    pki.mkdir()
    ca, cert, key = server_certificate(pki)
    port = free_port()
    text = city_yaml(tmp_path / "state", influxd.url, "api_tls", port).replace(
        f"  listen: 127.0.0.1:{port}\n", f"  listen: 127.0.0.1:{port}\n  tls: {{cert: {cert}, key: {key}}}\n")
    config = parse_config(text)
    assert config.api.tls is not None
    with serving(config, clock=DataClock(), verify=str(ca)) as running:
        assert running.url.startswith("https://")
        assert running.get("/healthz", None).json()["status"] == "ok"
        refused = running.get("/api/sites", None)
        assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "Bearer"
        assert running.get("/api/sites", "viewer").status_code == 200
        assert running.get("/api/sites", "viewer").json()["sites"][0]["id"] == "hehua"
        # (each refused request in its own session: closing it closes the socket the error still refers to)
        with requests.Session() as untrusting, pytest.raises(requests.exceptions.SSLError):
            untrusting.get(running.url + "/healthz", timeout=5)  # our certificate, not one the system trusts
        with requests.Session() as plain, pytest.raises(requests.ConnectionError):
            plain.get(f"http://127.0.0.1:{port}/api/sites", timeout=5,  # no plain HTTP, not even with a token
                      headers={"Authorization": f"Bearer {TOKENS['viewer']}"})
