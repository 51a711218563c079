"""Each receiver type against a real peer on loopback: HTTP servers standing in for webhooks and robots
(verifying signatures the way the real ones do), aiosmtpd with AUTH, and mosquitto."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import ssl
import subprocess
import threading
import time
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import paho.mqtt.client as mqtt
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import TypeAdapter

from gshp.devstack import Mosquitto, free_port
from rules.notify import Notifier, PermanentDeliveryError, RetryableDeliveryError, parse_event, sample_event
from rules.notify.receivers.base import Delivery
from rules.notify.settings import ReceiverSettings
from tests.helpers import wait_until
from tests.notify_peers import HttpPeer, Received, notice

pytestmark = pytest.mark.integration

SETTINGS: TypeAdapter[ReceiverSettings] = TypeAdapter(ReceiverSettings)


def notifier(tmp_path: Path, *receivers: dict[str, Any], public_url: str | None = None) -> Notifier:
    return Notifier([SETTINGS.validate_python(r) for r in receivers], tmp_path / "notify.sqlite",
                    public_url=public_url)


@pytest.fixture
def peer() -> Any:
    p = HttpPeer().start()
    yield p
    p.stop()


# -- webhook -----------------------------------------------------------------------------------------


def test_webhook_posts_the_incident_notice_json_signed_with_hmac_of_the_raw_body(tmp_path: Path,
                                                                                 peer: HttpPeer) -> None:
    secret = "w3bh00k-s3cret"

    def verify(r: Received) -> tuple[int, bytes]:
        expected = "sha256=" + hmac.new(secret.encode(), r.body, hashlib.sha256).hexdigest()
        ok = hmac.compare_digest(r.headers.get("x-gshp-signature", ""), expected)
        return (204, b"") if ok else (401, b"bad signature")

    peer.respond = verify
    n = notifier(tmp_path, {"name": "hook", "type": "webhook", "url": peer.url + "/alerts", "secret": secret,
                            "headers": {"Authorization": "Bearer t0k3n"}})
    n.send_test("hook")
    (r,) = peer.received
    body = r.json()
    expected = sample_event(at=parse_event(body).at)
    assert set(body) == set(expected)  # the full notice shape
    assert parse_event(body) == parse_event(expected)
    assert body["incident"]["site_name"] == "向阳荷花广场" and body["incident"]["volume_m3"]["estimate"] == 26.7
    assert r.headers["x-gshp-event"] == "opened"
    assert r.headers["authorization"] == "Bearer t0k3n"
    assert r.headers["x-gshp-idempotency-key"].startswith("test:")
    assert r.headers["content-type"].startswith("application/json")
    n.queue.close()


def test_webhook_with_the_wrong_secret_is_a_permanent_failure_and_5xx_retryable(tmp_path: Path,
                                                                                peer: HttpPeer) -> None:
    peer.respond = lambda r: (401, b"bad signature")
    n = notifier(tmp_path, {"name": "hook", "type": "webhook", "url": peer.url, "secret": "other"})
    with pytest.raises(PermanentDeliveryError, match="HTTP 401"):
        n.send_test("hook")
    peer.respond = lambda r: (503, b"busy")
    with pytest.raises(RetryableDeliveryError, match="HTTP 503"):
        n.send_test("hook")
    n.queue.close()


# -- DingTalk ----------------------------------------------------------------------------------------


def dingtalk_robot(token: str, secret: str) -> Any:
    """Checks a request the way DingTalk's robot does: access_token, timestamp within an hour, sign."""

    def respond(r: Received) -> tuple[int, bytes]:
        if r.query.get("access_token") != token:
            return 200, json.dumps({"errcode": 300001, "errmsg": "token is not exist"}).encode()
        ts = r.query.get("timestamp", "0")
        if abs(int(ts) - time.time() * 1000) > 3600_000:
            return 200, json.dumps({"errcode": 310000, "errmsg": "invalid timestamp"}).encode()
        digest = hmac.new(secret.encode(), f"{ts}\n{secret}".encode(), hashlib.sha256).digest()
        if r.query.get("sign") != base64.b64encode(digest).decode():
            return 200, json.dumps({"errcode": 310000, "errmsg": "sign not match"}).encode()
        return 200, b'{"errcode":0,"errmsg":"ok"}'

    return respond


