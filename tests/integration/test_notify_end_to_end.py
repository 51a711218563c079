"""Discharge incidents the live rule engine opens reach each kind of receiver once — one message per
incident, not one per window alert — routed by district, through the notifier the service builds from its
config."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from paho.mqtt.enums import CallbackAPIVersion

from alerting.model import Alert, IncidentNotice
from collector.model import Reading, Role
from gshp.clock import DataClock
from gshp.config import parse_config
from gshp.devstack import Mosquitto, free_port
from gshp.service import Service
from tests.helpers import wait_until
from tests.notify_peers import HttpPeer

pytestmark = pytest.mark.integration


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[Envelope] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages.append(envelope)
        return "250 OK"


def _minute_readings(site: str, minute: int, start: datetime, discharge: float) -> list[Reading]:
    """One reading per meter: 60 m³/h extracted, (1 - discharge) of it reinjected."""
    ts = start + timedelta(minutes=minute)
    e, r = 60.0, 60.0 * (1 - discharge)
    return [Reading(site, "E1", Role.EXTRACTION, ts, e, 1000 + e * minute / 60),
            Reading(site, "R1", Role.REINJECTION, ts, r, 2000 + r * minute / 60)]


def test_discharge_incidents_from_the_live_engine_reach_every_kind_of_receiver_once_routed_by_district(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    hook, ding, wx = HttpPeer().start(), HttpPeer().start(), HttpPeer().start()
    box, smtp_port = Mailbox(), free_port()
    smtp = Controller(box, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    got: list[mqtt.MQTTMessage] = []
    ready = threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="e2e-sub")
    sub.on_connect = lambda c, u, f, rc, p: (c.subscribe("gshp/alerts/#", qos=1), ready.set())
    sub.on_message = lambda c, u, m: got.append(m) if not m.retain else None
    sub.connect(mosquitto.host, mosquitto.port)
    sub.loop_start()
    assert ready.wait(10)
    time.sleep(0.2)
    fast = "group_wait: 0s, group_interval: 0s"
    meters = "meters: [{id: E1, role: extraction}, {id: R1, role: reinjection}]"
    config = parse_config(f"""
state_dir: {tmp_path / "state"}
api: {{listen: 127.0.0.1:{free_port()}, public_url: "https://board.example.gov.cn"}}
sites:
  - {{id: hehua-plaza, name: 向阳荷花广场, district: 宛城区, {meters}}}
  - {{id: wolong-school, name: 卧龙区第一中学, district: 卧龙区, {meters}}}
  - {{id: honest-park, name: 高新区创业园, district: 高新区, {meters}}}
notify:
  - {{name: case, type: webhook, url: "{hook.url}/in", secret: s3cr3t, {fast}}}
  - {{name: wancheng, type: dingtalk, url: "{ding.url}/robot/send?access_token=T", secret: SECx,
      match: {{district: [宛城区], kind: [discharge]}}, {fast}}}
  - {{name: wolong, type: wecom, url: "{wx.url}/send?key=K", match: {{district: [卧龙区]}}, {fast}}}
  - {{name: bureau, type: email, host: 127.0.0.1, port: {smtp_port}, security: none, from: a@x.cn,
      to: [b@x.cn], {fast}}}
  - {{name: bus, type: mqtt, host: 127.0.0.1, port: {mosquitto.port}, client_id: e2e-notify}}
""", env={})
    service = Service(config, clock=DataClock())  # the rules run in the readings' time
    fired: list[Alert] = []
    notices: list[IncidentNotice] = []
    service.alert_listeners.append(lambda e: fired.append(e) if e.state == "firing" else None)
    service.notice_listeners.append(notices.append)
    service.notifier.start()
    start = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)
    try:
        for minute in range(90):  # 90 minutes of data: 35 % and 40 % of the water drained, one honest site
            service.accept(_minute_readings("hehua-plaza", minute, start, 0.35)
                           + _minute_readings("wolong-school", minute, start, 0.40)
                           + _minute_readings("honest-park", minute, start, 0.0), "test")
        assert {e.site for e in fired} == {"hehua-plaza", "wolong-school"}, fired  # the engine found both
        assert len([e for e in fired if e.site == "hehua-plaza"]) > 1  # several windows fired …
        # … and each site has one incident: one message per receiver, whatever windows fired
        assert sorted((n.site, n.change.value) for n in notices) == [
            ("hehua-plaza", "opened"), ("wolong-school", "opened")]
        ids = {n.site: n.id for n in notices}
        wait_until(lambda: len(hook.received) == 2 and len(ding.received) == 1 and len(wx.received) == 1
                   and len(got) == 2
                   and {name for m in box.messages for name in ("向阳荷花广场", "卧龙区第一中学")
                        if name in _text(m)} == {"向阳荷花广场", "卧龙区第一中学"}, 20)
        time.sleep(0.5)  # and nothing more arrives
        assert sorted(r.json()["incident"]["id"] for r in hook.received) == sorted(ids.values())
        for r in hook.received:
            body = r.json()
            assert body["change"] == "opened" and body["incident"]["volume_m3"]["estimate"] > 0
            assert body["link"] == f"https://board.example.gov.cn/incidents/{body['incident']['id']}"
        (d,) = ding.received
        assert "向阳荷花广场" in d.json()["markdown"]["text"] and f"/incidents/{ids['hehua-plaza']}" in \
            d.json()["markdown"]["text"]
        (w,) = wx.received
        assert "卧龙区第一中学" in w.json()["markdown"]["content"] and "m³" in w.json()["markdown"]["content"]
        assert sorted(m.topic for m in got) == ["gshp/alerts/卧龙区/wolong-school", "gshp/alerts/宛城区/hehua-plaza"]
        assert sorted(json.loads(m.payload)["incident"]["id"] for m in got) == sorted(ids.values())
        # closing the case (the case store calls the hook) is one more message, naming the outcome
        service.incident_case_closed(ids["hehua-plaza"], "confirmed_discharge")
        wait_until(lambda: len(hook.received) == 3, 20)
        closed = hook.received[-1].json()
        assert (closed["change"], closed["outcome"], closed["incident"]["id"]) == (
            "case_closed", "confirmed_discharge", ids["hehua-plaza"])
        assert len({_parsed(m)["Message-ID"] for m in box.messages}) == len(box.messages)  # none sent twice
        # a message reaches its peer a moment before the worker marks it sent
        wait_until(lambda: all(c.queued == 0 for c in service.notifier.status().values()), 10)
        assert all(c.failed == c.dead == 0 for c in service.notifier.status().values())
    finally:
        service.notifier.stop()
        service.outbox.close()
        service.store.close()
        sub.disconnect()
        sub.loop_stop()
        smtp.stop()
        for p in (hook, ding, wx):
            p.stop()


def _parsed(envelope: Envelope) -> EmailMessage:
    raw = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def _text(envelope: Envelope) -> str:
    """Subject and plain-text body of a received mail, decoded."""
    message = _parsed(envelope)
    body = message.get_body(preferencelist=("plain",))
    return str(message["Subject"]) + "\n" + (body.get_content() if body is not None else "")
