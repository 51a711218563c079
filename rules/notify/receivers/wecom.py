"""`type: wecom` — a WeCom group robot (企业微信群机器人), markdown message.

Message: ``{"msgtype": "markdown", "markdown": {"content": …}}`` (content at most 4096 UTF-8 bytes)
POSTed to ``https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…``. Success is
``{"errcode": 0, "errmsg": "ok"}``; 45009 means the robot's limit of 20 messages a minute was hit.
"""

from __future__ import annotations

import json

import requests

from collector.redact import redact
from rules.notify.receivers.base import Delivery, Receiver, post, register, robot_result, truncate_utf8
from rules.notify.settings import WeComSettings
from rules.notify.templates import Renderer

__all__ = ["WeComReceiver"]

MAX_CONTENT_BYTES = 4096
_RATE_LIMIT = {45009}


@register
class WeComReceiver(Receiver[WeComSettings]):
    type = "wecom"
    digest = True

    def __init__(self, settings: WeComSettings, renderer: Renderer) -> None:
        super().__init__(settings, renderer)
        self.session = requests.Session()

    def target(self) -> str:
        return redact(self.settings.url) + " (key=***)"

    def message(self, delivery: Delivery) -> dict[str, object]:
        text = self.renderer.render("markdown", delivery.events, delivery.repeat)
        return {"msgtype": "markdown", "markdown": {"content": truncate_utf8(text, MAX_CONTENT_BYTES)}}

    def send(self, delivery: Delivery) -> None:
        s = self.settings
        body = json.dumps(self.message(delivery), ensure_ascii=False).encode("utf-8")
        resp = post(self.session, s.url, body, {"Content-Type": "application/json; charset=utf-8"},
                    s.timeout.total_seconds(), params={"key": s.key.get_secret_value()})
        robot_result(resp, self.target(), lambda code: code in _RATE_LIMIT)

    def close(self) -> None:
        self.session.close()