def test_dingtalk_signed_markdown_message(tmp_path: Path, peer: HttpPeer) -> None:
    token, secret = "d1ngt0k3n", "SEC0123456789abcdef"
    peer.respond = dingtalk_robot(token, secret)
    # the URL is pasted as DingTalk shows it, token included
    n = notifier(tmp_path, {"name": "ding", "type": "dingtalk", "url": f"{peer.url}/robot/send?access_token={token}",
                            "secret": secret, "at_mobiles": ["13800000000"]},
                 public_url="https://board.example.gov.cn")
    assert token not in n.receivers["ding"].target()
    n.send_test("ding")
    (r,) = peer.received
    assert r.path == "/robot/send"
    msg = r.json()
    assert msg["msgtype"] == "markdown" and set(msg["markdown"]) == {"title", "text"}
    assert "向阳荷花广场" in msg["markdown"]["title"]
    text = msg["markdown"]["text"]
    for part in ("宛城区", "26.7 m³", "22.1 m³", "31.3 m³", "39.8%",
                 "https://board.example.gov.cn/incidents/sample-hehua-plaza", "@13800000000"):
        assert part in text
    assert msg["at"] == {"atMobiles": ["13800000000"], "isAtAll": False}
    n.queue.close()


def test_dingtalk_error_code_is_a_failure_even_with_http_200(tmp_path: Path, peer: HttpPeer) -> None:
    peer.respond = dingtalk_robot("right", "SECx")
    n = notifier(tmp_path, {"name": "ding", "type": "dingtalk", "url": peer.url, "access_token": "wrong",
                            "secret": "SECx"})
    with pytest.raises(RetryableDeliveryError, match="errcode 300001") as info:
        n.send_test("ding")
    assert "wrong" not in str(info.value)
    n.queue.close()


# -- WeCom -------------------------------------------------------------------------------------------


def test_wecom_markdown_body_shape_and_4096_byte_bound(tmp_path: Path, peer: HttpPeer) -> None:
    n = notifier(tmp_path, {"name": "wx", "type": "wecom", "url": f"{peer.url}/cgi-bin/webhook/send?key=K-123",
                            "language": "en"})
    n.send_test("wx")
    (r,) = peer.received
    assert r.path == "/cgi-bin/webhook/send" and r.query == {"key": "K-123"}
    msg = r.json()
    assert list(msg) == ["msgtype", "markdown"] and msg["msgtype"] == "markdown"
    assert list(msg["markdown"]) == ["content"]
    content = msg["markdown"]["content"]
    assert "suspected discharge" in content and "Estimated discharge" in content
    # a digest of many incidents stays within the robot's 4096-byte limit
    events = tuple(parse_event(notice(id=f"a{i}")) for i in range(40))
    n.receivers["wx"].send(Delivery("k", events))
    assert len(peer.received[-1].json()["markdown"]["content"].encode()) <= 4096
    n.queue.close()


# -- e-mail ------------------------------------------------------------------------------------------


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[Envelope, bool]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages.append((envelope, bool(session.authenticated)))
        return "250 OK"


def _auth(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and data.login == b"alerts" and data.password == b"p4ss"
    return AuthResult(success=ok, handled=False)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")], check=True, capture_output=True)
    return d / "cert.pem", d / "key.pem"


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
@pytest.mark.parametrize("security", ["none", "starttls", "ssl"])
def test_email_with_auth_plain_text_and_html_in_chinese(tmp_path: Path, security: str,
                                                        tls_files: tuple[Path, Path]) -> None:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*tls_files)
    box = Mailbox()
    port = free_port()
    kw: dict[str, Any] = {"tls_context": ctx, "require_starttls": True} if security == "starttls" else {}
    if security == "ssl":
        kw = {"ssl_context": ctx}
    ctl = Controller(box, hostname="127.0.0.1", port=port, authenticator=_auth, auth_required=True,
                     auth_require_tls=security == "starttls", **kw)  # aiosmtpd does not see implicit TLS
    ctl.start()
    try:
        n = notifier(tmp_path, {"name": "mail", "type": "email", "host": "127.0.0.1", "port": port,
                                "security": security, "verify_tls": False, "username": "alerts", "password": "p4ss",
                                "from": "gshp <alerts@example.gov.cn>", "to": ["zhifa@example.gov.cn"]})
        n.send_test("mail")
        (env, authenticated), = box.messages
        assert authenticated and env.rcpt_tos == ["zhifa@example.gov.cn"]
        msg = message_from_bytes(env.original_content or b"", policy=policy.default)
        assert "向阳荷花广场" in str(msg["Subject"])
        plain = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
        assert "估计外排量：26.7 m³（不确定范围 22.1 m³ – 31.3 m³）" in plain and "差额峰值：39.8%" in plain
        assert "<table" in html and "向阳荷花广场" in html
        assert msg["Message-ID"].endswith("@gshp-monitor>")
        # a wrong password is permanent: no retry can fix it
        bad = notifier(tmp_path / "b", {"name": "mail", "type": "email", "host": "127.0.0.1", "port": port,
                                        "security": security, "verify_tls": False, "username": "alerts",
                                        "password": "nope", "from": "a@b.cn", "to": ["c@d.cn"]})
        with pytest.raises(PermanentDeliveryError, match="login as alerts refused"):
            bad.send_test("mail")
        bad.queue.close()
        n.queue.close()
    finally:
        ctl.stop()


