"""`type: dingtalk` — a DingTalk custom group robot (自定义机器人), markdown message, signed webhook.

Message: ``{"msgtype": "markdown", "markdown": {"title": …, "text": …}, "at": {"atMobiles": […],
"isAtAll": false}}`` POSTed to ``https://oapi.dingtalk.com/robot/send?access_token=…``. With the robot's
加签 security setting, the query also carries ``timestamp`` (ms) and ``sign`` = urlencode(base64(
HMAC-SHA256(key=secret, msg=timestamp + "\\n" + secret))); the robot refuses a timestamp more than an
hour away from its clock. Success is ``{"errcode": 0, "errmsg": "ok"}``. A robot takes at most 20
messages a minute, which is why robots get one digest per group notification.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import requests

from collector.redact import redact
from rules.notify.receivers.base import Delivery, Receiver, post, register, robot_result, truncate_utf8
from rules.notify.settings import DingTalkSettings
from rules.notify.templates import Renderer

__all__ = ["DingTalkReceiver", "dingtalk_sign"]

_MAX_TEXT_BYTES = 18_000
_RATE_LIMIT = {130101}  # "send too fast"


def dingtalk_sign(timestamp_ms: int, secret: str) -> str:
    """The `sign` query value before URL encoding (requests encodes it)."""
    to_sign = f"{timestamp_ms}\n{secret}".encode()
    return base64.b64encode(hmac.new(secret.encode("utf-8"), to_sign, hashlib.sha256).digest()).decode("ascii")


@register
class DingTalkReceiver(Receiver[DingTalkSettings]):
    type = "dingtalk"
    digest = True

    def __init__(self, settings: DingTalkSettings, renderer: Renderer) -> None:
        super().__init__(settings, renderer)
        self.session = requests.Session()

    def target(self) -> str:
        return redact(self.settings.url) + " (access_token=***)"

    def message(self, delivery: Delivery) -> dict[str, object]:
        s = self.settings
        text = self.renderer.render("markdown", delivery.events, delivery.repeat)
        if s.at_mobiles:  # DingTalk notifies only mobiles that also appear as @mobile in the text
            text += "\n\n" + " ".join(f"@{m}" for m in s.at_mobiles)
        return {
            "msgtype": "markdown",
            "markdown": {"title": self.renderer.render("subject", delivery.events, delivery.repeat),
                         "text": truncate_utf8(text, _MAX_TEXT_BYTES)},
            "at": {"atMobiles": list(s.at_mobiles), "isAtAll": s.at_all},
        }

    def send(self, delivery: Delivery) -> None:
        s = self.settings
        params = {"access_token": s.access_token.get_secret_value()}
        if s.secret is not None:
            ts = int(time.time() * 1000)
            params.update(timestamp=str(ts), sign=dingtalk_sign(ts, s.secret.get_secret_value()))
        body = json.dumps(self.message(delivery), ensure_ascii=False).encode("utf-8")
        resp = post(self.session, s.url, body, {"Content-Type": "application/json; charset=utf-8"},
                    s.timeout.total_seconds(), params=params)
        robot_result(resp, self.target(), lambda code: code in _RATE_LIMIT)

    def close(self) -> None:
        self.session.close()
