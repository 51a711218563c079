"""Arrival rate (到报率): exact on a day with known gaps, a late back-fill and duplicates, the same from the
pure count and from the live bitmaps; the expected interval comes from one rule; `low_arrival` fires below
its threshold."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from collector.model import MQTT_INTERVAL, Meter, Reading, Role, expected_interval
from gshp.config import parse_config
from rules.arrival import Arrival, ArrivalBook, Counted, arrival, day_span, missing_ranges, slot_range, slots_of
from rules.balance import Condition
from rules.quality import QUALITY_RULES, MeterTrack, QualityPlan
from rules.settings import QualitySettings

TZ = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 5, 1)
START, END = day_span(DAY, TZ)
MINUTE = 60.0


def scenario() -> list[float]:
    """Device times in the order they arrive: one a minute with jitter, minute 10 three times (redelivery),
    minutes 100–159 missing at first, then 100–129 back-filled late (after the rest of the day)."""
    live = [START + k * MINUTE + (k % 7) for k in range(1440) if not 100 <= k < 160]
    dups = [START + 10 * MINUTE + 3, START + 10 * MINUTE + 3, START + 10 * MINUTE + 45]
    late = [START + k * MINUTE + 1 for k in range(100, 130)]
    return live[:500] + dups + live[500:] + late


def test_the_day_is_cut_into_slots_from_local_midnight() -> None:
    assert datetime.fromtimestamp(START, UTC) == datetime(2026, 4, 30, 16, tzinfo=UTC)
    assert END - START == 86400
    assert slot_range(START, END, MINUTE, START, START + 90.0) == (0, 1)  # slot 1 has not ended yet
    assert slot_range(START, END, 7 * 3600.0, START, END) == (0, 4)  # 3 full slots and a short last one


def test_known_gaps_duplicates_and_a_late_backfill_count_exactly() -> None:
    times = scenario()
    assert arrival(times, START, END, MINUTE) == Arrival(1440, 1410)  # the 30 minutes 130–159 never came
    assert arrival(times, START, END, MINUTE).pct == pytest.approx(97.9166, abs=1e-3)
    noon = START + 12 * 3600 + 30  # 12:00:30 local: 720 slots have ended
    assert arrival(times, START, END, MINUTE, until=noon) == Arrival(720, 690)
    before_backfill = [t for t in times if not START + 100 * MINUTE <= t < START + 130 * MINUTE]
    assert arrival(before_backfill, START, END, MINUTE) == Arrival(1440, 1380)
    gaps = missing_ranges(slots_of(times, START, END, MINUTE), START, END, MINUTE, 0, 1440)
    assert gaps == [(START + 130 * MINUTE, START + 160 * MINUTE)]


def test_the_live_bitmaps_give_the_same_figures_as_the_pure_count() -> None:
    book = ArrivalBook({("s1", "E1"): timedelta(minutes=1), ("s1", "R1"): timedelta(seconds=10)}, TZ)
    times = scenario()
    for t in times:
        book.note("s1", "E1", t)
    book.note("s1", "ghost", START)  # not configured: left out
    assert book.day("s1", "E1", DAY, END) == arrival(times, START, END, MINUTE) == Arrival(1440, 1410)
    assert book.day("s1", "E1", DAY, START + 12 * 3600 + 30) == Arrival(720, 690)
    assert book.missing("s1", "E1", DAY, END) == [(START + 130 * MINUTE, START + 160 * MINUTE)]
    assert book.day("s1", "R1", DAY, END) == Arrival(8640, 0)  # nothing from R1: every 10 s slot missing
    # the trailing 24 h at 06:00 the next day: the last 18 h of DAY (all arrived) and 6 h of the next day
    six = END + 6 * 3600
    for k in range(0, 360, 2):  # every other minute of the next morning
        book.note("s1", "E1", END + k * MINUTE)
    assert book.trailing("s1", "E1", six) == Arrival(1440, 1080 + 180)


def test_days_roll_out_of_the_book_and_older_readings_are_left_out() -> None:
    book = ArrivalBook({("s1", "E1"): MQTT_INTERVAL}, TZ, keep_days=2)
    book.note("s1", "E1", START)
    book.note("s1", "E1", END + 86400)  # two days later: DAY rolls out
    assert not book.holds(DAY)
    book.note("s1", "E1", START + 60)  # too old for the kept days
    assert not book.holds(DAY)
    assert book.bytes_per_day == (25 * 60 + 7) // 8


def test_the_expected_interval_is_the_meters_then_the_gateways_then_a_minute() -> None:
    own = Meter.model_validate({"id": "E1", "role": "extraction", "interval": "30s",
                                "modbus": {"gateway": "gw", "unit": 1}})
    polled = Meter.model_validate({"id": "E2", "role": "extraction", "modbus": {"gateway": "gw", "unit": 2}})
    pushed = Meter.model_validate({"id": "R1", "role": "reinjection", "mqtt": {"topic": "t"}})
    gateways = {"gw": timedelta(seconds=10)}
    assert expected_interval(own, gateways) == timedelta(seconds=30)
    assert expected_interval(polled, gateways) == timedelta(seconds=10)
    assert expected_interval(pushed, gateways) == timedelta(minutes=1)
    logger = Meter.model_validate({"id": "E3", "role": "extraction", "hj212": {"mn": "MN0001"}})
    assert expected_interval(logger, gateways) == timedelta(hours=1)


def test_the_books_readings_come_from_the_service_batch() -> None:
    book = ArrivalBook({("s1", "E1"): MQTT_INTERVAL}, TZ)
    ts = datetime.fromtimestamp(START + 5, UTC)
    next_day = datetime.fromtimestamp(END + 61, UTC)
    book.on_readings([Reading("s1", "E1", Role.EXTRACTION, ts, 1.0, 2.0)] * 2
                     + [Reading("s1", "E1", Role.EXTRACTION, next_day, 1.0, 2.0),
                        Reading("s1", "E1", Role.EXTRACTION, ts + timedelta(minutes=2), 1.0, 2.0),
                        Reading("s1", "ghost", Role.EXTRACTION, ts, 1.0, 2.0)])
    assert book.day("s1", "E1", DAY, START + 180) == Arrival(3, 2)
    assert book.day("s1", "E1", DAY + timedelta(days=1), END + 180) == Arrival(3, 1)


def test_low_arrival_fires_below_the_threshold_and_not_before_a_meter_is_judged() -> None:
    rule = QUALITY_RULES["low_arrival"]
    plan = QualityPlan.of(QualitySettings())
    assert plan.min_arrival_pct == 90.0
    ok, low, new = MeterTrack("E1", Role.EXTRACTION), MeterTrack("R1", Role.REINJECTION), MeterTrack("R2",
                                                                                                   Role.REINJECTION)
    ok.arrival_pct, low.arrival_pct, new.arrival_pct = 97.9, 59.0, None
    found = rule.detect([ok, low, new], 0.0, plan)
    assert found.condition is Condition.ACTIVE and found.meters == ("R1",)
    assert found.evidence["arrival_pct"] == {"R1": 59.0}
    low.arrival_pct = 90.0
    assert rule.detect([ok, low, new], 0.0, plan).condition is Condition.CLEAR


def test_a_gateways_poll_interval_is_stretched_by_an_accelerated_clock() -> None:
    config = parse_config("""
