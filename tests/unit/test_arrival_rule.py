"""`low_arrival` end to end in one process: the tracker counts the readings the service hands on, judges a
meter only once it has been configured a full day, and the engine raises the alert from what it is given."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from collector.model import Reading, Role, Site
from gshp.arrival import ArrivalTracker
from rules.arrival import Arrival
from rules.engine import Engine
from rules.settings import RulesSettings

TZ = ZoneInfo("Asia/Shanghai")
SITE = Site.model_validate({"id": "s1", "name": "站点", "district": "宛城区", "meters": [
    {"id": "E1", "role": "extraction", "interval": "1m", "mqtt": {"topic": "a"}},
    {"id": "R1", "role": "reinjection", "interval": "1m", "mqtt": {"topic": "b"}}]})
INTERVALS = {("s1", "E1"): timedelta(minutes=1), ("s1", "R1"): timedelta(minutes=1)}
NOW = datetime(2026, 5, 3, 4, 0, 30, tzinfo=UTC)  # 12:00:30 local


def readings(meter: str, role: Role, every_min: int) -> list[Reading]:
    start = NOW - timedelta(hours=30)
    return [Reading("s1", meter, role, start + timedelta(minutes=k), 10.0, 100.0 + k)
            for k in range(0, 30 * 60, every_min)]


def test_a_meter_that_reports_half_its_slots_raises_low_arrival_once_judged(tmp_path: Path) -> None:
    state = tmp_path / "arrival.json"
    tracker = ArrivalTracker(INTERVALS, TZ, state, (NOW - timedelta(days=2)).timestamp())
    tracker.on_readings(readings("E1", Role.EXTRACTION, 1) + readings("R1", Role.REINJECTION, 2))
    assert tracker.judged("s1", "E1", NOW.timestamp()) == 100.0
    # the trailing 24 h at 12:00:30: the 1 439 minute slots that began at or after 12:00:30 yesterday
    assert tracker.book.trailing("s1", "R1", NOW.timestamp()) == Arrival(1439, 719)
    assert tracker.judged("s1", "R1", NOW.timestamp()) == 100 * 719 / 1439
    engine = Engine([SITE], RulesSettings(), tz=TZ)
    engine.ingest(readings("E1", Role.EXTRACTION, 1) + readings("R1", Role.REINJECTION, 2))
    tracker.judge(engine, NOW.timestamp())
    events = [e for e in engine.evaluate(NOW) if e.rule == "low_arrival"]
    assert [(e.state, e.evidence["arrival_pct"]) for e in events] == [("firing", {"R1": 50.0})]
    assert "到报率" in events[0].summary


def test_a_meter_configured_less_than_a_day_ago_is_not_judged(tmp_path: Path) -> None:
    state = tmp_path / "arrival.json"
    first = ArrivalTracker({("s1", "E1"): timedelta(minutes=1)}, TZ, state, (NOW - timedelta(hours=2)).timestamp())
    assert first.judged("s1", "E1", NOW.timestamp()) is None  # nothing arrived, but it is new
    later = NOW + timedelta(days=1)
    again = ArrivalTracker(INTERVALS, TZ, state, later.timestamp())  # a restart: R1 was added meanwhile
    assert again.judged("s1", "E1", later.timestamp()) == 0.0  # configured since before: judged
    assert again.judged("s1", "R1", later.timestamp()) is None
    assert set(json.loads(state.read_text())["configured_since"]) == {"s1/E1", "s1/R1"}


def test_the_tracker_keys_each_meter_by_the_book_s_own_tuple(tmp_path: Path) -> None:
    tracker = ArrivalTracker(dict(INTERVALS), TZ, tmp_path / "arrival.json", NOW.timestamp())
    assert all(a is b for a, b in zip(tracker.since, tracker.book.meters, strict=True))
