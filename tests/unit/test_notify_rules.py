"""Routing, grouping timings and silences of incident notices as pure functions; notice validation; URL
masking."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from alerting.model import IncidentNotice
from collector.redact import redact
from rules.notify.errors import NotifyError
from rules.notify.event import parse_event, sample_event
from rules.notify.grouping import GroupState, Item, ItemStatus, Reason, Timings, due, plan_flush, plan_repeat
from rules.notify.routing import group_key, route
from rules.notify.settings import WebhookSettings
from rules.notify.silences import Matcher, Silence, silenced_by

T0 = datetime(2026, 7, 1, 8, 0, tzinfo=UTC)


def event(change: str = "opened", at: datetime = T0, **incident: Any) -> IncidentNotice:
    base = sample_event(at=T0)
    base["change"], base["at"] = change, at.isoformat()
    base["incident"].update(incident)
    if change == "resolved":
        base["incident"].update(state="resolved", ended_at=at.isoformat())
    return parse_event(base)


def hook(name: str = "h", **kw: Any) -> WebhookSettings:
    return WebhookSettings.model_validate({"name": name, "type": "webhook", "url": "http://127.0.0.1:1/", **kw})


def test_a_notice_round_trips_and_a_bad_one_is_refused() -> None:
    e = event()
    assert parse_event(e.to_dict()) == e and e.key.endswith(f":opened:{int(T0.timestamp())}")
    assert event("escalated", severity="critical").key.endswith(":escalated:critical")
    with pytest.raises(NotifyError, match="IncidentChange"):
        parse_event({**sample_event(), "change": "exploded"})
    with pytest.raises(NotifyError, match="no UTC offset"):
        parse_event({**sample_event(), "at": "2026-07-01T08:00:00"})


def test_enforcement_of_a_district_receives_discharge_incidents_of_its_district_only() -> None:
    wancheng = hook("wancheng", match={"district": ["宛城区"], "kind": ["discharge"]})
    bureau = hook("bureau", match={"min_severity": "high"})
    everyone = hook("all")
    receivers = [wancheng, bureau, everyone]
    names = lambda e: [r.name for r in route(receivers, e)]  # noqa: E731
    assert names(event()) == ["wancheng", "bureau", "all"]
    assert names(event(district="卧龙区")) == ["bureau", "all"]
    assert names(event(kind="evasion", severity="warning")) == ["all"]
    assert names(event("resolved")) == ["wancheng", "bureau", "all"]
    legacy = hook("dq", match={"kind": ["data_quality"]})  # the alert kind of old configs: evasion, meter faults
    assert [r.name for r in route([legacy], event(kind="meter_fault"))] == ["dq"]
    assert route([legacy], event()) == []
    by_rule = hook("gross", match={"rule": ["balance_gross"]})
    assert [r.name for r in route([by_rule], event())] == ["gross"]


def test_group_key_uses_the_receivers_labels() -> None:
    assert group_key(hook(), event()) == "site=hehua-plaza"
    assert group_key(hook(group_by=["district", "rule"]), event()) == "district=宛城区|rule=balance_gross"
    assert group_key(hook(group_by=["id", "change"]), event()) == "id=sample-hehua-plaza|change=opened"
    with pytest.raises(ValueError, match="cannot group by"):
        hook(group_by=["colour"])


TIMES = Timings(group_wait=30, group_interval=300, repeat_interval=3600)


def test_a_new_group_waits_group_wait_after_its_first_item() -> None:
    assert due(GroupState(first_pending=100.0, last_flush=None, active=False), TIMES) == (130.0, Reason.NEW)


def test_an_active_group_sends_news_at_most_every_group_interval() -> None:
    assert due(GroupState(first_pending=150.0, last_flush=130.0, active=True), TIMES) == (430.0, Reason.UPDATE)
    assert due(GroupState(first_pending=900.0, last_flush=130.0, active=True), TIMES) == (900.0, Reason.UPDATE)


def test_a_quiet_firing_group_repeats_and_a_resolved_one_is_silent() -> None:
    assert due(GroupState(None, 130.0, True), TIMES) == (3730.0, Reason.REPEAT)
    assert due(GroupState(None, 130.0, False), TIMES) is None
    assert due(GroupState(None, 130.0, True), Timings(30, 300, 0)) is None
    # a group whose alerts all resolved starts over: new alerts wait group_wait again
    assert due(GroupState(5000.0, 130.0, False), TIMES) == (5030.0, Reason.NEW)


def item(e: IncidentNotice, status: ItemStatus = ItemStatus.PENDING, receiver: str = "h") -> Item:
    return Item(f"{e.key}:{receiver}", receiver, "g", e, 0.0, status)


def test_resolved_goes_only_where_the_opening_went_and_with_send_resolved() -> None:
    a_fire, a_res = event(id="a"), event("resolved", T0 + timedelta(hours=1), id="a")
    b_res = event("resolved", id="b")
    plan = plan_flush([item(a_res), item(b_res)], [item(a_fire, ItemStatus.NOTIFIED)], True, [], 0.0)
    assert [i.event.id for i in plan.send] == ["a"]
    assert plan.statuses == {item(a_res).key: ItemStatus.NOTIFIED, item(b_res).key: ItemStatus.SKIPPED}
    plan = plan_flush([item(a_res)], [item(a_fire, ItemStatus.NOTIFIED)], False, [], 0.0)
    assert plan.send == () and plan.statuses[item(a_res).key] is ItemStatus.SKIPPED
    # opened and resolved in the same notification: both go, in time order
    plan = plan_flush([item(a_res), item(a_fire)], [], True, [], 0.0)
    assert [i.event.change.value for i in plan.send] == ["opened", "resolved"]
    # a case closed goes out whether or not the opening did
    closed = event("case_closed", T0 + timedelta(hours=2), id="b", state="resolved")
    assert [i.event.id for i in plan_flush([item(closed)], [], False, [], 0.0).send] == ["b"]


def test_silences_suppress_sending_but_keep_state_and_expire() -> None:
    s = Silence("s1", (Matcher.parse("site=hehua-plaza"), Matcher.parse("rule=~balance_.*")), 100.0, 200.0,
                "张三", "backwash 回扬", 100.0)
    e = event()
    assert silenced_by([s], e, "h", 150.0) is s
    assert silenced_by([s], e, "h", 200.0) is None  # expired
    assert silenced_by([s], event(rules={"meter_offline": {}}), "h", 150.0) is None
    plan = plan_flush([item(e)], [], True, [s], 150.0)
    assert plan.send == () and plan.statuses[item(e).key] is ItemStatus.SILENCED
    # repeats skip silenced alerts while the silence lasts
    assert plan_repeat([item(e, ItemStatus.NOTIFIED)], [s], 150.0) == ()
    assert len(plan_repeat([item(e, ItemStatus.NOTIFIED)], [s], 250.0)) == 1


def test_matchers_parse_every_operator_and_refuse_nonsense() -> None:
    assert Matcher.parse("severity!=info").matches("critical")
    assert not Matcher.parse("district!~宛.*").matches("宛城区")
    assert Matcher.parse("receiver = ding").matches("ding")
    with pytest.raises(NotifyError, match="not a matcher"):
        Matcher.parse("just words")
    with pytest.raises(NotifyError, match="regular expression"):
        Matcher.parse("site=~(")


def test_robot_urls_are_masked_in_logs() -> None:
    url = "https://oapi.dingtalk.com/robot/send?access_token=abc123&timestamp=1&sign=xyz"
    assert "abc123" not in redact(url) and "xyz" not in redact(url) and "timestamp=1" in redact(url)
    assert redact("https://u:pw@h/x?key=K") == "https://***@h/x?key=***"
    assert "K9" not in redact("Max retries exceeded with url: /cgi-bin/webhook/send?key=K9 (Caused by …)")