mqtt: {host: 127.0.0.1}
gateways: [{id: gw, host: 127.0.0.1, port: 502, interval: 500ms, timeout: 200ms}]
sites:
  - {id: s1, name: s, district: d, meters: [
      {id: E1, role: extraction, modbus: {gateway: gw, unit: 1}},
      {id: R1, role: reinjection, interval: 5m, mqtt: {topic: t}}]}
""")
    assert config.intervals() == {("s1", "E1"): timedelta(milliseconds=500), ("s1", "R1"): timedelta(minutes=5)}
    assert config.intervals(poll_speed=600)[("s1", "E1")] == timedelta(minutes=5)  # the demo's data time
    assert config.intervals(poll_speed=600)[("s1", "R1")] == timedelta(minutes=5)  # its own: device time already


@pytest.mark.parametrize("interval_s", [10.0, 60.0, 600.0])
def test_arrival_counted_from_minute_intervals_equals_the_count_over_the_readings(interval_s: float) -> None:
    start, end = day_span(DAY, TZ)
    times = [t for t in (start + k * interval_s for k in range(int((end - start) // interval_s)))
             if not start + 3600 <= t < start + 2 * 3600 + 25]  # an hour and a bit missing
    times += [start + 3 * 3600 + 1, start - 30.0, end + 30.0]  # a repeated slot, readings outside the day
    buckets: dict[float, int] = {}
    for t in times:
        at = start + (t - start) // 60 * 60
        buckets[at] = buckets.get(at, 0) + 1
    counted = Counted(60.0, {("s1", "E1"): sorted(buckets.items())})
    assert counted.arrival("s1", "E1", start, end, interval_s) == arrival(times, start, end, interval_s)
    assert counted.arrival("s1", "R1", start, end, interval_s).arrived == 0
