"""What reaches the receivers' real peers is safe: names with markdown/HTML metacharacters arrive escaped,
an e-mail that cannot be built is dead-lettered without holding up the next, and webhook requests carry a
v2 signature over time, idempotency key and body that the shipped verifier checks (a replay > 5 min old
is refused)."""

from __future__ import annotations

import inspect
import re
import time
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import requests
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from pydantic import TypeAdapter

from gshp.devstack import free_port
from rules.notify import MessageStatus, Notifier, sample_event
from rules.notify.settings import ReceiverSettings
from rules.notify.verify import SignatureError, sign_body, sign_v2, verify_signature
from tests.helpers import wait_until
from tests.notify_peers import HttpPeer, Received

pytestmark = pytest.mark.integration

SETTINGS: TypeAdapter[ReceiverSettings] = TypeAdapter(ReceiverSettings)

HOSTILE_NAME = "<script>alert(1)</script> **荷花** [点我](http://evil.example) _x_ `c` <img src=x onerror=y>"
HOSTILE_DISTRICT = "# 宛城区 <b>&amp;</b>"


def notifier(tmp_path: Path, *receivers: dict[str, Any]) -> Notifier:
    return Notifier([SETTINGS.validate_python(r) for r in receivers], tmp_path / "notify.sqlite",
                    public_url="https://board.example.gov.cn", poll=0.05)


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        message = message_from_bytes(envelope.original_content or b"", policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 OK"


@pytest.fixture
def mailbox() -> Any:
    box, port = Mailbox(), free_port()
    ctl = Controller(box, hostname="127.0.0.1", port=port)
    ctl.start()
    yield box, port
    ctl.stop()


_RAW_MARKUP = re.compile(r"(?<!\\)(<script|<img|<b>|\*\*荷花|\[点我|_x_|`c`|# 宛城区)")
"""A piece of the hostile name's markup without the backslash that makes it text."""


def _no_raw_markup(text: str) -> None:
    found = _RAW_MARKUP.search(text)
    assert found is None, (found, text)


def test_markdown_and_html_in_names_arrive_escaped_at_dingtalk_wecom_and_mail(tmp_path: Path,
                                                                              mailbox: Any) -> None:
    box, smtp_port = mailbox
    ding, wecom = HttpPeer().start(), HttpPeer().start()
    try:
        n = notifier(tmp_path,
                     {"name": "ding", "type": "dingtalk", "url": ding.url + "/robot/send", "access_token": "t0k3n"},
                     {"name": "wx", "type": "wecom", "url": wecom.url + "/send", "key": "k3y"},
                     {"name": "mail", "type": "email", "host": "127.0.0.1", "port": smtp_port, "security": "none",
                      "from": "a@example.org", "to": ["b@example.org"]})
        event = sample_event(site_name=HOSTILE_NAME, district=HOSTILE_DISTRICT)
        for name in ("ding", "wx", "mail"):
            n.send_test(name, event)
        ding_text = ding.received[0].json()["markdown"]["text"]
        wx_text = wecom.received[0].json()["markdown"]["content"]
        for text in (ding_text, wx_text):
            _no_raw_markup(text)
            assert r"\<script\>alert\(1\)\</script\> \*\*荷花\*\* \[点我\]\(http://evil.example\)" in text
            assert r"\_x\_ \`c\`" in text and r"\# 宛城区 \<b\>\&amp;\</b\>" in text
            assert "**级别**" in text  # the template's own markdown stays markdown
            assert "[查看事件详情](https://board.example.gov.cn/incidents/sample-hehua-plaza)" in text
        (mail,) = box.messages
        html = mail.get_body(("html",)).get_content()  # type: ignore[union-attr]
        assert "<script>" not in html and "<img" not in html and "<b>&amp;" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;b&gt;&amp;amp;&lt;/b&gt;" in html
        assert HOSTILE_NAME in str(mail["Subject"])  # plain text: shown as written
        n.queue.close()
    finally:
        ding.stop()
        wecom.stop()


def test_an_email_that_cannot_be_built_is_dead_lettered_and_the_next_one_delivered(tmp_path: Path,
                                                                                   mailbox: Any) -> None:
    box, smtp_port = mailbox
    n = notifier(tmp_path, {"name": "mail", "type": "email", "host": "127.0.0.1", "port": smtp_port,
                            "security": "none", "from": "a@example.org", "to": ["b@example.org"],
                            "group_by": ["id"], "group_wait": "0s", "group_interval": "0s"})
    # an event recorded under an older config that let a line break into a site name
    broken = sample_event(site="old-site", site_name="旧站点\r\nBcc: everyone@example.org")
    good = sample_event(site="hehua-plaza")
    n.submit(broken)
    n.submit(good)
    start = time.monotonic()
    n.start()
    try:
        wait_until(lambda: len(box.messages) == 1, timeout=15, interval=0.05)
        took = time.monotonic() - start
        time.sleep(0.3)
        assert len(box.messages) == 1 and "向阳荷花广场" in str(box.messages[0]["Subject"])
        assert "Bcc" not in box.messages[0] and took < 10
        (dead,) = n.queue.messages([MessageStatus.DEAD])
        assert dead.key.startswith(f"{broken['incident']['id']}:") and dead.error is not None
        assert "the e-mail cannot be built" in dead.error and dead.attempts == 1  # no retry
        assert n.status()["mail"].dead == 1 and n.status()["mail"].sent == 1
    finally:
        n.stop()


def test_webhook_v2_signature_is_verified_and_a_replay_after_5_minutes_is_refused(tmp_path: Path) -> None:
    secret = "w3bh00k-s3cret-v2"
    clock_offset = [0.0]  # the receiver's clock, moved forward to receive a replay later

    def verifying(r: Received) -> tuple[int, bytes]:
        try:
            verify_signature(secret, r.headers, r.body, now=time.time() + clock_offset[0])
        except SignatureError as exc:
            return 401, str(exc).encode()
        return 204, b""

    peer = HttpPeer(respond=verifying).start()
    try:
        n = notifier(tmp_path, {"name": "hook", "type": "webhook", "url": peer.url + "/alerts", "secret": secret})
        n.send_test("hook")
        (r,) = peer.received
        stamp = int(r.headers["x-gshp-timestamp"])
        assert abs(stamp - time.time()) < 5
        assert r.headers["x-gshp-signature-v2"].startswith("sha256=")
        assert r.headers["x-gshp-signature"] == sign_body(secret, r.body)  # v1 kept for existing receivers
        sent = {k: v for k, v in r.headers.items() if k.startswith("x-gshp-") or k == "content-type"}

        def replay(headers: dict[str, str], body: bytes = r.body) -> requests.Response:
            return requests.post(peer.url + "/alerts", data=body, headers=headers, timeout=5)

        assert replay(sent).status_code == 204  # within the window the same request verifies (dedupe by key)
        clock_offset[0] = 301.0
        late = replay(sent)
        assert late.status_code == 401 and "beyond ±300 s" in late.text
        clock_offset[0] = 0.0
        assert replay({**sent, "x-gshp-idempotency-key": "other:firing:hook"}).status_code == 401
        assert replay({**sent, "x-gshp-timestamp": str(stamp + 10)}).status_code == 401
        assert replay(sent, r.body.replace(b"firing", b"resolved")).status_code == 401
        with pytest.raises(SignatureError, match="the signature does not match"):
            verify_signature("another-secret", r.headers, r.body, now=stamp)
        with pytest.raises(SignatureError, match="beyond"):
            verify_signature(secret, r.headers, r.body, now=stamp - 301)  # signed in the future
        assert len(peer.received) == 2  # the first delivery and the replay within the window
        n.queue.close()
    finally:
        peer.stop()


def test_the_docs_show_the_shipped_verifier_as_it_is() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "notify.md").read_text(encoding="utf-8")
    for fn in (sign_v2, verify_signature):
        assert inspect.getsource(fn) in docs, f"docs/notify.md: update the listing of {fn.__name__}"
