"""A discharge alert reaches each kind of receiver once, routed by district, through the notifier the
service builds from its config."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from paho.mqtt.enums import CallbackAPIVersion

from gshp.config import parse_config
from gshp.devstack import Mosquitto, free_port
from gshp.service import Service
from rules.notify import sample_event
from tests.helpers import wait_until
from tests.notify_peers import HttpPeer

pytestmark = pytest.mark.integration


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[Envelope] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages.append(envelope)
        return "250 OK"


def test_discharge_alerts_reach_every_kind_of_receiver_once_routed_by_district(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    hook, ding, wx = HttpPeer().start(), HttpPeer().start(), HttpPeer().start()
    box, smtp_port = Mailbox(), free_port()
    smtp = Controller(box, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    got: list[mqtt.MQTTMessage] = []
    ready = threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="e2e-sub")
    sub.on_connect = lambda c, u, f, rc, p: (c.subscribe("gshp/alerts/#", qos=1), ready.set())
    sub.on_message = lambda c, u, m: got.append(m)
    sub.connect(mosquitto.host, mosquitto.port)
    sub.loop_start()
    assert ready.wait(10)
    time.sleep(0.2)
    fast = "group_wait: 0s, group_interval: 0s"
    config = parse_config(f"""
state_dir: {tmp_path / "state"}
api: {{listen: 127.0.0.1:{free_port()}, public_url: "https://board.example.gov.cn"}}
notify:
  - {{name: case, type: webhook, url: "{hook.url}/in", secret: s3cr3t, {fast}}}
  - {{name: wancheng, type: dingtalk, url: "{ding.url}/robot/send?access_token=T", secret: SECx,
      match: {{district: [宛城区], kind: [discharge]}}, {fast}}}
  - {{name: wolong, type: wecom, url: "{wx.url}/send?key=K", match: {{district: [卧龙区]}}, {fast}}}
  - {{name: bureau, type: email, host: 127.0.0.1, port: {smtp_port}, security: none, from: a@x.cn,
      to: [b@x.cn], {fast}}}
  - {{name: bus, type: mqtt, host: 127.0.0.1, port: {mosquitto.port}, client_id: e2e-notify}}
""", env={})
    service = Service(config)
    service.notifier.start()
    try:
        wancheng = sample_event()
        wolong: dict[str, Any] = {**sample_event(site="wolong-school", site_name="卧龙区第一中学",
                                                 district="卧龙区"), "id": "wolong-1"}
        for e in (wancheng, wolong, {**wancheng, "state": "pending", "id": "p"}):
            service.notifier.submit(e)
        wait_until(lambda: len(hook.received) == 2 and len(ding.received) == 1 and len(wx.received) == 1
                   and len(box.messages) == 2 and len(got) == 2, 20)
        time.sleep(0.5)  # and nothing more arrives
        assert sorted(r.json()["id"] for r in hook.received) == sorted([wancheng["id"], "wolong-1"])
        assert len(ding.received) == 1 and "向阳荷花广场" in ding.received[0].json()["markdown"]["text"]
        assert len(wx.received) == 1 and "卧龙区第一中学" in wx.received[0].json()["markdown"]["content"]
        assert len(box.messages) == 2  # one message per group (group_by: site)
        assert sorted(m.topic for m in got) == ["gshp/alerts/卧龙区/wolong-school", "gshp/alerts/宛城区/hehua-plaza"]
        assert all(json.loads(m.payload)["state"] == "firing" for m in got)
        status = service.notifier.status()
        assert all(c.queued == c.failed == c.dead == 0 for c in status.values())
    finally:
        service.notifier.stop()
        service.outbox.close()
        sub.disconnect()
        sub.loop_stop()
        smtp.stop()
        for p in (hook, ding, wx):
            p.stop()