def test_email_to_a_closed_port_is_retryable(tmp_path: Path) -> None:
    n = notifier(tmp_path, {"name": "mail", "type": "email", "host": "127.0.0.1", "port": free_port(),
                            "security": "none", "from": "a@b.cn", "to": ["c@d.cn"], "timeout": "2s"})
    with pytest.raises(RetryableDeliveryError):
        n.send_test("mail")
    n.queue.close()


# -- MQTT --------------------------------------------------------------------------------------------


class Subscriber:
    def __init__(self, broker: Mosquitto, topic: str) -> None:
        self.got: list[mqtt.MQTTMessage] = []
        self.ready = threading.Event()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sub-{time.monotonic_ns()}")
        self.c.on_connect = lambda c, u, f, rc, p: (c.subscribe(topic, qos=1), self.ready.set())
        self.c.on_message = lambda c, u, m: self.got.append(m)
        self.c.connect(broker.host, broker.port)
        self.c.loop_start()
        assert self.ready.wait(10)
        time.sleep(0.2)  # SUBACK

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def test_mqtt_publishes_notices_qos1_and_the_sites_open_incidents_retained(tmp_path: Path,
                                                                          mosquitto: Mosquitto) -> None:
    live = Subscriber(mosquitto, "gshp/#")
    n = notifier(tmp_path, {"name": "bus", "type": "mqtt", "host": mosquitto.host, "port": mosquitto.port,
                            "client_id": "gshp-notify-test"})
    n.submit(notice())
    n.submit(notice(site="wolong-school", site_name="卧龙区第一中学", district="卧龙区", id="w1"))
    n.tick()
    while n.deliver_once("bus") == 0:
        pass
    n.submit(notice("resolved"))
    n.tick()
    while n.deliver_once("bus") == 0:
        pass
    wait_until(lambda: len(live.got) >= 6, 10)
    live.close()
    events = [m for m in live.got if m.topic.startswith("gshp/alerts/")]
    assert [(m.topic, json.loads(m.payload)["change"]) for m in events] == [
        ("gshp/alerts/宛城区/hehua-plaza", "opened"), ("gshp/alerts/卧龙区/wolong-school", "opened"),
        ("gshp/alerts/宛城区/hehua-plaza", "resolved")]
    assert all(m.qos == 1 for m in events)
    # a late subscriber gets each site's current state from the retained messages
    late = Subscriber(mosquitto, "gshp/state/#")
    wait_until(lambda: len(late.got) >= 2, 10)
    late.close()
    state = {m.topic: json.loads(m.payload) for m in late.got}
    assert all(m.retain for m in late.got)
    assert state["gshp/state/宛城区/hehua-plaza"]["state"] == "ok"
    assert state["gshp/state/宛城区/hehua-plaza"]["incidents"] == []
    assert state["gshp/state/卧龙区/wolong-school"]["state"] == "open"
    assert [a["id"] for a in state["gshp/state/卧龙区/wolong-school"]["incidents"]] == ["w1"]
    n.stop()


def test_mqtt_broker_down_is_retryable(tmp_path: Path) -> None:
    n = notifier(tmp_path, {"name": "bus", "type": "mqtt", "port": free_port(), "timeout": "1s"})
    with pytest.raises(RetryableDeliveryError, match="cannot connect"):
        n.send_test("bus")
    n.stop()


def test_query_encoding_matches_what_dingtalk_expects() -> None:
    from rules.notify.receivers.dingtalk import dingtalk_sign

    s = dingtalk_sign(1700000000000, "SECabc")
    assert urlencode({"sign": s}) == "sign=" + s.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
