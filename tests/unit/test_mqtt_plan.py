"""Topic filters, routing from topics to configured meters, dead letters and rejection logging."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from collector.deadletter import DeadLetterStore, NewDeadLetter
from collector.model import Site
from collector.mqtt.errors import PlanError, Rejected, RejectReason
from collector.mqtt.profile import load_profiles
from collector.mqtt.rejects import RejectLog
from collector.mqtt.topics import TopicFilter, plan_routes

PROFILES = load_profiles()


def _site(*meters: dict[str, Any], site_id: str = "s1") -> Site:
    base = [{"id": "E0", "role": "extraction"}, {"id": "R0", "role": "reinjection"}]
    return Site.model_validate({"id": site_id, "name": "n", "district": "d", "meters": [*base, *meters]})


def _m(mid: str, topic: str, profile: str = "dtu-json", key: str | None = None) -> dict[str, Any]:
    mqtt: dict[str, Any] = {"topic": topic, "profile": profile}
    if key:
        mqtt["key"] = key
    return {"id": mid, "role": "extraction", "mqtt": mqtt}


def test_exact_wildcard_and_key_topics_route_to_configured_meters() -> None:
    router = plan_routes([_site(_m("E1", "dtu/1/up"), _m("E2", "gw/+/E2/#"), _m("E3", "k/{key}/up"),
                                _m("E4", "k/{key}/up", key="flow-4"))], PROFILES)
    assert set(router.subscriptions) == {"dtu/1/up", "gw/+/E2/#", "k/+/up"}
    hit = router.route("dtu/1/up")
    assert hit is not None and [b.meter for b in hit[0].meters.values()] == ["E1"]
    hit = router.route("gw/abc/E2/x/y")
    assert hit is not None and list(hit[0].meters) == ["E2"]
    hit = router.route("k/flow-4/up")
    assert hit is not None and hit[1] == "flow-4" and hit[0].meters["flow-4"].meter == "E4"
    assert router.route("dtu/2/up") is None and router.route("k/a/b/up") is None


def test_plan_lists_every_problem_at_once() -> None:
    sites = [_site(_m("E1", "a/#/b"), _m("E2", "x/y", profile="nope"), _m("E3", "s/t"), _m("E4", "s/t"),
                   _m("E5", "r/1", profile="dtu-registers-hex"), _m("E6", "m/{key}"),
                   _m("E7", "m/{key}", profile="holdingbyte"), _m("E8", "$share/g/x"))]
    with pytest.raises(PlanError) as err:
        plan_routes(sites, PROFILES)
    text = "\n".join(err.value.problems)
    for needle in ("'#' must be the last level", "profile 'nope' ", "is not a known payload profile", "shared by s1/E3",
                   "register profile 'tuf2000m'", "share its profile", "mqtt.shared_group"):
        assert needle in text, needle
    assert len(err.value.problems) == 6


def test_same_key_twice_on_a_topic_is_refused() -> None:
    with pytest.raises(PlanError, match=r"distinct mqtt\.key"):
        plan_routes([_site(_m("E1", "t/{key}", key="k")), _site(_m("E1", "t/{key}", key="k"), site_id="s2")],
                    PROFILES)


def test_keyed_profiles_let_meters_share_a_topic() -> None:
    router = plan_routes([_site(_m("E1", "dtu/9/up", "dtu-json-map"), _m("E2", "dtu/9/up", "dtu-json-map"))],
                         PROFILES)
    assert router.subscriptions == ("dtu/9/up",)


def test_filter_matching_rules() -> None:
    assert TopicFilter.parse("#").match(["$SYS", "x"])[0] is False
    assert TopicFilter.parse("a/#").match(["a"])[0] is True
    assert TopicFilter.parse("+/x").match(["", "x"])[0] is True
    for bad in ("a+/b", "a/{key}/{key}", "", "a/b#"):
        with pytest.raises(ValueError):
            TopicFilter.parse(bad)


def test_an_exact_filter_keeps_only_its_text_and_a_wildcard_its_levels() -> None:
    exact, wild = TopicFilter.parse("fleet/s1/M0"), TopicFilter.parse("fleet/+/{key}")
    assert exact.split is None and not exact.wild and exact.levels == ("fleet", "s1", "M0")
    assert exact.subscription == "fleet/s1/M0" and exact.match(["fleet", "s1", "M0"]) == (True, None)
    assert wild.split == ("fleet", "+", "{key}") and wild.wild and wild.subscription == "fleet/+/+"
    assert wild.match(["fleet", "s1", "M0"]) == (True, "M0") and wild.match(["fleet", "s1"]) == (False, None)


def test_dead_letter_store_is_bounded_and_lists_newest_first(tmp_path: Path) -> None:
    store = DeadLetterStore(tmp_path / "d.sqlite", max_rows=10, max_payload=8)
    now = datetime.now(UTC).timestamp()
    store.put([NewDeadLetter(now - 100 + i, "mqtt", f"t/{i}", "bad_json", "x", b"payload-%d" % i)
               for i in range(25)])
    assert len(store) == 10
    letters = store.list(limit=3)
    assert [d.topic for d in letters] == ["t/24", "t/23", "t/22"]
    assert letters[0].truncated and letters[0].size == 10 and letters[0].payload == b"payload-"
    assert store.purge(datetime.fromtimestamp(now - 100 + 19.5, UTC)) == 5
    assert store.counts() == {"bad_json": 5}


def test_rejections_are_logged_once_per_topic_and_reason_per_interval(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = [0.0]
    rl = RejectLog(interval=60, clock=lambda: clock[0])
    caplog.set_level(logging.WARNING)
    for _ in range(5):
        rl.note("t/1", Rejected(RejectReason.BAD_JSON, "x"))
    rl.note("t/1", Rejected(RejectReason.WRONG_TYPE, "y"))
    rl.note("t/2", Rejected(RejectReason.BAD_JSON, "z"))
    assert len(caplog.records) == 3
    clock[0] = 61
    rl.note("t/1", Rejected(RejectReason.BAD_JSON, "x"))
    assert len(caplog.records) == 4 and "4 more since the last report" in caplog.records[-1].getMessage()
